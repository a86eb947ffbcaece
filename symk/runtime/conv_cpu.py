"""The CPU fast path of the convolution ops (``conv``, ``conv_input_grad``,
``conv_kernel_grad``): the batch is split across symk's thread pool, each thread running
oneDNN's primitive on its images (``symk.runtime.onednn``, float32, when installed), or else the
numpy implementation of ``symk.graph.ops.conv_impl`` with single-threaded BLAS.

Why: the im2col copies are single-threaded numpy, and OpenBLAS's own threads synchronise on
every block GEMM (badly so on a loaded machine); one thread per core, each doing copy + GEMM
of its own images, keeps both cores busy all the time.  OpenBLAS is found among the loaded
libraries and limited to one thread for the duration of the call (``symk.runtime.threads``);
where it cannot be found, or the work is small, the numpy implementation runs as it is.  The
batch is split across the free cores only (``threads.kernel_threads``).  The input gradient
has several algorithms; each node times them on its first calls of a shape and keeps the
fastest (:class:`AlgoTuner`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.graph.node import Node
from symk.graph.ops import conv_impl as ci
from symk.runtime import onednn, threads
from symk.runtime.cpu_pool import num_threads, on_pool
from symk.runtime.externs import register_cpu_extern
from symk.runtime.tuning import AlgoTuner

#: below this many multiply-adds a convolution runs on the calling thread
PARALLEL_MIN_MACS = 1 << 22



def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _shares(n: int, macs: int, work: Callable[[int, int], object], blas: bool = True
            ) -> list[object]:
    """``work(i0, i1)``'s results on batch shares in parallel (with single-threaded BLAS when
    ``blas``), or on the whole batch on this thread when that is not worth it (or
    impossible)."""
    cap = num_threads()
    n_thr = min(threads.kernel_threads(cap), n)
    if n_thr < 2 or macs < PARALLEL_MIN_MACS or (blas and threads.blas_api() is None):
        return [work(0, n)]
    if not blas:
        return on_pool(cap, work, _split(n, n_thr))
    return threads.single(lambda: on_pool(cap, work, _split(n, n_thr)))


def _summed(parts: list) -> np.ndarray:
    """The sum of the shares' partial kernel gradients (into the first)."""
    total = parts[0]
    for p in parts[1:]:
        total += p
    return total


def _dnnl_plan(x_shape: Sequence[int], w_shape: Sequence[int], strides: Sequence[int],
               dilation: Sequence[int], pads: Sequence[ci.Pad], groups: int,
               spatial: Sequence[int] | None = None) -> tuple[tuple[Any, ...], Any] | None:
    """(geometry for ``onednn.run``, output spatial size), or None without oneDNN.  The high
    pads are the ones the output size implies (oneDNN wants them to agree exactly): negative
    where the last input rows are read by no window."""
    if not onednn.available():
        return None
    nsp = len(w_shape) - 2
    spatial = x_shape[1:-1] if spatial is None else spatial
    pads_, out_sp = ci.geometry(spatial, w_shape[:nsp], strides, dilation, pads)
    exact = tuple((lo, (o - 1) * s + (k - 1) * d + 1 - n - lo) for n, k, s, d, (lo, _), o
                  in zip(spatial, w_shape[:nsp], strides, dilation, pads_, out_sp))
    return (tuple(strides), tuple(dilation), exact, groups), out_sp


def _macs(batch: int, out_sp: Sequence[int], w_shape: Sequence[int]) -> int:
    return batch * math.prod(out_sp) * math.prod(w_shape)


