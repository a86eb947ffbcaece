"""Keras 2.3.1 on symk: a multi-layer perceptron classifying scikit-learn's 8x8 digits.

Run from the repository root (see README, "Using symk as a Keras backend")::

    KERAS_BACKEND=symk.backend python examples/keras_mlp.py [--epochs 10]

The script is plain Keras: nothing symk-specific is imported, the installed symk applies its
compatibility layer itself when ``KERAS_BACKEND`` names it.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not os.environ.get("KERAS_BACKEND", "").startswith("symk"):
        sys.exit("run with KERAS_BACKEND=symk.backend (see README.md)")

    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    np.random.seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")  # 1797 images of 64 pixels in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0)

    model = keras.models.Sequential([
        keras.layers.Dense(64, activation="relu", input_shape=(64,)),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f} accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
