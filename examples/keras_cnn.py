"""Keras 2.3.1 on symk: a small convolutional network on scikit-learn's digits as 8x8x1 images.

Run from the repository root (see README, "Using symk as a Keras backend")::

    KERAS_BACKEND=symk.backend python examples/keras_cnn.py [--epochs 8]

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
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not os.environ.get("KERAS_BACKEND", "").startswith("symk"):
        sys.exit("run with KERAS_BACKEND=symk.backend (see README.md)")

    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    np.random.seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1), channels last
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0)

    model = keras.models.Sequential([
        keras.layers.Conv2D(16, (3, 3), activation="relu", padding="same",
                            input_shape=(8, 8, 1)),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f} accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
