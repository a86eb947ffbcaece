"""CPU benchmarks: symk's native ``cpu`` device beside numpy, JAX, PyTensor and numexpr.

Workloads (float32), each printed as a table of medians and ratios:

* ``w1``  fused elementwise ``tanh(x*1.7+0.3) * sigmoid(x) + exp(-x*x)*0.5`` on 10M elements,
  with ``np.copyto`` of the same array as the memory-bandwidth floor;
* ``w2``  softmax over the rows of (4096, 1024); ``w2b`` logsumexp over the rows;
* ``w3``  an MLP training step 784-512-512-10 (relu, softmax cross-entropy, batch 256, SGD
  through ``K.gradients`` and ``K.function(updates=...)``) beside hand-written numpy,
  ``jax.jit(value_and_grad)`` and a PyTensor function with updates;
* ``w4``  compile time and steady call time of chains of 10/100/1000 elementwise ops on a
  (1000,) vector, with a cold and a warm compile cache; every measurement is a fresh process
  (symk: fresh ``SYMK_CACHE_DIR``; JAX: fresh persistent compilation cache; PyTensor: fresh
  compiledir), the warm one a second process on the same directory;
* ``w5``  matmul 1024x1024x1024 (symk ``K.dot`` against numpy's ``@``).

Peers run when importable: numpy always; ``jax.jit``, PyTensor (C backend, floatX=float32) and
numexpr (``w1`` only: it has no row reductions).  symk also runs on ``interp`` for reference.
Engines take turns inside one process (one sample of each per round, so a change in the
machine's load hits all alike); after every call that uses BLAS the loop sleeps 0.15 s untimed.
Every result is checked against a float64 numpy reference ("max err").  symk's kernel cache
directory is a fresh temporary one, so its compile times in W1-W3/W5 are cold LLVM compiles.
"symk/this" is symk's cpu median over the engine's (> 1: that engine is faster).

    python benchmarks/bench_cpu.py [w1 w2 w2b w3 w4 w5 | all] [--repeats 7] [--markdown]
        [--unset-openblas] [--wait-quiet S] [--profile] [--no-interp] [--no-pytensor]
        [--w4-variants cheap,trans]

``--unset-openblas`` re-executes without ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (for every
engine alike); ``--wait-quiet S`` waits up to S s before each workload for other processes to
leave the cores idle; ``--profile`` prints symk's per-kernel profile for W1-W3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from common import (  # noqa: E402
    BLAS_COOLDOWN,
    LoadMeter,
    Row,
    machine_note,
    maybe_unset_openblas,
    measure,
    measure_rows,
    optional,
    print_table,
    target_line,
    time_once,
    wait_for_quiet,
)

WORKLOADS = ("w1", "w2", "w2b", "w3", "w4", "w5")
CHAIN_SIZES = (10, 100, 1000)
TARGETS: list[str] = []


def _versions() -> str:
    import numpy as np

    parts = [f"numpy {np.__version__}"]
    for mod in ("jax", "pytensor", "numexpr", "llvmlite"):
        m = optional(mod)
        parts.append(f"{mod} {getattr(m, '__version__', '?')}" if m else f"{mod} not installed")
    tpc = optional("threadpoolctl")
    if tpc is not None:
        for info in tpc.threadpool_info():
            if info.get("internal_api") == "openblas":
                parts.append(f"numpy's OpenBLAS {info.get('version')}: "
                             f"{info.get('architecture')} kernels, {info.get('num_threads')} "
                             "threads")
    return ", ".join(parts)


def _err(got: Any, ref: Any) -> float:
    """Largest abs difference from the float64 reference; warns when an engine did not compute
    in float32 (every workload is float32)."""
    import numpy as np

    a = np.asarray(got)
    if a.dtype != np.float32:
        print(f"WARNING: a result has dtype {a.dtype}, not float32", file=sys.stderr)
    return float(np.max(np.abs(a.astype(np.float64) - ref)))


class Ctx:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.repeats = args.repeats
        self.md = args.markdown
        self.jax = optional("jax")
        self.pytensor = optional("pytensor") if not args.no_pytensor else None
        self.numexpr = optional("numexpr")

    def measure(self, rows: list[Row], cooldown: float = 0.0) -> None:
        """Time every row's call, engines taking turns.  With ``--steady`` the BLAS workloads
        are timed like a training loop instead: each sample is several back-to-back calls of
        one engine (BLAS threads still awake from the previous call), no cooldown."""
        if cooldown and self.args.steady:
            measure_rows(rows, repeats=self.repeats, cooldown=0.0, budget=self.args.budget,
                         min_sample=0.05)
            return
        measure_rows(rows, repeats=self.repeats, cooldown=cooldown, budget=self.args.budget)

    def devices(self) -> list[str]:
        return ["cpu"] if self.args.no_interp else ["cpu", "interp"]


def _symk_row(ctx: Ctx, inputs, outputs, feeds, ref_check, device: str, *, updates=None,
              cooldown: float = 0.0, note: str = "") -> Row:
    """Compile ``K.function(inputs, outputs)`` on ``device``, check and time it."""
    from symk import backend as K

    t_compile, f = time_once(lambda: K.function(inputs, outputs, updates=updates,
                                                device=device))
    t_first, out = time_once(lambda: f(feeds))
    err = ref_check(out)
    if cooldown:
        time.sleep(cooldown)
    nk = len(f.fn.plans[0].schedule.kernels) if f.fn.plans else 0
    nx = len(f.fn.plans[0].schedule.externs) if f.fn.plans else 0
    return Row("symk", None, device, t_compile + t_first, err,
               (f"compile {t_compile * 1e3:.0f} ms, {nk} kernels, {nx} externs " + note).strip(),
               fn=lambda: f(feeds), obj=f)


def _jax_row(ctx: Ctx, fn, args, ref_check, *, cooldown: float = 0.0, note: str = "") -> Row:
    jax = ctx.jax
    jf = jax.jit(fn)
    dargs = [jax.device_put(a) for a in args]
    t_first, out = time_once(lambda: jax.block_until_ready(jf(*dargs)))
    err = ref_check(out)
    if cooldown:
        time.sleep(cooldown)
    return Row("jax.jit", None, "-", t_first, err, note,
               fn=lambda: jax.block_until_ready(jf(*dargs)))


def _pytensor_row(ctx: Ctx, make, feeds, ref_check, *, cooldown: float = 0.0,
                  note: str = "") -> Row:
    """``make()`` builds and compiles a PyTensor function (timed as compile)."""
    t_compile, f = time_once(make)
    t_first, out = time_once(lambda: f(*feeds))
    err = ref_check(out)
    if cooldown:
        time.sleep(cooldown)
    return Row("pytensor", None, "-", t_compile + t_first, err,
               (f"compile {t_compile * 1e3:.0f} ms " + note).strip(), fn=lambda: f(*feeds))


def _plain_row(ctx: Ctx, name: str, fn, ref_check, *, cooldown: float = 0.0,
               note: str = "") -> Row:
    t_first, out = time_once(fn)
    err = ref_check(out) if ref_check else None
    if cooldown:
        time.sleep(cooldown)
    return Row(name, None, "-", None, err, note, fn=fn)


# --------------------------------------------------------------------------------------- W1


def w1(ctx: Ctx) -> None:
    import numpy as np

    from symk import backend as K

    n = ctx.args.w1_size
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 2
    x64 = x.astype(np.float64)
    ref = np.tanh(x64 * 1.7 + 0.3) / (1 + np.exp(-x64)) + np.exp(-x64 * x64) * 0.5
    check = lambda out: _err(out[0] if isinstance(out, list) else out, ref)
    buf = np.empty_like(x)
    rows = [_plain_row(ctx, "np.copyto", lambda: np.copyto(buf, x), None,
                       note="memory-bandwidth floor (into a preallocated array)"),
            _plain_row(ctx, "x.copy()", lambda: x.copy(), None,
                       note="copy into a freshly allocated array (page faults included)")]
    floor = rows[0]
    xp = K.placeholder((None,), dtype="float32", name="x")
    y = K.tanh(xp * 1.7 + 0.3) * K.sigmoid(xp) + K.exp(-xp * xp) * 0.5
    for dev in ctx.devices():
        rows.append(_symk_row(ctx, [xp], [y], [x], check, dev))
    symk = rows[2]
    rows.append(_plain_row(
        ctx, "numpy", lambda: np.tanh(x * 1.7 + 0.3) * (1 / (1 + np.exp(-x)))
        + np.exp(-x * x) * 0.5, check, note="eager"))
    if ctx.numexpr:
        ne = ctx.numexpr
        # float32 constants: numexpr's Python float literals are float64 and upcast x
        expr = "tanh(x*a+b) * (one/(one+exp(-x))) + exp(-x*x)*h"
        names = {"x": x, "a": np.float32(1.7), "b": np.float32(0.3), "one": np.float32(1),
                 "h": np.float32(0.5)}
        rows.append(_plain_row(ctx, "numexpr", lambda: ne.evaluate(expr, local_dict=names),
                               check, note=f"{ne.get_num_threads()} threads"))
    if ctx.jax:
        import jax
        import jax.numpy as jnp

        rows.append(_jax_row(ctx, lambda v: jnp.tanh(v * 1.7 + 0.3) * jax.nn.sigmoid(v)
                             + jnp.exp(-v * v) * 0.5, [x], check))
    if ctx.pytensor:
        import pytensor
        import pytensor.tensor as pt

        def make():
            v = pt.vector("x", dtype="float32")
            return pytensor.function([v], pt.tanh(v * 1.7 + 0.3) * pt.sigmoid(v)
                                     + pt.exp(-v * v) * 0.5)
        rows.append(_pytensor_row(ctx, make, [x], check))
    ctx.measure(rows)
    print_table(f"W1 fused elementwise, {n:,} float32", rows, symk_row=symk, floor=floor,
                markdown=ctx.md)
    if ctx.args.profile:
        _print_profile(symk.obj, symk.fn, 0.0)
    r = symk.timing.median / floor.timing.median
    TARGETS.append(target_line("W1 within 2.5x of np.copyto", r <= 2.5,
                               f"symk cpu / copyto = {r:.2f}"))


# --------------------------------------------------------------------------------------- W2


def _w2_common(ctx: Ctx, kind: str) -> None:
    import numpy as np

    from symk import backend as K

    shape = (4096, 1024)
    x = (np.random.default_rng(1).standard_normal(shape) * 3).astype(np.float32)
    x64 = x.astype(np.float64)
    m64 = x64.max(1, keepdims=True)
    e64 = np.exp(x64 - m64)
    if kind == "softmax":
        ref = e64 / e64.sum(1, keepdims=True)
    else:
        ref = (m64 + np.log(e64.sum(1, keepdims=True)))[:, 0]
    check = lambda out: _err(out[0] if isinstance(out, list) else out, ref)
    xp = K.placeholder((None, 1024), dtype="float32", name="x")
    y = K.softmax(xp) if kind == "softmax" else K.logsumexp(xp, axis=1)
    rows = []
    for dev in ctx.devices():
        rows.append(_symk_row(ctx, [xp], [y], [x], check, dev))
    symk = rows[0]

    def np_softmax():
        m = x.max(1, keepdims=True)
        e = np.exp(x - m)
        e /= e.sum(1, keepdims=True)
        return e

    def np_lse():
        m = x.max(1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]

    rows.append(_plain_row(ctx, "numpy", np_softmax if kind == "softmax" else np_lse, check,
                           note="eager, max-shifted"))
    jax_row = None
    if ctx.jax:
        import jax

        fn = ((lambda v: jax.nn.softmax(v, axis=-1)) if kind == "softmax" else
              (lambda v: jax.nn.logsumexp(v, axis=1)))
        jax_row = _jax_row(ctx, fn, [x], check)
        rows.append(jax_row)
    if ctx.pytensor:
        import pytensor
        import pytensor.tensor as pt

        def make():
            v = pt.matrix("x", dtype="float32")
            out = (pt.special.softmax(v, axis=-1) if kind == "softmax" else
                   pt.logsumexp(v, axis=1))
            return pytensor.function([v], out)
        rows.append(_pytensor_row(ctx, make, [x], check))
    ctx.measure(rows)
    label = "W2 softmax over rows" if kind == "softmax" else "W2b logsumexp over rows"
    print_table(f"{label} of (4096, 1024) float32", rows, symk_row=symk, markdown=ctx.md)
    if ctx.args.profile:
        _print_profile(symk.obj, symk.fn, 0.0)
    if jax_row is not None:
        r = symk.timing.median / jax_row.timing.median
        TARGETS.append(target_line(f"{label.split()[0]} faster than jax.jit", r < 1,
                                   f"symk cpu / jax.jit = {r:.2f}"))


def w2(ctx: Ctx) -> None:
    _w2_common(ctx, "softmax")


def w2b(ctx: Ctx) -> None:
    _w2_common(ctx, "logsumexp")


# --------------------------------------------------------------------------------------- W3

SIZES = [(784, 512), (512, 512), (512, 10)]
BATCH, LR = 256, 0.01


def _print_profile(f, call, cooldown: float, calls: int = 7, top: int = 12) -> None:
    """symk's per-step profile (``Function.profile``) over a few calls, the costliest first."""
    f.profile(True)
    for _ in range(calls):
        call()
        time.sleep(cooldown)
    lines = f.profile(False).splitlines()
    print(f"\nsymk cpu profile over {calls} calls (top {top} steps):")
    print("\n".join(["```", *lines[:top + 1], "```"]))


