"""Keras 2.3.1 on symk: an LSTM on a generated sequence task.

Each sample is a sequence of 12 numbers drawn uniformly from [-1, 1]; the label says whether
their running sum ends above zero (a balanced binary task that needs the whole sequence).

Run from the repository root (see README, "Using symk as a Keras backend")::

    KERAS_BACKEND=symk.backend python examples/keras_lstm.py [--epochs 8]

The script is plain Keras: nothing symk-specific is imported, the installed symk applies its
compatibility layer itself when ``KERAS_BACKEND`` names it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

TIMESTEPS = 12


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of shape (TIMESTEPS, 1) and their 0/1 labels (sum > 0)."""
    x = rng.uniform(-1.0, 1.0, size=(n, TIMESTEPS, 1)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("float32")
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not os.environ.get("KERAS_BACKEND", "").startswith("symk"):
        sys.exit("run with KERAS_BACKEND=symk.backend (see README.md)")

    import keras

    np.random.seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(1024, rng)
    x_test, y_test = make_data(256, rng)

    model = keras.models.Sequential([
        keras.layers.LSTM(16, input_shape=(TIMESTEPS, 1)),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(keras.optimizers.Adam(learning_rate=0.01), "binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f} accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
