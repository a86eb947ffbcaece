"""Compile-time benchmark of the pass pipeline on elementwise chains and an MLP training graph.

Times ``symk.passes.pipeline.optimize`` (every graph pass, fusion into a Schedule and memory
planning) on

* chains of 10, 100 and 1000 elementwise ops on a (None, 64) float32 placeholder, and
* a Keras-like MLP training graph built with ``K``: 784-512-512-10, relu, softmax +
  categorical cross-entropy, ``K.gradients`` and SGD updates,

each on a freshly built graph per repeat (hash-consing would otherwise hand the pipeline nodes
it has already rewritten), reporting the median and the per-pass medians.  With ``--pytensor``
(when it is installed) the same chains are compiled by PyTensor with its C backend in a fresh
subprocess and a fresh compile directory (a cold compile), for comparison.

    python benchmarks/bench_compile.py [--repeats 7] [--pytensor]
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from symk import backend as K  # noqa: E402
from symk.passes.pipeline import optimize  # noqa: E402

CHAINS = (10, 100, 1000)


def build_chain(n: int):
    """n elementwise ops: tanh, scale, shift and a clamp, in turn."""
    x = K.placeholder((None, 64))
    y = x
    for i in range(n):
        k = i % 4
        y = (K.tanh(y) if k == 0 else y * 1.001 if k == 1 else y + 0.25 if k == 2
             else K.maximum(y, -1.5))
    return [y.node]


def build_mlp():
    """Roots of a Keras-style training step: the loss and the new value of every parameter."""
    rng = np.random.default_rng(0)
    x, t = K.placeholder((None, 784)), K.placeholder((None, 10))
    params = []
    h = x
    sizes = [(784, 512), (512, 512), (512, 10)]
    for i, (a, b) in enumerate(sizes):
        w = K.variable(rng.normal(0, 0.05, (a, b)).astype(np.float32), name=f"w{i}")
        bias = K.variable(np.zeros(b, np.float32), name=f"b{i}")
        params += [w, bias]
        h = K.bias_add(K.dot(h, w), bias)
        h = K.relu(h) if i < len(sizes) - 1 else K.softmax(h)
    loss = K.mean(K.categorical_crossentropy(t, h))
    grads = K.gradients(loss, params)
    lr = K.variable(0.01, name="lr")
    return [loss.node] + [(p - lr * g).node for p, g in zip(params, grads)]


def time_pipeline(build, repeats: int) -> dict:
    totals, builds, per_pass = [], [], {}
    n_nodes = n_kernels = n_externs = 0
    for _ in range(repeats + 1):  # the first run warms imports and caches up
        t0 = time.perf_counter()
        roots = build()
        t1 = time.perf_counter()
        opt = optimize(roots, name="bench", exclude=set(), level=2)
        t2 = time.perf_counter()
        builds.append(t1 - t0)
        totals.append(t2 - t1)
        for k, v in opt.ctx.timings.items():
            per_pass.setdefault(k, []).append(v)
        from symk.graph.node import toposort

        n_nodes = len(toposort(roots))
        n_kernels, n_externs = len(opt.schedule.kernels), len(opt.schedule.externs)
    med = lambda v: statistics.median(v[1:]) * 1e3  # noqa: E731
    return {"nodes": n_nodes, "kernels": n_kernels, "externs": n_externs,
            "build_ms": med(builds), "passes_ms": med(totals),
            "per_pass_ms": {k: med(v) for k, v in per_pass.items()}}


_PYTENSOR_SCRIPT = r"""
import sys, time, json
sys.setrecursionlimit(20000)  # PyTensor's graph rewrites recurse through a 1000-op chain
n = int(sys.argv[1])
t0 = time.perf_counter()
import pytensor, pytensor.tensor as pt
t1 = time.perf_counter()
x = pt.matrix("x", dtype="float32")
y = x
for i in range(n):
    k = i % 4
    y = (pt.tanh(y) if k == 0 else y * 1.001 if k == 1 else y + 0.25 if k == 2
         else pt.maximum(y, -1.5))
t2 = time.perf_counter()
f = pytensor.function([x], y, mode="FAST_RUN")
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "compile_s": t3 - t2,
                  "version": pytensor.__version__}))
"""


def time_pytensor(n: int) -> dict | None:
    """PyTensor's cold compile (C backend, empty compile directory) of the same chain."""
    try:
        import pytensor  # noqa: F401
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={d},linker=cvm,cxx=/usr/bin/g++")
        out = subprocess.run([sys.executable, "-c", _PYTENSOR_SCRIPT, str(n)], env=env,
                             capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7,
                    help="freshly built graphs timed per workload (median reported)")
    ap.add_argument("--pytensor", action="store_true", help="also time PyTensor (cold)")
    args = ap.parse_args()
    rows = []
    for n in CHAINS:
        rows.append((f"chain of {n} elementwise ops", time_pipeline(lambda n=n: build_chain(n),
                                                                    args.repeats)))
    rows.append(("MLP 784-512-512-10 training step", time_pipeline(build_mlp, args.repeats)))
    print(f"symk pass pipeline (optimize + fuse + plan), median of {args.repeats} "
          "fresh graphs")
    print(f"{'graph':<36} {'nodes':>6} {'kernels':>8} {'externs':>8} {'build ms':>9} "
          f"{'passes ms':>10}")
    for name, r in rows:
        print(f"{name:<36} {r['nodes']:>6} {r['kernels']:>8} {r['externs']:>8} "
              f"{r['build_ms']:>9.2f} {r['passes_ms']:>10.2f}")
    print("\nper pass (ms):")
    for name, r in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["per_pass_ms"].items())
        print(f"  {name}: {parts}")
    if args.pytensor:
        print("\nPyTensor FAST_RUN (C backend), cold compile directory, one run each:")
        for n in CHAINS:
            r = time_pytensor(n)
            if r is None:
                print("  pytensor is not installed")
                break
            if "error" in r:
                print(f"  chain of {n}: failed: {r['error']}")
                continue
            ours = next(v for k, v in rows if k == f"chain of {n} elementwise ops")
            ratio = r["compile_s"] * 1e3 / ours["passes_ms"]
            print(f"  chain of {n}: pytensor {r['version']} compile {r['compile_s']:.2f} s "
                  f"(graph build {r['build_s'] * 1e3:.1f} ms); symk passes "
                  f"{ours['passes_ms']:.1f} ms, ratio {ratio:.0f}x")


if __name__ == "__main__":
    main()
