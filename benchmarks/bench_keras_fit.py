"""Seconds per epoch of ``model.fit`` for an MLP on the digits data set.

Engines:

* **symk**: the real Keras 2.3.1 on ``KERAS_BACKEND=symk.backend`` in this process (with the
  Python 3.11 / numpy 2 / h5py 3 compatibility layer ``symk.keras_compat``).
* **keras3-jax**: the same model in Keras 3 with the JAX backend.  Keras 3 and Keras 2.3.1
  cannot share an environment, so it runs in a subprocess of another Python, given by
  ``--keras3-python PATH`` or ``$SYMK_BENCH_KERAS3_PYTHON`` (e.g. a venv made with
  ``python -m venv /tmp/k3 && /tmp/k3/bin/pip install jax keras scikit-learn``).  Without it
  the script says so and reports symk alone.

The model (Dense 64 relu, BatchNormalization, Dropout 0.2, Dense 32 relu, Dense 10 softmax;
Adam, sparse categorical cross-entropy, accuracy metric) trains on the 1347 training digits with
batch size 32.  "build" is the time from ``compile`` to a ready train function (graph building
and compiling; for Keras 3 the first epoch includes JIT compilation, so it is reported as the
warm-up epoch); then one warm-up epoch and the median of ``--epochs`` timed epochs.

Usage: ``python benchmarks/bench_keras_fit.py [--epochs 5] [--batch-size 32]
[--keras3-python PATH] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digits() -> tuple[Any, Any]:
    """The training part of the same fixed 75/25 split the Keras tests use."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    xtr, _, ytr, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, ytr


def build_model(keras: Any, three: bool) -> Any:
    L = keras.layers
    first = [L.Input((64,)), L.Dense(64, activation="relu")] if three else \
        [L.Dense(64, activation="relu", input_shape=(64,))]
    return keras.Sequential(first + [
        L.BatchNormalization(),
        L.Dropout(0.2),
        L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])


def time_epochs(model: Any, x: Any, y: Any, epochs: int, batch_size: int) -> tuple[float, list]:
    """(warm-up epoch seconds, timed epoch seconds)."""
    def one() -> float:
        t0 = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
        return time.perf_counter() - t0

    warm = one()
    return warm, [one() for _ in range(epochs)]


def run_symk(epochs: int, batch_size: int) -> dict:
    sys.path.insert(0, ROOT)
    from symk import keras_compat

    os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="symk-bench-keras-home-")
    os.environ["KERAS_BACKEND"] = "symk.backend"
    keras_compat.install()  # set here, KERAS_BACKEND was not there when the .pth hook ran
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import keras
    import numpy as np

    from symk import config

    np.random.seed(0)
    x, y = digits()
    model = build_model(keras, three=False)
    t0 = time.perf_counter()
    model.compile(keras.optimizers.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model._make_train_function()  # Keras 2.3 builds the train function lazily in fit
    build = time.perf_counter() - t0
    warm, times = time_epochs(model, x, y, epochs, batch_size)
    return {"engine": "symk", "version": f"keras {keras.__version__}, symk device "
            f"{config.device()}", "build_s": build, "warmup_epoch_s": warm, "epoch_s": times}


def run_keras3(epochs: int, batch_size: int) -> dict:
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    x, y = digits()
    model = build_model(keras, three=True)
    t0 = time.perf_counter()
    model.compile(keras.optimizers.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    build = time.perf_counter() - t0
    warm, times = time_epochs(model, np.asarray(x), np.asarray(y), epochs, batch_size)
    return {"engine": "keras3-jax", "version": f"keras {keras.__version__}, jax "
            f"{jax.__version__}", "build_s": build, "warmup_epoch_s": warm, "epoch_s": times}


def keras3_subprocess(python: str, epochs: int, batch_size: int) -> dict | str:
    """The Keras 3 result from ``python``, or why it is unavailable."""
    if not python:
        return ("Keras 3 + JAX: not measured (give --keras3-python PATH or "
                "$SYMK_BENCH_KERAS3_PYTHON: a Python with `pip install jax keras scikit-learn`)")
    cmd = [python, os.path.abspath(__file__), "--worker", "keras3", "--epochs", str(epochs),
           "--batch-size", str(batch_size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"Keras 3 + JAX: unavailable ({python}: {e})"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Keras 3 + JAX: unavailable ({python} failed: {tail})"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(results: list[dict], notes: list[str], batch_size: int) -> str:
    lines = [f"MLP on digits (1347 samples, batch {batch_size}): seconds per epoch",
             f"{'engine':<12} {'build s':>8} {'warm-up s':>10} {'median s/epoch':>15} "
             f"{'min':>7}  version"]
    for r in results:
        lines.append(f"{r['engine']:<12} {r['build_s']:8.3f} {r['warmup_epoch_s']:10.3f} "
                     f"{statistics.median(r['epoch_s']):15.3f} {min(r['epoch_s']):7.3f}  "
                     f"{r['version']}")
    if len(results) == 2:
        a, b = (statistics.median(r["epoch_s"]) for r in results)
        lines.append(f"symk / keras3-jax time per epoch: {a / b:.2f}x")
    return "\n".join(lines + notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--keras3-python", default=os.environ.get("SYMK_BENCH_KERAS3_PYTHON", ""),
                    help="Python with Keras 3 + JAX (default $SYMK_BENCH_KERAS3_PYTHON)")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--worker", choices=["keras3"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "keras3":
        print(json.dumps(run_keras3(args.epochs, args.batch_size)))
        return
    results, notes = [], []
    k3 = keras3_subprocess(args.keras3_python, args.epochs, args.batch_size)
    results.append(run_symk(args.epochs, args.batch_size))
    if isinstance(k3, dict):
        results.append(k3)
    else:
        notes.append(k3)
    if args.json:
        print(json.dumps(results, indent=2))
    print(report(results, notes, args.batch_size))


if __name__ == "__main__":
    main()
