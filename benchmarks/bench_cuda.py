"""CUDA benchmarks: symk's cuda device beside CuPy's own operators and JAX on the GPU.

JAX runs when it is installed.  Workloads:

* W1: fused elementwise ``tanh(a * b + c) * 0.5 + a`` on 16M float32 (reports GB/s and the
  fraction of the device's peak memory bandwidth),
* W2: row softmax of (8192, 1024) float32,
* W3: an MLP training step (784-512-512-10, relu, softmax cross-entropy, SGD), batch 256,
* W5: matmul (4096, 4096) float32 (cuBLAS for every engine).

Times are medians of repeats after a warm-up, synchronized with the device.  Without a GPU (or
CuPy) the script prints why and exits 0.

    python benchmarks/bench_cuda.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _timeit(fn, sync, repeats: int) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _peak_bandwidth(cupy) -> float:
    """Theoretical peak memory bandwidth in bytes/s (2 * clock * bus width)."""
    dev = cupy.cuda.Device()
    clock_khz = dev.attributes.get("MemoryClockRate", 0)
    bus_bits = dev.attributes.get("GlobalMemoryBusWidth", 0)
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20,
                    help="timed calls per engine and workload (median reported)")
    args = ap.parse_args()
    from symk.errors import DeviceError
    from symk.runtime.cuda import require_cuda

    try:
        cupy, props = require_cuda()
    except DeviceError as e:
        print(f"bench_cuda: skipped, no GPU here ({e})")
        return 0
    from symk import backend as K

    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
    sync = cupy.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    rows = []
    print(f"device: {props.name}, {props.sm_count} SMs")

    # W1 -- the symk function copies inputs/outputs from and to the host each call, so the
    # kernel itself is timed through the plan on device arrays as well
    n = 1 << 24
    a, b, c = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    da, db, dc = (cupy.asarray(v) for v in (a, b, c))
    xs = [K.placeholder((n,)) for _ in range(3)]
    f1 = K.function(xs, [K.tanh(xs[0] * xs[1] + xs[2]) * 0.5 + xs[0]], device="cuda")
    plan = f1.fn.plans[0].executor
    t_sym = _timeit(lambda: plan.run([da, db, dc]), sync, args.repeats)
    t_cp = _timeit(lambda: cupy.tanh(da * db + dc) * 0.5 + da, sync, args.repeats)
    moved = 4 * n * 4
    peak = _peak_bandwidth(cupy)
    rows.append(("W1 fused elementwise", t_sym, t_cp))
    print(f"W1: symk {moved / t_sym / 1e9:.1f} GB/s"
          + (f" = {moved / t_sym / peak:.0%} of peak {peak / 1e9:.0f} GB/s" if peak else ""))
    if jax:
        ja, jb, jc = (jnp.asarray(v) for v in (a, b, c))
        jf = jax.jit(lambda a, b, c: jnp.tanh(a * b + c) * 0.5 + a)
        tj = _timeit(lambda: jf(ja, jb, jc).block_until_ready(), sync, args.repeats)
        print(f"W1: jax {tj * 1e3:.3f} ms (symk {t_sym * 1e3:.3f} ms)")

    # W2
    x = rng.standard_normal((8192, 1024)).astype(np.float32)
    dx = cupy.asarray(x)
    p = K.placeholder((8192, 1024))
    plan2 = K.function([p], [K.softmax(p)], device="cuda").fn.plans[0].executor

    def cp_softmax():
        e = cupy.exp(dx - dx.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    rows.append(("W2 row softmax", _timeit(lambda: plan2.run([dx]), sync, args.repeats),
                 _timeit(cp_softmax, sync, args.repeats)))

    # W3: symk step (host feeds, device variables) vs the same step in CuPy
    xb = rng.standard_normal((256, 784)).astype(np.float32)
    yb = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
    ws = [rng.standard_normal(s).astype(np.float32) * 0.05
          for s in ((784, 512), (512, 512), (512, 10))]
    xp, yp = K.placeholder((None, 784)), K.placeholder((None, 10))
    vs = [K.variable(w) for w in ws]
    h = xp
    for v in vs[:-1]:
        h = K.relu(K.dot(h, v))
    loss = K.mean(K.categorical_crossentropy(yp, K.softmax(K.dot(h, vs[-1]))))
    gs = K.gradients(loss, vs)
    step = K.function([xp, yp], [loss], updates=[(v, v - 0.01 * g) for v, g in zip(vs, gs)],
                      device="cuda")
    dws = [cupy.asarray(w) for w in ws]
    dxb, dyb = cupy.asarray(xb), cupy.asarray(yb)

    def cp_step():
        hs = [dxb]
        for w in dws[:-1]:
            hs.append(cupy.maximum(hs[-1] @ w, 0))
        z = hs[-1] @ dws[-1]
        e = cupy.exp(z - z.max(1, keepdims=True))
        pr = e / e.sum(1, keepdims=True)
        d = (pr - dyb) / 256
        for i in range(len(dws) - 1, -1, -1):
            g = hs[i].T @ d
            if i:
                d = (d @ dws[i].T) * (hs[i] > 0)
            dws[i] -= 0.01 * g
    rows.append(("W3 MLP step", _timeit(lambda: step([xb, yb]), sync, args.repeats),
                 _timeit(cp_step, sync, args.repeats)))

    # W5
    m = rng.standard_normal((4096, 4096)).astype(np.float32)
    dm = cupy.asarray(m)
    q1, q2 = K.placeholder((4096, 4096)), K.placeholder((4096, 4096))
    plan5 = K.function([q1, q2], [K.dot(q1, q2)], device="cuda").fn.plans[0].executor
    rows.append(("W5 matmul 4096", _timeit(lambda: plan5.run([dm, dm]), sync, args.repeats),
                 _timeit(lambda: dm @ dm, sync, args.repeats)))

    print(f"{'workload':<24} {'symk ms':>10} {'cupy ms':>10} {'cupy/symk':>10}")
    for name, ts, tc in rows:
        print(f"{name:<24} {ts * 1e3:>10.3f} {tc * 1e3:>10.3f} {tc / ts:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
