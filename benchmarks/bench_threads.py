"""Thread control (``symk.runtime.threads``) on and off, on a quiet machine and with one core
taken by a busy process.

Cases (each timed in a fresh process; "off" sets ``threads.ENABLED = False``, i.e. BLAS
threading as numpy configured it and kernels split over SYMK_NUM_THREADS, the behaviour
before the thread control):

* ``mlp``: a train function of a 784-512-512-10 MLP (``K.function`` with Adam updates written
  with ``K``), batch 32: ms per step, median of ``--samples`` samples of ``--steps`` steps;
* ``matmul``: ``tanh(x @ W1) @ W2`` with x 256x512, W1 512x512, W2 512x256: µs per call;
* ``small``: ``tanh(x @ W1) @ W2`` with x 32x256, W1 256x512, W2 512x10 (products of 8 and
  0.3 MFLOP): µs per call;
* ``keras``: ``benchmarks/bench_keras_fit.py`` (Keras 2.3.1 on symk, the digits MLP, batch
  32): seconds per epoch.

"busy" starts ``python -c 'while True: pass'`` pinned to the last usable core for the whole
run of a case, and kills it after.  Runs alternate off/on, ``--rounds`` times.

    python -m benchmarks.bench_threads [--cases mlp,matmul,small,keras] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time(call, steps: int, samples: int) -> float:
    for _ in range(max(3, steps // 5)):
        call()
    ts = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(steps):
            call()
        ts.append((time.perf_counter() - t0) / steps)
    return statistics.median(ts)


def _mlp(steps: int, samples: int) -> float:
    import numpy as np

    from symk import backend as K

    rng = np.random.default_rng(0)
    sizes = [784, 512, 512, 10]
    x = K.placeholder((None, 784))
    y = K.placeholder((None, 10))
    params = []
    h = x
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        W = K.variable(rng.normal(0, 0.05, (a, b)).astype("f4"))
        c = K.variable(np.zeros(b, "f4"))
        params += [W, c]
        h = K.dot(h, W) + c
        h = K.relu(h) if i < len(sizes) - 2 else K.softmax(h)
    loss = K.mean(K.categorical_crossentropy(y, h))
    grads = K.gradients(loss, params)
    t = K.variable(0.0)
    updates = [K.update_add(t, 1.0)]
    lr = 1e-3 * K.sqrt(1.0 - K.pow(0.999, t + 1)) / (1.0 - K.pow(0.9, t + 1))
    for p, g in zip(params, grads):
        m = K.zeros(K.int_shape(p))
        v = K.zeros(K.int_shape(p))
        m1 = 0.9 * m + 0.1 * g
        v1 = 0.999 * v + 0.001 * K.square(g)
        updates += [K.update(m, m1), K.update(v, v1),
                    K.update(p, p - lr * m1 / (K.sqrt(v1) + 1e-7))]
    f = K.function([x, y], [loss], updates=updates)
    xb = rng.random((32, 784)).astype("f4")
    yb = np.eye(10, dtype="f4")[rng.integers(0, 10, 32)]
    return _time(lambda: f([xb, yb]), steps, samples) * 1e3


def _products(shapes: tuple[int, int, int, int], steps: int, samples: int) -> float:
    import numpy as np

    from symk import backend as K

    m, k, n, o = shapes
    rng = np.random.default_rng(0)
    x = K.placeholder((None, k))
    W1 = K.variable(rng.normal(0, 0.05, (k, n)).astype("f4"))
    W2 = K.variable(rng.normal(0, 0.05, (n, o)).astype("f4"))
    f = K.function([x], [K.dot(K.tanh(K.dot(x, W1)), W2)])
    xb = rng.random((m, k)).astype("f4")
    return _time(lambda: f([xb]), steps, samples) * 1e6


def worker(case: str, control: bool, steps: int, samples: int) -> float:
    from symk.runtime import threads

    threads.ENABLED = control
    if case == "mlp":
        return _mlp(steps, samples)
    if case == "matmul":
        return _products((256, 512, 512, 256), steps, samples)
    if case == "small":
        return _products((32, 256, 512, 10), steps * 10, samples)
    raise SystemExit(f"unknown case {case!r}")


def _spinner() -> subprocess.Popen:
    core = max(os.sched_getaffinity(0))
    return subprocess.Popen([sys.executable, "-c",
                             f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])


def _run(case: str, control: bool, args: argparse.Namespace) -> float:
    if case == "keras":  # Keras's own benchmark, its symk run only; the switch goes in via -c
        path = os.path.join(ROOT, "benchmarks", "bench_keras_fit.py")
        code = (f"import runpy, statistics; from symk.runtime import threads; "
                f"threads.ENABLED = {control}; g = runpy.run_path({path!r}); "
                f"print(statistics.median(g['run_symk']({args.epochs}, 32)['epoch_s']))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        return float(out.stdout.split()[-1]) * 1e3
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_threads", "--worker", case,
                          "--control", "on" if control else "off", "--steps", str(args.steps),
                          "--samples", str(args.samples)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.split()[-1])


UNITS = {"mlp": "ms/step", "matmul": "µs/call", "small": "µs/call", "keras": "ms/epoch"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="mlp,matmul,small,keras")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--loads", default="quiet,busy")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--control", default="on", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker, args.control == "on", args.steps, args.samples))
        return
    print(f"cores {len(os.sched_getaffinity(0))}, loadavg at start {os.getloadavg()}")
    for case in args.cases.split(","):
        for load in args.loads.split(","):
            spin = _spinner() if load == "busy" else None
            try:
                time.sleep(0.5 if spin else 0)
                res: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(args.rounds):
                    for control in (False, True):
                        res[control].append(_run(case, control, args))
                la = os.getloadavg()
            finally:
                if spin is not None:
                    spin.kill()
                    spin.wait()
            off, on = statistics.median(res[False]), statistics.median(res[True])
            print(f"{case:<7} {load:<6} off {off:9.2f}  on {on:9.2f} {UNITS[case]}  "
                  f"(off/on {off / on:5.2f}x; off runs {[round(v, 2) for v in res[False]]}, "
                  f"on runs {[round(v, 2) for v in res[True]]}; loadavg {la[0]:.2f})",
                  flush=True)


if __name__ == "__main__":
    main()