@register_cpu_extern("conv", blas=True)
def conv_plan(node: Node) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    a = {k: node.attrs[k] for k in ("strides", "dilation", "pads", "groups")}
    dtype = np.dtype(node.dtype)

    def run(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        _, out_sp = ci.geometry(x.shape[1:-1], w.shape[:-2], a["strides"], a["dilation"],
                                a["pads"])
        y = np.empty((x.shape[0], *out_sp, w.shape[-1]), dtype)
        macs = _macs(x.shape[0], out_sp, w.shape)
        plan = _dnnl_plan(x.shape, w.shape, **a) if dtype == np.float32 else None
        if plan is not None:
            # oneDNN's kernels want dense arrays (a view is copied once)
            geom, xc, wc = plan[0], np.ascontiguousarray(x), np.ascontiguousarray(w)

            def dnnl_work(i0: int, i1: int) -> bool:
                return onednn.run("fwd", xc[i0:i1], wc, y[i0:i1], geom)

            if all(_shares(x.shape[0], macs, dnnl_work, blas=False)):
                return y

        def work(i0: int, i1: int) -> None:
            ci.conv_forward(x[i0:i1], w, **a, out=y[i0:i1])

        _shares(x.shape[0], macs, work)
        return y

    return run


#: signatures tuned per input-gradient node (beyond: the default algorithm)
MAX_TUNED = 16


@register_cpu_extern("conv_input_grad", blas=True)
def conv_input_grad_plan(node: Node) -> Callable[..., np.ndarray]:
    a = {k: node.attrs[k] for k in ("strides", "dilation", "pads", "groups")}
    static = node.attrs["in_spatial"]
    dtype = np.dtype(node.dtype)
    tuners: dict[tuple, AlgoTuner] = {}

    def run(g: np.ndarray, w: np.ndarray, shape_vec: np.ndarray | None = None) -> np.ndarray:
        spatial = static if shape_vec is None else tuple(int(s) for s in shape_vec[1:-1])
        dx = np.empty((g.shape[0], *spatial, w.shape[-2] * a["groups"]), dtype)
        if dtype == np.float32 and _dnnl_input_grad(g, w, dx, a):
            return dx
        key = (g.shape, w.shape, spatial)
        tuner = tuners.get(key)
        if tuner is None and len(tuners) < MAX_TUNED:
            nsp = w.ndim - 2
            pads, _ = ci.geometry(spatial, w.shape[:nsp], a["strides"], a["dilation"],
                                  a["pads"])
            tuner = tuners[key] = AlgoTuner(ci.input_grad_algos(
                w.shape[:nsp], w.shape[-2], w.shape[-1], a["strides"], a["dilation"], pads,
                a["groups"]))
        algo = tuner.pick() if tuner is not None else None

        def work(i0: int, i1: int) -> None:
            ci.conv_input_grad(g[i0:i1], w, spatial, **a, out=dx[i0:i1], algo=algo)

        t0 = time.perf_counter()
        _shares(g.shape[0], _macs(g.shape[0], g.shape[1:-1], w.shape), work)
        if tuner is not None and algo is not None:
            tuner.record(algo, time.perf_counter() - t0)
        return dx

    return run


@register_cpu_extern("conv_kernel_grad", blas=True)
def conv_kernel_grad_plan(node: Node) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    a = {k: node.attrs[k] for k in ("strides", "dilation", "pads", "groups")}
    kshape = node.attrs["kernel_shape"]

    def run(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        if np.dtype(node.dtype) == np.float32:
            dw = _dnnl_kernel_grad(x, g, kshape, a)
            if dw is not None:
                return dw

        def work(i0: int, i1: int) -> np.ndarray:
            return ci.conv_kernel_grad(x[i0:i1], g[i0:i1], kshape[:-2], **a)

        return _summed(_shares(x.shape[0], _macs(x.shape[0], g.shape[1:-1], kshape), work))

    return run


def _dnnl_input_grad(g: np.ndarray, w: np.ndarray, dx: np.ndarray, a: dict) -> bool:
    """Write the input gradient ``dx`` with oneDNN (batch shares on the pool); False when it
    cannot (nothing written)."""
    plan = _dnnl_plan(dx.shape, w.shape, **a)
    if plan is None or tuple(g.shape[1:-1]) != tuple(plan[1]):
        return False
    geom, gc, wc = plan[0], np.ascontiguousarray(g), np.ascontiguousarray(w)

    def work(i0: int, i1: int) -> bool:
        return onednn.run("bwd_data", dx[i0:i1], wc, gc[i0:i1], geom)

    return all(_shares(g.shape[0], _macs(g.shape[0], g.shape[1:-1], w.shape), work, blas=False))


def _dnnl_kernel_grad(x: np.ndarray, g: np.ndarray, kshape: Sequence[int], a: dict
                      ) -> np.ndarray | None:
    """The kernel gradient by oneDNN (a partial sum per batch share), or None when it cannot."""
    plan = _dnnl_plan(x.shape, kshape, **a)
    if plan is None or tuple(g.shape[1:-1]) != tuple(plan[1]):
        return None
    geom, xc, gc = plan[0], np.ascontiguousarray(x), np.ascontiguousarray(g)

    def work(i0: int, i1: int) -> np.ndarray | None:
        dw = np.empty(kshape, np.float32)
        return dw if onednn.run("bwd_weights", xc[i0:i1], dw, gc[i0:i1], geom) else None

    parts = _shares(x.shape[0], _macs(x.shape[0], g.shape[1:-1], kshape), work, blas=False)
    return None if any(p is None for p in parts) else _summed(parts)