def _mlp_data():
    import numpy as np

    rng = np.random.default_rng(2)
    params = []
    for a, b in SIZES:
        params.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
        params.append((rng.standard_normal(b) * 0.01).astype(np.float32))
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    return params, x, t


def _mlp_reference(params, x, t):
    """One SGD step in float64: (loss, new params)."""
    import numpy as np

    p = [q.astype(np.float64) for q in params]
    x, t = x.astype(np.float64), t.astype(np.float64)
    h1 = np.maximum(x @ p[0] + p[1], 0)
    h2 = np.maximum(h1 @ p[2] + p[3], 0)
    z = h2 @ p[4] + p[5]
    m = z.max(1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(1, keepdims=True))
    loss = float(np.mean(np.sum(t * (lse - z), 1)))
    dz = (np.exp(z - lse) - t) / len(x)
    g4, g5 = h2.T @ dz, dz.sum(0)
    d2 = (dz @ p[4].T) * (h2 > 0)
    g2, g3 = h1.T @ d2, d2.sum(0)
    d1 = (d2 @ p[2].T) * (h1 > 0)
    g0, g1 = x.T @ d1, d1.sum(0)
    grads = [g0, g1, g2, g3, g4, g5]
    return loss, [q - LR * g for q, g in zip(p, grads)]


