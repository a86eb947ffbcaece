"""RSS of a long-lived process that keeps building, calling and dropping functions (a
hyper-parameter search, a notebook), and of a training loop calling one function.

    SYMK_CACHE=0 python benchmarks/bench_memory.py [--n 300] [--warm 50] [--calls 20000]

Prints the RSS growth per 100 dropped compiles after the warm-up (``x = K.placeholder((None,
4)); f = K.function([x], [K.tanh(x * float(i)) + i])``, called once, ``del f``,
``gc.collect()``), then the growth over a training loop of ``--calls`` calls.  Linux only (reads
``/proc/self/statm``).
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def dropped_compiles(n: int, warm: int) -> float:
    from symk import backend as K

    xs = np.ones((3, 4), np.float32)
    marks = {}
    t0 = time.perf_counter()
    for i in range(n):
        x = K.placeholder((None, 4))
        f = K.function([x], [K.tanh(x * float(i)) + i])
        f([xs])
        del f, x
        gc.collect()
        if i + 1 == warm or (i + 1) % 50 == 0 or i + 1 == n:
            marks[i + 1] = rss_mb()
            print(f"  {i + 1:5d} compiles: RSS {marks[i + 1]:7.1f} MB "
                  f"({time.perf_counter() - t0:5.1f} s)", flush=True)
    per100 = (marks[n] - marks[warm]) / (n - warm) * 100
    print(f"dropped compiles: {per100:.2f} MB per 100 after {warm} warm-up compiles")
    return per100


def training_loop(calls: int) -> float:
    from symk import backend as K

    rng = np.random.default_rng(0)
    x, y = K.placeholder((None, 8)), K.placeholder((None, 1))
    w = K.variable(rng.standard_normal((8, 16)).astype("float32") * 0.1)
    v = K.variable(rng.standard_normal((16, 1)).astype("float32") * 0.1)
    loss = K.mean(K.square(K.dot(K.tanh(K.dot(x, w)), v) - y))
    gw, gv = K.gradients(loss, [w, v])
    f = K.function([x, y], [loss], updates=[K.update(w, w - 0.01 * gw),
                                            K.update(v, v - 0.01 * gv)])
    xs = rng.standard_normal((32, 8)).astype("float32")
    ys = rng.standard_normal((32, 1)).astype("float32")
    first = calls // 10
    marks = {}
    for i in range(calls):
        f([np.array(xs), np.array(ys)])
        if i + 1 in (first, calls):
            gc.collect()
            marks[i + 1] = rss_mb()
    growth = marks[calls] - marks[first]
    print(f"training loop: {growth:+.2f} MB from call {first} to call {calls} "
          f"(RSS {marks[calls]:.1f} MB)")
    return growth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--calls", type=int, default=20000)
    a = ap.parse_args()
    dropped_compiles(a.n, a.warm)
    training_loop(a.calls)


if __name__ == "__main__":
    main()
