"""Convolution benchmark: conv2d NHWC float32 forward and its input and kernel gradients.

Batch 32, 28x28x32 input, 3x3 kernel, 64 filters, valid padding; forward, and the gradient
w.r.t. input and kernel of ``sum(conv2d(x, w) * g)``.

Engines (taking turns inside one process, 0.15 s untimed after each call for OpenBLAS's
spinning threads): symk ``K.function`` on the cpu device; a hand-written numpy im2col
(``sliding_window_view`` copy + one GEMM); ``jax.lax.conv_general_dilated`` under ``jax.jit``
(gradient: ``jax.jit(jax.grad)``); PyTensor's conv2d when its installed version has one
(PyTensor 3 dropped ``pytensor.tensor.nnet``).  Every result is checked against a float64
numpy reference ("max err"); "symk/this" is symk's median over the engine's (> 1: that engine
is faster).

    python benchmarks/bench_conv.py [--repeats 15] [--markdown] [--unset-openblas]
        [--wait-quiet S] [--processes N [--tf-python PATH]]

``--processes N`` runs every engine alone in N fresh processes (rounds interleaved, calls back
to back) instead: no engine's threads run beside another's; ``--tf-python PATH`` adds
TensorFlow's ``tf.nn.conv2d`` (oneDNN), run by that environment's Python.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

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

N, H, W, C, KH, KW, F = 32, 28, 28, 32, 3, 3, 64
JAX_W7_MS = 6.3  # the measurement of JAX on this machine


def _err(got: Any, ref: Any) -> float:
    import numpy as np

    if isinstance(got, (list, tuple)):
        return max(_err(g, r) for g, r in zip(got, ref))
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)))


def _ref64(x, k, g):
    """float64 forward and gradients, written with einsum over the window view."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    x64, k64, g64 = (a.astype(np.float64) for a in (x, k, g))
    win = sliding_window_view(x64, (KH, KW), axis=(1, 2))  # N, 26, 26, C, KH, KW
    y = np.einsum("nijcab,abcf->nijf", win, k64, optimize=True)
    dk = np.einsum("nijcab,nijf->abcf", win, g64, optimize=True)
    dx = np.zeros_like(x64)
    oh, ow = H - KH + 1, W - KW + 1
    for a in range(KH):
        for b in range(KW):
            dx[:, a:a + oh, b:b + ow, :] += g64 @ k64[a, b].T
    return y, dx, dk


def _numpy_im2col(x, k):
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x, (KH, KW), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    col = np.ascontiguousarray(win).reshape(-1, KH * KW * C)
    return (col @ k.reshape(-1, F)).reshape(N, H - KH + 1, W - KW + 1, F)


def run(args: argparse.Namespace, only: str | None = None, quiet: bool = False,
        ) -> tuple[Row | None, Row | None] | None:
    """Build and measure every engine (or ``only`` that one, with no cooldown, returning its
    forward and gradient rows instead of printing the tables)."""
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    k = (rng.standard_normal((KH, KW, C, F)) * 0.1).astype(np.float32)
    g = rng.standard_normal((N, H - KH + 1, W - KW + 1, F)).astype(np.float32)
    y64, dx64, dk64 = _ref64(x, k, g)
    cd = 0.0 if only else BLAS_COOLDOWN
    jax = optional("jax") if only in (None, "jax.jit") else None
    fwd: list[Row] = []
    grad: list[Row] = []

    if only in (None, "symk"):
        _symk_rows(x, k, g, y64, dx64, dk64, fwd, grad)
    if only in (None, "numpy"):
        t1, out = time_once(lambda: _numpy_im2col(x, k))
        fwd.append(Row("numpy", None, "-", None, _err(out, y64), note="im2col copy + one GEMM",
                       fn=lambda: _numpy_im2col(x, k)))
    if jax is not None:
        _jax_rows(jax, x, k, g, y64, dx64, dk64, fwd, grad)
    if only == "tf":
        _tf_rows(x, k, g, y64, dx64, dk64, fwd, grad)
    if only is None:
        _pytensor_row(x, k, y64, fwd)
    if only:
        measure_rows(fwd + grad, repeats=args.repeats, cooldown=cd, budget=6.0)
        return (fwd[0] if fwd else None), (grad[0] if grad else None)
    _report(args, fwd, grad, cd)
    return None