def _mlp_check(ref_loss, ref_params, loss, params) -> float:
    """Largest abs error of the loss and of every updated parameter after one step."""
    errs = [abs(float(loss) - ref_loss)]
    errs += [_err(q, r) for q, r in zip(params, ref_params)]
    return max(errs)


def w3(ctx: Ctx) -> None:
    import numpy as np

    from symk import backend as K

    init, x, t = _mlp_data()
    ref_loss, ref_params = _mlp_reference(init, x, t)
    cd = BLAS_COOLDOWN
    rows = []
    # symk: Keras-style graph, K.gradients, K.function(updates=...)
    for dev in ctx.devices():
        xp = K.placeholder((None, 784), name="x")
        tp = K.placeholder((None, 10), name="t")
        vs = [K.variable(p.copy(), name=f"p{i}") for i, p in enumerate(init)]
        h = xp
        for i in range(3):
            h = K.bias_add(K.dot(h, vs[2 * i]), vs[2 * i + 1])
            h = K.relu(h) if i < 2 else K.softmax(h)
        loss = K.mean(K.categorical_crossentropy(tp, h))
        grads = K.gradients(loss, vs)
        updates = [K.update(v, v - LR * g) for v, g in zip(vs, grads)]
        t_compile, f = time_once(lambda: K.function([xp, tp], [loss], updates=updates,
                                                    device=dev))
        t_first, out = time_once(lambda: f([x, t]))
        err = _mlp_check(ref_loss, ref_params, out[0], [K.get_value(v) for v in vs])
        time.sleep(cd)
        sched = f.fn.plans[0].schedule
        rows.append(Row("symk", None, dev, t_compile + t_first, err,
                        f"compile {t_compile * 1e3:.0f} ms, {len(sched.kernels)} kernels, "
                        f"{len(sched.externs)} externs", fn=lambda f=f: f([x, t])))
        if dev == "cpu":
            symk_fn = f
    symk = rows[0]

    # hand-written numpy, in place where it helps
    P = [p.copy() for p in init]

    def np_step():
        w0, b0, w1, b1, w2, b2 = P
        h1 = x @ w0
        h1 += b0
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ w1
        h2 += b1
        np.maximum(h2, 0, out=h2)
        z = h2 @ w2
        z += b2
        m = z.max(1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(1, keepdims=True)
        loss = np.mean(np.log(s)[:, 0] + m[:, 0] - np.einsum("ij,ij->i", t, z))
        e /= s
        e -= t
        e *= 1.0 / len(x)
        dz = e
        g4, g5 = h2.T @ dz, dz.sum(0)
        d2 = dz @ w2.T
        d2 *= h2 > 0
        g2, g3 = h1.T @ d2, d2.sum(0)
        d1 = d2 @ w1.T
        d1 *= h1 > 0
        g0, g1 = x.T @ d1, d1.sum(0)
        for p, g in zip(P, (g0, g1, g2, g3, g4, g5)):
            p -= LR * g
        return loss

    t_first, loss0 = time_once(np_step)
    err = _mlp_check(ref_loss, ref_params, loss0, P)
    time.sleep(cd)
    np_row = Row("numpy", None, "-", t_first, err, "hand-written forward/backward/update",
                 fn=np_step)
    rows.append(np_row)

    jax_row = None
    if ctx.jax:
        import jax
        import jax.numpy as jnp

        def loss_fn(ps, xb, tb):
            h = xb
            for i in range(3):
                h = h @ ps[2 * i] + ps[2 * i + 1]
                if i < 2:
                    h = jax.nn.relu(h)
            return -jnp.mean(jnp.sum(tb * jax.nn.log_softmax(h, axis=-1), axis=-1))

        def step(ps, xb, tb):
            lval, gs = jax.value_and_grad(loss_fn)(ps, xb, tb)
            return [p - LR * g for p, g in zip(ps, gs)], lval

        jstep = jax.jit(step, donate_argnums=0)
        state = [[jax.device_put(p) for p in init]]
        xj, tj = jax.device_put(x), jax.device_put(t)

        def jax_call():
            state[0], lval = jstep(state[0], xj, tj)
            return jax.block_until_ready(lval)

        t_first, lval = time_once(jax_call)
        err = _mlp_check(ref_loss, ref_params, lval, [np.asarray(p) for p in state[0]])
        time.sleep(cd)
        jax_row = Row("jax.jit", None, "-", t_first, err, "value_and_grad, donated params",
                      fn=jax_call)
        rows.append(jax_row)

    if ctx.pytensor:
        import pytensor
        import pytensor.tensor as pt

        shared = [pytensor.shared(p.copy(), name=f"p{i}") for i, p in enumerate(init)]

        def make():
            xv = pt.matrix("x", dtype="float32")
            tv = pt.matrix("t", dtype="float32")
            h = xv
            for i in range(3):
                h = pt.dot(h, shared[2 * i]) + shared[2 * i + 1]
                if i < 2:
                    h = pt.maximum(h, 0)
            logp = pt.special.log_softmax(h, axis=-1)
            lval = -pt.mean(pt.sum(tv * logp, axis=-1))
            gs = pytensor.grad(lval, shared)
            return pytensor.function([xv, tv], lval, updates=[
                (p, (p - np.float32(LR) * g).astype("float32")) for p, g in zip(shared, gs)])

        t_compile, f = time_once(make)
        t_first, lval = time_once(lambda: f(x, t))
        err = _mlp_check(ref_loss, ref_params, lval, [p.get_value() for p in shared])
        time.sleep(cd)
        rows.append(Row("pytensor", None, "-", t_compile + t_first, err,
                        f"compile {t_compile * 1e3:.0f} ms", fn=lambda: f(x, t)))

    ctx.measure(rows, cooldown=cd)
    print_table(f"W3 MLP training step 784-512-512-10, batch {BATCH}, SGD", rows,
                symk_row=symk, markdown=ctx.md)
    if ctx.args.profile:
        _print_profile(symk_fn, lambda: symk_fn([x, t]), cd)
    rn = symk.timing.median / np_row.timing.median
    detail = f"symk cpu / numpy = {rn:.2f}"
    met = rn < 1
    if jax_row is not None:
        rj = symk.timing.median / jax_row.timing.median
        detail += f", symk cpu / jax.jit = {rj:.2f}"
        met = met and rj < 1
    TARGETS.append(target_line("W3 faster than jax.jit and hand-written numpy", met, detail))


# --------------------------------------------------------------------------------------- W4

_CHEAP = ("y*1.0001", "y+0.001", "maximum(y,-5)", "y-0.0005")
_TRANS = ("tanh(y)", "y*1.0001", "y+0.001", "maximum(y,-5)")


def _chain_ops(variant: str) -> tuple[str, ...]:
    return _CHEAP if variant == "cheap" else _TRANS


def _chain_numpy(x, n: int, variant: str):
    import numpy as np

    y = x
    for i in range(n):
        op = _chain_ops(variant)[i % 4]
        y = (y * 1.0001 if op == "y*1.0001" else y + 0.001 if op == "y+0.001" else
             np.maximum(y, -5) if op.startswith("maximum") else y - 0.0005 if op == "y-0.0005"
             else np.tanh(y))
    return y


def _chain_generic(y, n: int, variant: str, maximum, tanh):
    for i in range(n):
        op = _chain_ops(variant)[i % 4]
        y = (y * 1.0001 if op == "y*1.0001" else y + 0.001 if op == "y+0.001" else
             maximum(y, -5.0) if op.startswith("maximum") else y - 0.0005
             if op == "y-0.0005" else tanh(y))
    return y


def w4_child(engine: str, n: int, variant: str, repeats: int) -> dict[str, Any]:
    """Run in a fresh process: import, build, compile, first call, steady calls."""
    t0 = time.perf_counter()
    import numpy as np

    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    ref = _chain_numpy(x.astype(np.float64), n, variant)
    res: dict[str, Any] = {}
    probe = np.ones(3, np.float32)
    if engine == "symk":
        from symk import backend as K

        # one-time process set-up (lazy imports, LLVM initialisation) on a tiny function
        ti = time.perf_counter()
        p0 = K.placeholder((3,), dtype="float32")
        K.function([p0], [p0 * 2.0 + 1.0], device="cpu")([probe])
        res["init_s"] = time.perf_counter() - ti
        spent = _instrument_symk()
        t1 = time.perf_counter()
        xp = K.placeholder((1000,), dtype="float32")
        y = _chain_generic(xp, n, variant, K.maximum, K.tanh)
        t2 = time.perf_counter()
        f = K.function([xp], [y], device="cpu")
        t3 = time.perf_counter()
        out = f([x])[0]
        t4 = time.perf_counter()
        sched = f.fn.plans[0].schedule
        res["kernels"] = len(sched.kernels)
        res["passes_s"], res["llvm_s"] = spent["optimize"], spent["compile_object"]
        steady = lambda: f([x])
    elif engine == "jax":
        import jax
        import jax.numpy as jnp

        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # persistent cache for every compile
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        ti = time.perf_counter()  # one-time set-up: the CPU client, first tiny compile
        jax.block_until_ready(jax.jit(lambda v: v * 2.0 + 1.0)(probe))
        res["init_s"] = time.perf_counter() - ti
        t1 = time.perf_counter()
        xj = jax.device_put(x)
        jf = jax.jit(lambda v: _chain_generic(v, n, variant, jnp.maximum, jnp.tanh))
        t2 = t3 = time.perf_counter()  # tracing happens inside the first call
        out = jax.block_until_ready(jf(xj))
        t4 = time.perf_counter()
        steady = lambda: jax.block_until_ready(jf(xj))
    elif engine == "pytensor":
        sys.setrecursionlimit(20000)  # PyTensor's rewrites recurse through a 1000-op chain
        import pytensor
        import pytensor.tensor as pt

        ti = time.perf_counter()  # one-time set-up: first (tiny) compile
        p0 = pt.vector("p", dtype="float32")
        pytensor.function([p0], p0 * 2.0 + 1.0)(probe)
        res["init_s"] = time.perf_counter() - ti
        t1 = time.perf_counter()
        v = pt.vector("x", dtype="float32")
        y = _chain_generic(v, n, variant, pt.maximum, pt.tanh)
        t2 = time.perf_counter()
        f = pytensor.function([v], y)
        t3 = time.perf_counter()
        out = f(x)
        t4 = time.perf_counter()
        steady = lambda: f(x)
    else:
        raise SystemExit(f"unknown engine {engine}")
    tm = measure(steady, repeats=repeats, budget=2.0)
    res.update(import_s=t1 - t0, build_s=t2 - t1, compile_s=t3 - t2, first_s=t4 - t3,
               steady_s=tm.median, err=_err(out, ref))
    return res


def _instrument_symk() -> dict[str, float]:
    """Accumulate the time spent in the pass pipeline and in LLVM compilation (wrapping the
    module attributes the runtime looks them up by)."""
    import symk.passes.pipeline as pipeline
    import symk.runtime.native as native

    spent = {"optimize": 0.0, "compile_object": 0.0}

    def wrap(mod, name):
        orig = getattr(mod, name)

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0
        setattr(mod, name, timed)

    wrap(pipeline, "optimize")
    wrap(native, "compile_object")
    return spent


def _run_child(engine: str, n: int, variant: str, env: dict[str, str],
               repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "_w4child", engine, str(n), variant,
           "--repeats", str(repeats)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def w4(ctx: Ctx) -> None:
    import numpy as np

    variants = ctx.args.w4_variants.split(",")
    engines = ["symk"] + (["jax"] if ctx.jax else []) + (["pytensor"] if ctx.pytensor else [])
    base = {k: v for k, v in os.environ.items() if k not in ("SYMK_CACHE_DIR",)}
    results: list[tuple[str, int, str, str, dict[str, Any]]] = []
    for variant in variants:
        for n in CHAIN_SIZES:
            for eng in engines:
                with tempfile.TemporaryDirectory(prefix=f"w4-{eng}-") as d:
                    env = dict(base)
                    if eng == "symk":
                        env["SYMK_CACHE_DIR"] = d
                    elif eng == "pytensor":
                        env["PYTENSOR_FLAGS"] += f",compiledir={d}"
                    elif eng == "jax":
                        env.setdefault("JAX_PLATFORMS", "cpu")
                        env["JAX_COMPILATION_CACHE_DIR"] = d
                    for cache in ("cold", "warm"):
                        r = _run_child(eng, n, variant, env, ctx.repeats)
                        results.append((variant, n, eng, cache, r))
            x = np.linspace(-3, 3, 1000, dtype=np.float32)
            tm = measure(lambda n=n, variant=variant: _chain_numpy(x, n, variant),
                         repeats=ctx.repeats, budget=1.0)
            results.append((variant, n, "numpy", "-", {"steady_s": tm.median}))
    _print_w4(ctx, results)


def _print_w4(ctx: Ctx, results) -> None:
    head = ["chain", "engine", "cache", "build ms", "compile ms", "1st call ms",
            "compile+1st ms", "steady us", "symk/this steady", "symk/this compile+1st",
            "max err", "note"]
    symk_of = {(v, n, c): r for v, n, e, c, r in results if e == "symk"}
    lines = []
    for v, n, eng, cache, r in results:
        if "error" in r:
            lines.append([f"{v} {n}", eng, cache] + ["-"] * 8 + [f"FAILED: {r['error']}"])
            continue
        cf = r.get("compile_s", 0) + r.get("first_s", 0) if "first_s" in r else None
        # ratios against symk's run with the same cache state (cold for jax and numpy)
        s = {} if eng == "symk" else symk_of.get((v, n, "warm" if cache == "warm" else "cold"),
                                                 {})
        s = {} if "error" in s else s
        s_cf = s.get("compile_s", 0) + s.get("first_s", 0) if "first_s" in s else None
        note = ""
        init = f"init {r['init_s'] * 1e3:.0f} ms" if "init_s" in r else ""
        if eng == "symk":
            note = (f"{r.get('kernels', '?')} kernel(s); compile = passes "
                    f"{r['passes_s'] * 1e3:.0f} + LLVM {r['llvm_s'] * 1e3:.0f} + rest; {init}")
        elif eng == "jax":
            note = f"trace happens in the 1st call; persistent compilation cache; {init}"
        elif eng == "numpy":
            note = "eager, no compile"
        elif eng == "pytensor":
            note = f"C backend; {init}"
        fmt = lambda t: "-" if t is None else f"{t * 1e3:.1f}"
        lines.append([
            f"{v} {n}", eng, cache, fmt(r.get("build_s")), fmt(r.get("compile_s")),
            fmt(r.get("first_s")), fmt(cf), f"{r['steady_s'] * 1e6:.1f}",
            f"{s.get('steady_s', float('nan')) / r['steady_s']:.2f}" if s else "-",
            f"{s_cf / cf:.3f}" if s_cf and cf else "-",
            f"{r['err']:.1e}" if "err" in r else "-", note])
    print("\n## W4 elementwise chains on a (1000,) float32 vector: compile and steady call")
    print("(each row is a fresh process; 'init' is its one-time set-up on a tiny function, "
          "not included; ratios against symk with the same cache state)")
    if ctx.md:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" if i in (0, 1, 2, len(head) - 1) else "---:"
                                for i in range(len(head))) + " |")
        for c in lines:
            print("| " + " | ".join(c) + " |")
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        for c in [head, *lines]:
            print("  ".join(val.ljust(w) if i in (0, 1, 2, len(head) - 1) else val.rjust(w)
                            for i, (val, w) in enumerate(zip(c, widths))).rstrip())
    for v in ctx.args.w4_variants.split(","):
        cold = symk_of.get((v, 1000, "cold"), {})
        warm = symk_of.get((v, 1000, "warm"), {})
        if "first_s" in cold and "first_s" in warm:
            c = cold["compile_s"] + cold["first_s"]
            w = warm["compile_s"] + warm["first_s"]
            TARGETS.append(target_line(
                f"W4 ({v}) 1000-op chain compile+1st < 0.2 s cold, < 20 ms warm",
                c < 0.2 and w < 0.02,
                f"cold {c * 1e3:.0f} ms (+ build {cold['build_s'] * 1e3:.0f} ms), "
                f"warm {w * 1e3:.1f} ms (+ build {warm['build_s'] * 1e3:.0f} ms)"))


