"""Per-call overhead of a small compiled function (the cost of symk's Python around native code):
a 4-op, 2-kernel function on tiny inputs, so the kernels themselves take well under a
microsecond and what is timed is input coercion, the run-time shape checks, buffer handling and
the kernel calls.  numpy's own evaluation of the same expression is the reference.

    python -m benchmarks.bench_call_overhead [--calls N] [--repeats R]

Run it from two checkouts (``cd <tree> && python -m benchmarks.bench_call_overhead``) to compare
versions; each run prints the median and the minimum of ``--repeats`` samples of ``--calls``
back-to-back calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import symk
    from symk import backend as K

    x = K.placeholder((None, 8), name="x")
    w = K.placeholder((None, 8), name="w")
    h = K.tanh(x * w + 1.0)
    f = K.function([x, w], [h, K.sum(h, axis=0)])
    xv = np.random.default_rng(0).standard_normal((4, 8)).astype("f4")
    wv = np.ones((4, 8), "f4")
    n_kernels = len(f.fn.schedule.kernels) if hasattr(f, "fn") else len(f.schedule.kernels)

    def np_call() -> None:
        hv = np.tanh(xv * wv + 1.0)
        hv.sum(axis=0)

    rows = {}
    for label, call in (("symk cpu", lambda: f([xv, wv])), ("numpy", np_call)):
        for _ in range(2000):
            call()
        samples = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.calls):
                call()
            samples.append((time.perf_counter() - t0) / args.calls * 1e6)
        rows[label] = (statistics.median(samples), min(samples))
    print(f"symk {symk.__file__}: 4 ops (mul, add, tanh, sum), {n_kernels} kernels, "
          f"inputs 4x8 float32, {args.calls} calls per sample, {args.repeats} samples")
    for label, (med, lo) in rows.items():
        print(f"  {label:<10} median {med:7.2f} us/call   min {lo:7.2f} us/call")


if __name__ == "__main__":
    main()