def _symk_rows(x, k, g, y64, dx64, dk64, fwd: list[Row], grad: list[Row]) -> None:
    from symk import backend as K

    px, pk = K.placeholder((None, H, W, C), name="x"), K.placeholder((KH, KW, C, F), name="k")
    y = K.conv2d(px, pk)
    t, f_fwd = time_once(lambda: K.function([px, pk], [y], device="cpu"))
    t1, out = time_once(lambda: f_fwd([x, k])[0])
    fwd.append(Row("symk", None, "cpu", t + t1, _err(out, y64), fn=lambda: f_fwd([x, k])))
    # static batch for the gradient: with a None batch, sum's gradient takes its runtime shape
    # from the forward value (broadcast_like), which would add the forward conv to the timing
    sx, sg = K.placeholder((N, H, W, C), name="x"), K.placeholder(g.shape, name="g")
    grads = K.gradients(K.sum(K.conv2d(sx, pk) * sg), [sx, pk])
    t, f_grad = time_once(lambda: K.function([sx, pk, sg], grads, device="cpu"))
    t1, out = time_once(lambda: f_grad([x, k, g]))
    grad.append(Row("symk", None, "cpu", t + t1, _err(out, [dx64, dk64]),
                    fn=lambda: f_grad([x, k, g])))


def _jax_rows(jax, x, k, g, y64, dx64, dk64, fwd: list[Row], grad: list[Row]) -> None:
    import jax.numpy as jnp
    import numpy as np

    dn = ("NHWC", "HWIO", "NHWC")

    def conv(a, b):
        return jax.lax.conv_general_dilated(a, b, (1, 1), "VALID", dimension_numbers=dn)

    jf = jax.jit(conv)
    jg = jax.jit(jax.grad(lambda a, b, c: jnp.sum(conv(a, b) * c), argnums=(0, 1)))
    xj, kj, gj = jnp.asarray(x), jnp.asarray(k), jnp.asarray(g)
    t1, out = time_once(lambda: np.asarray(jf(xj, kj)))
    fwd.append(Row("jax.jit", None, "-", t1, _err(out, y64),
                   fn=lambda: jf(xj, kj).block_until_ready()))
    t1, out = time_once(lambda: [np.asarray(a) for a in jg(xj, kj, gj)])
    grad.append(Row("jax.jit", None, "-", t1, _err(out, [dx64, dk64]),
                    fn=lambda: [a.block_until_ready() for a in jg(xj, kj, gj)]))


