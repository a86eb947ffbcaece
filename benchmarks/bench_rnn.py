"""SimpleRNN forward through ``K.rnn`` beside ``jax.lax.scan`` and PyTensor's ``scan``.

Batch 64, input 64, units 128, 100 time steps, float32: ``h_t = tanh(x_t W + b + h_{t-1} U)``
with ``h_0 = 0``, all outputs returned as (batch, time, units).  symk traces the step once;
its input projection ``x_t W + b`` is hoisted out of the loop (one GEMM over all steps) and
the body (one GEMM and one fused kernel) is compiled once and run per step.  JAX:
``jax.lax.scan`` under ``jax.jit``; PyTensor: ``pytensor.scan`` (C backend); numpy: the same
loop written by hand (with the projection hoisted too).  Engines take turns in one process
(one call per sample, 0.15 s untimed pause after each: all engines use BLAS; ``--cooldown 0``
runs the calls back to back, as training does, keeping the cores awake), medians after
warm-up.  Every result is checked against a float64 numpy loop ("max err").

    python benchmarks/bench_rnn.py [--repeats 15] [--markdown] [--unset-openblas]
        [--wait-quiet S] [--profile] [--cooldown S] [--processes N]
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from common import (  # noqa: E402
    BLAS_COOLDOWN,
    LoadMeter,
    Row,
    child_result,
    isolated_rows,
    machine_note,
    maybe_unset_openblas,
    measure_rows,
    optional,
    print_table,
    report_isolated,
    standard_arguments,
    target_line,
    time_once,
    wait_for_quiet,
)

B, F, U, T = 64, 64, 128, 100


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, F), dtype=np.float32)
    w = (rng.standard_normal((F, U)) / np.sqrt(F)).astype(np.float32)
    u = (rng.standard_normal((U, U)) / np.sqrt(U)).astype(np.float32)
    b = (rng.standard_normal(U) * 0.1).astype(np.float32)
    return x, w, u, b


def reference(x, w, u, b):
    import numpy as np

    x, w, u, b = (a.astype(np.float64) for a in (x, w, u, b))
    h = np.zeros((B, U))
    hs = []
    for t in range(T):
        h = np.tanh(x[:, t] @ w + b + h @ u)
        hs.append(h)
    return np.stack(hs, 1)


def symk_row(x, w, u, b, ref, device: str = "cpu") -> Row:
    import numpy as np

    from symk import backend as K

    xs = K.placeholder((B, T, F))
    wv, uv, bv = K.variable(w), K.variable(u), K.variable(b)

    def step(xt, states):
        h = K.tanh(K.bias_add(K.dot(xt, wv), bv) + K.dot(states[0], uv))
        return h, [h]

    def build():
        _, outs, _ = K.rnn(step, xs, [K.zeros((B, U))])
        f = K.function([xs], [outs], device=device)
        return f, f([x])[0]
    t, (f, out) = time_once(build)
    err = float(np.abs(out - ref).max())
    return Row("symk", None, device, t, err, "K.rnn (scan)", fn=lambda: f([x]), obj=f)


def jax_row(x, w, u, b, ref) -> Row | None:
    jax = optional("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    import numpy as np

    @jax.jit
    def run(x, w, u, b):
        def step(h, xt):
            h = jnp.tanh(xt @ w + b + h @ u)
            return h, h
        _, hs = jax.lax.scan(step, jnp.zeros((B, U), jnp.float32), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    args = [jnp.asarray(a) for a in (x, w, u, b)]
    t, out = time_once(lambda: jax.block_until_ready(run(*args)))
    err = float(np.abs(np.asarray(out) - ref).max())
    return Row("jax.jit", None, "-", t, err, "lax.scan",
               fn=lambda: jax.block_until_ready(run(*args)))


def pytensor_row(x, w, u, b, ref) -> Row | None:
    pytensor = optional("pytensor")
    if pytensor is None:
        return None
    import numpy as np
    import pytensor.tensor as pt

    xs = pt.tensor3("x", dtype="float32")
    wv, uv, bv = (pytensor.shared(a) for a in (w, u, b))

    def step(xt, h):
        return pt.tanh(pt.dot(xt, wv) + bv + pt.dot(h, uv))

    def build():
        hs, _ = pytensor.scan(step, sequences=xs.dimshuffle(1, 0, 2),
                              outputs_info=pt.zeros((B, U), dtype="float32"))
        f = pytensor.function([xs], hs.dimshuffle(1, 0, 2))
        return f, f(x)
    t, (f, out) = time_once(build)
    err = float(np.abs(out - ref).max())
    return Row("pytensor", None, "-", t, err, "scan (C backend)", fn=lambda: f(x))


def numpy_row(x, w, u, b, ref) -> Row:
    import numpy as np

    def run():
        xw = (x.reshape(B * T, F) @ w).reshape(B, T, U).transpose(1, 0, 2) + b
        out = np.empty((T, B, U), np.float32)
        h = np.zeros((B, U), np.float32)
        for t in range(T):
            h = np.tanh(xw[t] + h @ u)
            out[t] = h
        return out.transpose(1, 0, 2)
    t, out = time_once(run)
    return Row("numpy", None, "-", t, float(np.abs(out - ref).max()), "hand-written loop",
               fn=run)


def main() -> None:
    ap = standard_arguments(__doc__.splitlines()[0])
    ap.add_argument("--profile", action="store_true",
                    help="also print symk's per-kernel profile of the loop")
    ap.add_argument("--cooldown", type=float, default=BLAS_COOLDOWN, metavar="S",
                    help="untimed sleep after each timed call (default %(default)s; 0: calls "
                         "back to back, as in training, with the cores kept awake)")
    ap.add_argument("--processes", type=int, default=0, metavar="N",
                    help="N rounds of fresh processes, one per engine, each measuring its "
                         "engine alone with calls back to back (no cooldown)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    maybe_unset_openblas(args.unset_openblas)
    if args.processes:
        isolated(args)
        return
    # PyTensor's default numba linker fails here (its numba pins an older llvmlite): use its C
    # backend, with float32 constants
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "linker=" not in flags:
        os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, "linker=cvm,floatX=float32")
                                                if f)
    x, w, u, b = data()
    ref = reference(x, w, u, b)
    makers = {"symk": symk_row, "jax.jit": jax_row, "pytensor": pytensor_row,
              "numpy": numpy_row}
    if args.child:
        r = makers[args.child](x, w, u, b, ref)
        if r is not None:
            measure_rows([r], repeats=args.repeats, cooldown=args.cooldown, budget=10.0)
            print(child_result(w6=r))
        return
    rows = [symk_row(x, w, u, b, ref)]
    for make in (jax_row, pytensor_row, numpy_row):
        r = make(x, w, u, b, ref)
        if r is not None:
            rows.append(r)
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet)
    meter = LoadMeter()
    measure_rows(rows, repeats=args.repeats, cooldown=args.cooldown, budget=10.0)
    others = meter.others()
    print(machine_note())
    print_table(f"W6 SimpleRNN forward (batch {B}, input {F}, units {U}, {T} steps, float32)",
                rows, symk_row=rows[0], markdown=args.markdown)
    if others is not None:
        print(f"(other processes kept {others:.2f} cores busy during the measurement)")
    jax_r = next((r for r in rows if r.engine == "jax.jit"), None)
    if jax_r is not None and jax_r.timing and rows[0].timing:
        s, j = rows[0].timing.median, jax_r.timing.median
        print(target_line("W6", s < j, f"symk {s * 1e3:.2f} ms vs jax.lax.scan "
                                       f"{j * 1e3:.2f} ms ({j / s:.2f}x)"))
    if args.profile and rows[0].obj is not None:
        f = rows[0].obj
        f.profile(True)
        for _ in range(20):
            rows[0].fn()
        print(f.profile(False))


def isolated(args) -> None:
    """``--processes N``: every engine alone in fresh processes, rounds interleaved."""
    engines = ["symk"] + [e for e, m in (("jax.jit", "jax"), ("pytensor", "pytensor"))
                          if optional(m) is not None] + ["numpy"]
    got = isolated_rows(os.path.abspath(__file__), engines, args.processes,
                        ["--repeats", str(args.repeats), "--cooldown", "0"])
    notes = {"symk": ("cpu", "K.rnn (scan)"), "jax.jit": ("-", "lax.scan"),
             "pytensor": ("-", "scan (C backend)"), "numpy": ("-", "hand-written loop")}
    print(machine_note())
    report_isolated(f"W6 SimpleRNN forward (batch {B}, input {F}, units {U}, {T} steps, "
                    "float32)", got, "w6", notes, [("jax.jit", 0.8)], args.processes,
                    args.markdown)

if __name__ == "__main__":
    main()
