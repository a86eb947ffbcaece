"""Seconds per training batch of Keras's ``conv_lstm.py`` example model: Keras 2.3.1 on symk
beside Keras 3 + JAX (and Keras 3 + TensorFlow where given), each in its own fresh process.

The model of the Keras example: four ``ConvLSTM2D(40, (3, 3), padding="same",
return_sequences=True)`` layers each followed by ``BatchNormalization``, then
``Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same")``; binary cross-entropy and
Adadelta (learning rate 1.0, Keras 2.3.1's default); the example's artificial movies (squares
moving across 40x40 frames, 15 frames), ``--batch`` sequences per batch (default 9).

Each run: "build" is ``compile`` plus the first ``train_on_batch`` (symk compiles the train
function there, Keras 3 traces and jit-compiles it), then ``--batches`` timed
``train_on_batch`` calls on different batches; the run's figure is their median.  Engines run
in turns (``--rounds``), each round a fresh process per engine.

    python benchmarks/bench_conv_lstm.py [--rounds 1] [--batches 3] [--batch 9]
        [--engines symk,keras3-jax,keras3-tf] [--jax-python P] [--tf-python P]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENGINES = ("symk", "keras3-jax", "keras3-tf")
FRAMES, SIZE, FILTERS = 15, 40, 40


def movies(n: int, seed: int = 0):
    """The example's noisy moving squares: (inputs, next frames), (n, 15, 40, 40, 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    row = 80
    noisy = np.zeros((n, FRAMES, row, row, 1), np.float32)
    shifted = np.zeros((n, FRAMES, row, row, 1), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(3, 8))):
            xs, ys = int(rng.integers(20, 60)), int(rng.integers(20, 60))
            dx, dy = int(rng.integers(-1, 2)), int(rng.integers(-1, 2))
            w = int(rng.integers(2, 4))
            for t in range(FRAMES):
                x, y = xs + dx * t, ys + dy * t
                noisy[i, t, x - w:x + w, y - w:y + w, 0] += 1
                if rng.integers(0, 2):
                    s = (-1) ** int(rng.integers(0, 2))
                    noisy[i, t, x - w - 1:x + w + 1, y - w - 1:y + w + 1, 0] += s * 0.1
                x, y = xs + dx * (t + 1), ys + dy * (t + 1)
                shifted[i, t, x - w:x + w, y - w:y + w, 0] += 1
    cut = slice(20, 60)
    noisy, shifted = noisy[:, :, cut, cut], shifted[:, :, cut, cut]
    return np.minimum(noisy, 1.0), np.minimum(shifted, 1.0)


def build(keras, three: bool):
    layers = keras.layers
    seq = keras.models.Sequential()
    if three:
        seq.add(keras.Input((None, SIZE, SIZE, 1)))
        first = {}
    else:
        first = {"input_shape": (None, SIZE, SIZE, 1)}
    for k in range(4):
        seq.add(layers.ConvLSTM2D(FILTERS, (3, 3), padding="same", return_sequences=True,
                                  **(first if k == 0 else {})))
        seq.add(layers.BatchNormalization())
    seq.add(layers.Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same",
                          data_format="channels_last"))
    opt = keras.optimizers.Adadelta(learning_rate=1.0) if three else \
        keras.optimizers.Adadelta(lr=1.0)
    seq.compile(loss="binary_crossentropy", optimizer=opt)
    return seq


def child(engine: str, batches: int, batch: int) -> dict:
    if engine == "symk":
        os.environ["KERAS_BACKEND"] = "symk.backend"
        sys.path.insert(0, ROOT)
        from symk import keras_compat

        keras_compat.install()
    else:
        os.environ["KERAS_BACKEND"] = engine.split("-")[1].replace("tf", "tensorflow")
    import warnings

    warnings.simplefilter("ignore")
    import keras

    x, y = movies(batch * (batches + 1))
    t0 = time.perf_counter()
    model = build(keras, engine != "symk")
    model.train_on_batch(x[:batch], y[:batch])
    first = time.perf_counter() - t0
    times, losses = [], []
    for b in range(1, batches + 1):
        s = slice(b * batch, (b + 1) * batch)
        t = time.perf_counter()
        loss = model.train_on_batch(x[s], y[s])
        times.append(time.perf_counter() - t)
        losses.append(float(loss if not isinstance(loss, list) else loss[0]))
    return {"engine": engine, "first": first, "times": times, "losses": losses,
            "keras": keras.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batches", type=int, default=3, help="timed batches per process")
    ap.add_argument("--batch", type=int, default=9, help="sequences per batch")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--jax-python", default=os.environ.get("SYMK_BENCH_KERAS3_PYTHON",
                                                           "/tmp/k3jax/bin/python"))
    ap.add_argument("--tf-python", default="/tmp/k3tf/bin/python")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batches, args.batch)))
        return
    pythons = {"symk": sys.executable, "keras3-jax": args.jax_python,
               "keras3-tf": args.tf_python}
    engines = [e for e in args.engines.split(",") if e]
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(args.rounds):
        for e in engines:
            if not os.path.exists(pythons[e]):
                print(f"[{e}] not measured: no Python at {pythons[e]}", file=sys.stderr)
                continue
            env = dict(os.environ, PYTHONPATH=ROOT)
            cmd = [pythons[e], os.path.abspath(__file__), "--child", e, "--batches",
                   str(args.batches), "--batch", str(args.batch)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                   timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"[{e}] round {r + 1}: over {args.timeout:.0f} s", file=sys.stderr)
                continue
            line = p.stdout.strip().splitlines()[-1:] if p.returncode == 0 else []
            if not line:
                print(f"[{e}] round {r + 1} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(line[0])
            runs[e].append(res)
            print(f"[{e}] round {r + 1}: first {res['first']:.1f} s, batches "
                  + ", ".join(f"{t:.2f}" for t in res["times"]) + " s", file=sys.stderr)
    print(f"\n    python benchmarks/bench_conv_lstm.py --rounds {args.rounds} --batches "
          f"{args.batches} --batch {args.batch} --engines {args.engines}\n")
    print(f"Keras conv_lstm.py model, {FRAMES} frames of {SIZE}x{SIZE}x1, batch {args.batch}, "
          f"Adadelta; {os.cpu_count()} cores\n")
    print("| engine | keras | build + first batch s | median s/batch (range) | vs symk |")
    print("| --- | --- | ---: | ---: | ---: |")
    med = {e: statistics.median(t for r in rs for t in r["times"]) for e, rs in runs.items()
           if rs}
    for e, rs in runs.items():
        if not rs:
            print(f"| {e} | - | not measured | - | - |")
            continue
        ts = [t for r in rs for t in r["times"]]
        first = statistics.median(r["first"] for r in rs)
        rel = f"{med[e] / med['symk']:.2f}x" if "symk" in med else "-"
        print(f"| {e} | {rs[0]['keras']} | {first:.1f} | {med[e]:.2f} "
              f"({min(ts):.2f}-{max(ts):.2f}) | {rel} |")


if __name__ == "__main__":
    main()