def _tf_rows(x, k, g, y64, dx64, dk64, fwd: list[Row], grad: list[Row]) -> None:
    """TensorFlow's ``tf.nn.conv2d`` under ``tf.function`` (oneDNN on x86), and its
    gradient by a GradientTape (a ``--tf-python`` child only: TF has its own environment)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    xt, kt, gt = (tf.constant(a) for a in (x, k, g))
    f = tf.function(lambda a, b: tf.nn.conv2d(a, b, 1, "VALID"))

    @tf.function
    def df(a, b, c):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            s = tf.reduce_sum(tf.nn.conv2d(a, b, 1, "VALID") * c)
        return tape.gradient(s, [a, b])

    t1, out = time_once(lambda: f(xt, kt).numpy())
    fwd.append(Row("tf", None, "-", t1, _err(out, y64), fn=lambda: f(xt, kt)))
    t1, out = time_once(lambda: [a.numpy() for a in df(xt, kt, gt)])
    grad.append(Row("tf", None, "-", t1, _err(out, [dx64, dk64]), fn=lambda: df(xt, kt, gt)))


def _pytensor_row(x, k, y64, fwd: list[Row]) -> None:
    pt_conv = None
    for mod in ("pytensor.tensor.nnet", "pytensor.tensor.conv"):
        m = optional(mod)
        if m is not None and hasattr(m, "conv2d"):
            pt_conv = m.conv2d
    pyt = optional("pytensor")
    if pt_conv is not None:
        import pytensor
        import pytensor.tensor as pt

        tx, tk = pt.tensor4("x"), pt.tensor4("k")
        ty = pt_conv(tx.dimshuffle(0, 3, 1, 2), tk.dimshuffle(3, 2, 0, 1), filter_flip=False)
        pf = pytensor.function([tx, tk], ty.dimshuffle(0, 2, 3, 1))
        t1, out = time_once(lambda: pf(x, k))
        fwd.append(Row("pytensor", None, "-", t1, _err(out, y64), fn=lambda: pf(x, k)))
    else:
        ver = getattr(pyt, "__version__", None)
        fwd.append(Row("pytensor", None, "-", note=("not installed" if pyt is None else
                                                      f"{ver}: no conv2d (nnet removed)")))


def _report(args: argparse.Namespace, fwd: list[Row], grad: list[Row], cd: float) -> None:
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet)
    meter = LoadMeter()
    measure_rows(fwd + grad, repeats=args.repeats, cooldown=cd, budget=6.0)
    others = meter.others()
    macs = N * (H - KH + 1) * (W - KW + 1) * KH * KW * C * F
    for r in fwd:
        if r.timing:
            r.note = (r.note + f" {2 * macs / r.timing.median / 1e9:.0f} GFLOP/s").strip()
    for r in grad:
        if r.timing:
            r.note = (r.note + f" {4 * macs / r.timing.median / 1e9:.0f} GFLOP/s").strip()
    load = "?" if others is None else f"{others:.2f}"
    print_table(f"W7 conv2d forward NHWC 32x28x28x32 * 3x3x32x64 valid float32 (other load "
                f"{load} cores)", fwd, symk_row=fwd[0], markdown=args.markdown)
    print_table("W7g conv2d gradient w.r.t. input and kernel", grad, symk_row=grad[0],
                markdown=args.markdown)
    sym = fwd[0].timing.median * 1e3
    jrow = next((r for r in fwd if r.engine == "jax.jit" and r.timing), None)
    lines = []
    if jrow is not None:
        ratio = fwd[0].timing.median / jrow.timing.median
        lines.append(target_line("W7 faster than jax.lax.conv_general_dilated", ratio < 1.0,
                                 f"symk {sym:.2f} ms, jax {jrow.timing.median * 1e3:.2f} ms "
                                 f"in this run, symk/jax = {ratio:.2f}"))
    lines.append(target_line(f"W7 under the issue's JAX time ({JAX_W7_MS} ms)",
                             sym < JAX_W7_MS, f"symk {sym:.2f} ms"))
    print("\n" + "\n".join(lines))


def child(args: argparse.Namespace) -> None:
    """``--child ENGINE``: that engine's rows alone, calls back to back; one JSON line."""
    args.wait_quiet = 0
    rows = run(args, only=args.child, quiet=True)
    if rows is not None:
        fwd, grad = rows
        print(child_result(**{k: r for k, r in (("w7", fwd), ("w7g", grad)) if r is not None}))


def isolated(args: argparse.Namespace) -> None:
    """``--processes N``: every engine alone in fresh processes, rounds interleaved."""
    engines = ["symk", "numpy"] + (["jax.jit"] if optional("jax") is not None else []) + \
        (["tf"] if args.tf_python else [])
    got = isolated_rows(os.path.abspath(__file__), engines, args.processes,
                        ["--repeats", str(args.repeats)],
                        pythons={"tf": args.tf_python} if args.tf_python else None)
    notes = {e: ("cpu" if e == "symk" else "-", "") for e in engines}
    for key, title in (("w7", "W7 conv2d forward NHWC 32x28x28x32 * 3x3x32x64 valid float32"),
                       ("w7g", "W7g conv2d gradient w.r.t. input and kernel")):
        report_isolated(title, got, key, notes, [("jax.jit", 0.8), ("tf", 1.0)],
                        args.processes, args.markdown)

def main() -> None:
    ap = standard_arguments(__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=0, metavar="N",
                    help="N rounds of fresh processes, one per engine, each measuring its "
                         "engine alone with calls back to back (no cooldown)")
    ap.add_argument("--tf-python", default="", metavar="PATH",
                    help="with --processes: also TensorFlow's conv2d, run by this Python "
                         "(an environment with tensorflow, e.g. /tmp/k3tf/bin/python)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    maybe_unset_openblas(args.unset_openblas)
    if args.child:
        child(args)
        return
    print(machine_note())
    if args.processes:
        isolated(args)
        return
    run(args)


if __name__ == "__main__":
    main()