# --------------------------------------------------------------------------------------- W5


def w5(ctx: Ctx) -> None:
    import numpy as np

    from symk import backend as K

    rng = np.random.default_rng(3)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    check = lambda out: _err(out[0] if isinstance(out, list) else out, ref)
    cd = BLAS_COOLDOWN
    pa = K.placeholder((1024, 1024), name="a")
    pb = K.placeholder((1024, 1024), name="b")
    rows = [_symk_row(ctx, [pa, pb], [K.dot(pa, pb)], [a, b], check, "cpu", cooldown=cd)]
    symk = rows[0]
    np_row = _plain_row(ctx, "numpy", lambda: a @ b, check, cooldown=cd, note="a @ b, OpenBLAS")
    rows.append(np_row)
    if ctx.jax:
        import jax.numpy as jnp

        rows.append(_jax_row(ctx, lambda u, v: jnp.dot(u, v), [a, b], check, cooldown=cd,
                             note="reference only (XLA's own GEMM)"))
    ctx.measure(rows, cooldown=cd)
    flops = 2 * 1024 ** 3
    for r in rows:
        r.note = (r.note + f" {flops / r.timing.median / 1e9:.0f} GFLOP/s").strip()
    print_table("W5 matmul 1024x1024 @ 1024x1024 float32", rows, symk_row=symk,
                markdown=ctx.md)
    r = symk.timing.median / np_row.timing.median
    TARGETS.append(target_line("W5 within 5% of numpy BLAS", r <= 1.05,
                               f"symk cpu / numpy = {r:.3f}"))


