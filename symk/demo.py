"""A runnable tour of symk (``python -m symk.demo``): a 2-layer MLP built with the Keras
backend API, trained by plain SGD through ``K.function(updates=...)`` on synthetic data, then
its accuracy and the graph of its predictions."""

from __future__ import annotations

import argparse
import time

import numpy as np

import symk
from symk import backend as K


def make_data(n: int, n_features: int, n_classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """Gaussian blobs, one per class, with one-hot targets."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.5, size=(n_classes, n_features))
    labels = rng.integers(0, n_classes, size=n)
    x = centers[labels] + rng.normal(0.0, 1.0, size=(n, n_features))
    return x.astype(np.float32), np.eye(n_classes, dtype=np.float32)[labels], labels


def build(n_features: int, n_hidden: int, n_classes: int, lr: float, seed: int):
    """The model graph: returns (train function, predict function, prediction tensor)."""
    rng = np.random.default_rng(seed)
    x = K.placeholder((None, n_features), name="x")
    y = K.placeholder((None, n_classes), name="y")
    w1 = K.variable(rng.normal(0, np.sqrt(2 / n_features), (n_features, n_hidden)), name="W1")
    b1 = K.variable(np.zeros(n_hidden), name="b1")
    w2 = K.variable(rng.normal(0, np.sqrt(1 / n_hidden), (n_hidden, n_classes)), name="W2")
    b2 = K.variable(np.zeros(n_classes), name="b2")
    params = [w1, b1, w2, b2]

    hidden = K.relu(K.bias_add(K.dot(x, w1), b1))
    probs = K.softmax(K.bias_add(K.dot(hidden, w2), b2))
    loss = K.mean(K.categorical_crossentropy(y, probs))
    grads = K.gradients(loss, params)
    updates = [K.update_sub(p, lr * g) for p, g in zip(params, grads)]

    train = K.function([x, y], [loss], updates=updates, name="train_step")
    predict = K.function([x], [probs], name="predict")
    return train, predict, probs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60, help="SGD steps (default 60)")
    ap.add_argument("--lr", type=float, default=0.2, help="learning rate (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    n_features, n_hidden, n_classes = 4, 16, 3
    x_train, y_train, _ = make_data(512, n_features, n_classes, args.seed)
    x_test, _, labels_test = make_data(256, n_features, n_classes, args.seed)

    t0 = time.perf_counter()
    train, predict, probs = build(n_features, n_hidden, n_classes, args.lr, args.seed + 1)
    print(f"symk {symk.__version__}: built and compiled the model in "
          f"{time.perf_counter() - t0:.3f} s (device: {train.fn.device})")

    first = last = None
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        (loss,) = train([x_train, y_train])
        first = loss if first is None else first
        last = loss
        if step == 1 or step % 10 == 0 or step == args.steps:
            print(f"step {step:3d}  loss {float(loss):.4f}")
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.3f} s; "
          f"loss {float(first):.4f} -> {float(last):.4f}")

    (p,) = predict([x_test])
    accuracy = float(np.mean(np.argmax(p, axis=1) == labels_test))
    print(f"test accuracy: {accuracy:.3f} on {len(labels_test)} samples")

    print("\nprediction graph (symk.debugprint):")
    print(symk.debugprint(probs), end="")
    print("\nas a formula (symk.pprint):")
    print(symk.pprint(probs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