# ------------------------------------------------------------------------------------- main


def _pytensor_c_backend(env) -> None:
    """PyTensor 3 defaults to its numba linker, whose numba pins an older llvmlite than symk
    needs (it fails here); use its C backend (``linker=cvm``) and ``floatX=float32``, set
    before it is imported."""
    flags = env.get("PYTENSOR_FLAGS", "")
    if "linker=" not in flags:
        flags = ",".join(f for f in (flags, "linker=cvm") if f)
    if "floatX=" not in flags:  # else Python float constants promote float32 graphs to float64
        flags += ",floatX=float32"
    env["PYTENSOR_FLAGS"] = flags


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_w4child":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("engine")
        ap.add_argument("n", type=int)
        ap.add_argument("variant")
        ap.add_argument("--repeats", type=int, default=7)
        a = ap.parse_args()
        print(json.dumps(w4_child(a.engine, a.n, a.variant, a.repeats)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", choices=[*WORKLOADS, "all"], default="all",
                    help="workloads to run: w1 fused elementwise, w2 softmax, w2b logsumexp, "
                         "w3 MLP training step, w4 elementwise-chain compile and call, "
                         "w5 matmul (default: all)")
    ap.add_argument("--repeats", type=int, default=7, help="timed samples per engine")
    ap.add_argument("--markdown", action="store_true", help="print tables as markdown")
    ap.add_argument("--unset-openblas", action="store_true",
                    help="re-exec without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (all engines)")
    ap.add_argument("--no-interp", action="store_true", help="skip symk's interp device")
    ap.add_argument("--no-pytensor", action="store_true", help="skip PyTensor")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each workload, wait up to S s for the machine to be quiet")
    ap.add_argument("--profile", action="store_true",
                    help="also print symk's per-kernel profile (fused elementwise, softmax "
                         "and MLP training step)")
    ap.add_argument("--budget", type=float, default=3.0,
                    help="stop sampling (after 3 rounds) once this many s per engine are spent")
    ap.add_argument("--steady", action="store_true",
                    help="MLP training step and matmul: samples of back-to-back calls (a "
                         "training loop) instead of one call after a BLAS cooldown")
    ap.add_argument("--w1-size", type=int, default=10_000_000,
                    help="elements of the fused-elementwise workload (w1)")
    ap.add_argument("--w4-variants", default="cheap,trans",
                    help="elementwise-chain workload (w4): comma-separated variants: cheap "
                         "(mul/add/max/sub), trans (tanh/mul/add/max)")
    args = ap.parse_args()
    maybe_unset_openblas(args.unset_openblas)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    _pytensor_c_backend(os.environ)
    wanted = [args.workloads] if isinstance(args.workloads, str) else args.workloads
    chosen = [w for w in WORKLOADS if w in wanted or "all" in wanted]
    cache_dir = tempfile.mkdtemp(prefix="symk-bench-cache-")
    os.environ["SYMK_CACHE_DIR"] = cache_dir  # cold LLVM compiles for W1-W3, W5
    try:
        ctx = Ctx(args)
        print(f"# symk cpu benchmarks: {' '.join(chosen)}")
        print(f"machine: {machine_note()}")
        print(f"versions: {_versions()}")
        for w in chosen:
            if args.wait_quiet:
                waited = wait_for_quiet(args.wait_quiet)
                print(f"\n(waited {waited:.0f} s for other processes to use < 0.3 cores)")
            t0, meter = time.perf_counter(), LoadMeter()
            globals()[w](ctx)
            others = meter.others()
            print(f"({w} took {time.perf_counter() - t0:.0f} s"
                  + ("" if others is None else
                     f"; other processes kept {others:.2f} of {os.cpu_count()} cores busy")
                  + ")")
        if TARGETS:
            print("\n## issue-5 targets")
            for line in TARGETS:
                print(f"- {line}")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
