"""Pooling ops in the canonical channels_last layout ``(batch, *spatial, channels)`` with one,
two or three spatial dims: ``pool`` (max or average), and the ops its gradients need
(``max_pool_grad``, ``max_pool_select``, ``avg_pool_grad``).

Windows follow TensorFlow: 'valid' keeps the windows that fit, ``out = ceil((n - k + 1) / s)``;
'same' gives ``out = ceil(n / s)`` with ``max((out - 1) * s + k - n, 0)`` padding split
``total // 2`` before and the rest after.  Padded positions never win a max and are not counted
by an average (the average is over the valid elements of each window).

Max-pool gradients go to the position of the window's maximum; on ties the first position in
row-major window order wins (as TensorFlow's CPU kernel does), so exactly one input element per
window receives the gradient.  The references loop over the (few) window offsets and work on
strided slices of the whole tensor, so each step is one vectorized numpy operation.
"""

from __future__ import annotations

import itertools

import numpy as np

from symk.errors import ArgumentError, DTypeError, ShapeError
from symk.graph.node import apply
from symk.graph.op import Op, register
from symk.graph.types import Type, is_float, is_int, shape_str

POOL_MODES = ("max", "avg")
PADDINGS = ("same", "valid")


def out_size(n: int | None, k: int, s: int, padding: str) -> int | None:
    """Output length of one spatial axis of length ``n`` (None when ``n`` is unknown)."""
    if n is None:
        return None
    if padding == "same":
        return -(-n // s)
    return -(-(n - k + 1) // s)


def geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(output length, padding before, padding after) of one spatial axis."""
    out = out_size(n, k, s, padding)
    if out is None or out < 1:
        raise ShapeError(f"pooling window {k} does not fit an axis of length {n} with "
                         f"padding '{padding}'")
    if padding == "valid":
        return out, 0, 0
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def check_pool_attrs(ndim: int, pool_size, strides, padding, mode=None) -> None:
    """Raise a clear ArgumentError for a bad pooling configuration of a rank-``ndim`` input."""
    nsp = ndim - 2
    for what, v in (("pool_size", pool_size), ("strides", strides)):
        if (not isinstance(v, tuple) or len(v) != nsp
                or not all(isinstance(d, int) and d >= 1 for d in v)):
            raise ArgumentError(f"{what} must be {nsp} positive ints for a rank-{ndim} input, "
                                f"got {v!r}")
    if padding not in PADDINGS:
        raise ArgumentError(f"Invalid padding: {padding!r} (expected 'same' or 'valid')")
    if mode is not None and mode not in POOL_MODES:
        raise ArgumentError(f"Invalid pool_mode: {mode!r} (expected 'max' or 'avg')")


def _check_input(x: Type, pool_size) -> None:
    if x.ndim != len(pool_size) + 2 or not 1 <= len(pool_size) <= 3:
        raise ShapeError(f"pooling with a {len(pool_size)}-d window needs an input of rank "
                         f"{len(pool_size) + 2} (batch, spatial..., channels), got "
                         f"{shape_str(x.shape)}")


def _pool_type(x: Type, pool_size, strides, padding) -> tuple:
    _check_input(x, pool_size)
    dims = []
    for n, k, s in zip(x.shape[1:-1], pool_size, strides):
        o = out_size(n, k, s, padding)
        if o is not None and o < 1:
            raise ShapeError(f"pooling window {tuple(pool_size)} does not fit the spatial dims "
                             f"{shape_str(x.shape[1:-1])} of {shape_str(x.shape)} with padding "
                             f"'{padding}'")
        dims.append(o)
    return (x.shape[0], *dims, x.shape[-1])


class _Windows:
    """The window layout of one pooling call on an array of shape ``shape``."""

    def __init__(self, shape: tuple[int, ...], pool_size, strides, padding) -> None:
        geo = [geometry(n, k, s, padding)
               for n, k, s in zip(shape[1:-1], pool_size, strides)]
        self.shape = shape
        self.out = tuple(g[0] for g in geo)
        self.pads = [(0, 0)] + [(g[1], g[2]) for g in geo] + [(0, 0)]
        self.padded = any(lo or hi for lo, hi in self.pads)
        self.strides = tuple(strides)
        #: one tuple of slices per window offset, in row-major window order
        self.slices = [
            (slice(None),) + tuple(slice(o, o + s * (n - 1) + 1, s)
                                   for o, s, n in zip(off, strides, self.out)) + (slice(None),)
            for off in itertools.product(*[range(k) for k in pool_size])]

    def pad(self, x: np.ndarray, value) -> np.ndarray:
        return np.pad(x, self.pads, constant_values=value) if self.padded else x

    def crop(self, xp: np.ndarray) -> np.ndarray:
        if not self.padded:
            return xp
        return xp[tuple(slice(lo, lo + n) for (lo, _), n in zip(self.pads, self.shape))]

    def counts(self, pool_size) -> np.ndarray:
        """Number of valid (unpadded) elements of each window, shaped (1, *out, 1)."""
        c = np.ones((1,) * len(self.shape), np.int64)
        for i, (k, s, n) in enumerate(zip(pool_size, self.strides, self.out)):
            lo = self.pads[i + 1][0]
            start = np.arange(n) * s - lo
            size = np.minimum(start + k, self.shape[i + 1]) - np.maximum(start, 0)
            c = c * size.reshape((1,) * (i + 1) + (n,) + (1,) * (len(self.shape) - i - 2))
        return c

    def argmax(self, x: np.ndarray) -> np.ndarray:
        """Index (row-major window offset) of each window's first maximum."""
        xp = self.pad(x, -np.inf)
        best = xp[self.slices[0]].copy()
        idx = np.zeros(best.shape, np.int8 if len(self.slices) < 128 else np.int32)
        upd = np.empty(best.shape, bool)
        step = np.empty(best.shape, idx.dtype)
        # branch-free updates (masked copies are several times slower on random data)
        for k, sl in enumerate(self.slices[1:], 1):
            v = xp[sl]
            np.greater(v, best, out=upd)  # strict: the first maximum stays
            np.maximum(best, v, out=best)
            np.subtract(k, idx, out=step)
            np.multiply(step, upd, out=step)
            idx += step
        return idx


def _select(a: np.ndarray, hit: np.ndarray, out: np.ndarray, finite: bool) -> None:
    """out = a where hit else 0; a product when ``a`` is finite (branch-free, much faster
    than a masked copy), a masked copy otherwise (so inf and nan do not leak as 0 * inf)."""
    if finite:
        np.multiply(a, hit, out=out)
    else:
        out[...] = 0
        np.copyto(out, a, where=hit)


def _low(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


@register
class Pool(Op):
    """pool(x): max or average over windows of the spatial dims of a channels_last tensor."""

    name = "pool"
    arity = 1
    attr_names = ("pool_size", "strides", "padding", "mode")
    extern = True

    def infer(self, inputs, pool_size, strides, padding, mode):
        (x,) = inputs
        _check_input(x, pool_size)
        check_pool_attrs(x.ndim, pool_size, strides, padding, mode)
        if mode == "avg" and not is_float(x.dtype):
            raise DTypeError(f"average pooling needs a float input, got {x.dtype}")
        if mode == "max" and not (is_float(x.dtype) or is_int(x.dtype)):
            raise DTypeError(f"max pooling needs a numeric input, got {x.dtype}")
        return Type(x.dtype, _pool_type(x, pool_size, strides, padding))

    def ref(self, x, pool_size, strides, padding, mode):
        win = _Windows(x.shape, pool_size, strides, padding)
        if mode == "max":
            xp = win.pad(x, _low(x.dtype))
            acc = xp[win.slices[0]].copy()
            for sl in win.slices[1:]:
                np.maximum(acc, xp[sl], out=acc)
            return acc
        acc_dtype = np.float32 if x.dtype == np.float16 else x.dtype
        xp = win.pad(x.astype(acc_dtype, copy=False), 0)
        acc = xp[win.slices[0]].copy()
        for sl in win.slices[1:]:
            np.add(acc, xp[sl], out=acc)
        acc /= win.counts(pool_size).astype(acc_dtype)
        return acc.astype(x.dtype, copy=False)

    def vjp(self, node, g):
        (x,) = node.inputs
        if node.attrs["mode"] == "max":
            return [apply("max_pool_grad", [x, g], **_window_attrs(node))]
        return [apply("avg_pool_grad", [g, x], **_window_attrs(node))]


def _window_attrs(node) -> dict:
    return {k: node.attrs[k] for k in ("pool_size", "strides", "padding")}


class _PoolGradBase(Op):
    arity = 2
    attr_names = ("pool_size", "strides", "padding")
    extern = True

    def _types(self, x: Type, y_like: Type, pool_size, strides, padding, what: str) -> None:
        _check_input(x, pool_size)
        check_pool_attrs(x.ndim, pool_size, strides, padding)
        want = _pool_type(x, pool_size, strides, padding)
        if y_like.ndim != len(want) or any(a is not None and b is not None and a != b
                                           for a, b in zip(y_like.shape, want)):
            raise ShapeError(f"{self.name}: {what} {shape_str(y_like.shape)} does not match the "
                             f"pooled shape {shape_str(want)}")


@register
class MaxPoolGrad(_PoolGradBase):
    """max_pool_grad(x, g): zeros like x with each g added at its window's (first) maximum."""

    name = "max_pool_grad"

    def infer(self, inputs, pool_size, strides, padding):
        x, g = inputs
        self._types(x, g, pool_size, strides, padding, "gradient")
        return Type(g.dtype, x.shape)

    def ref(self, x, g, pool_size, strides, padding):
        win = _Windows(x.shape, pool_size, strides, padding)
        idx = win.argmax(x)
        dxp = np.zeros([n + lo + hi for n, (lo, hi) in zip(x.shape, win.pads)], g.dtype)
        hit = np.empty(idx.shape, bool)
        part = np.empty(idx.shape, g.dtype)
        finite = bool(np.isfinite(g).all())
        for k, sl in enumerate(win.slices):
            np.equal(idx, k, out=hit)
            _select(g, hit, part, finite)
            view = dxp[sl]
            np.add(view, part, out=view)
        return win.crop(dxp)

    def vjp(self, node, h):
        x, _ = node.inputs
        # linear in g; piecewise constant in x (the argmax positions do not move)
        return [None, apply("max_pool_select", [x, h], **node.attrs)]


@register
class MaxPoolSelect(_PoolGradBase):
    """max_pool_select(x, h): h read at the position of each window's (first) maximum of x
    (shaped like the pooled x); the transpose of max_pool_grad."""

    name = "max_pool_select"

    def infer(self, inputs, pool_size, strides, padding):
        x, h = inputs
        if h.ndim != x.ndim or any(a is not None and b is not None and a != b
                                   for a, b in zip(x.shape, h.shape)):
            raise ShapeError(f"max_pool_select: {shape_str(h.shape)} does not match the input "
                             f"{shape_str(x.shape)}")
        _check_input(x, pool_size)
        check_pool_attrs(x.ndim, pool_size, strides, padding)
        return Type(h.dtype, _pool_type(x, pool_size, strides, padding))

    def ref(self, x, h, pool_size, strides, padding):
        win = _Windows(x.shape, pool_size, strides, padding)
        idx = win.argmax(x)
        hp = win.pad(h, 0)
        out = np.zeros(idx.shape, h.dtype)
        hit = np.empty(idx.shape, bool)
        part = np.empty(idx.shape, h.dtype)
        finite = bool(np.isfinite(h).all())
        for k, sl in enumerate(win.slices):
            np.equal(idx, k, out=hit)
            _select(hp[sl], hit, part, finite)
            out += part
        return out

    def vjp(self, node, g):
        x, _ = node.inputs
        return [None, apply("max_pool_grad", [x, g], **node.attrs)]


@register
class AvgPoolGrad(_PoolGradBase):
    """avg_pool_grad(g, x): each g divided by its window's count of valid elements and added
    over the window (the "unpool"); x only gives the shape."""

    name = "avg_pool_grad"

    def infer(self, inputs, pool_size, strides, padding):
        g, x = inputs
        self._types(x, g, pool_size, strides, padding, "gradient")
        return Type(g.dtype, x.shape)

    def ref(self, g, x, pool_size, strides, padding):
        win = _Windows(x.shape, pool_size, strides, padding)
        acc_dtype = np.float32 if g.dtype == np.float16 else g.dtype
        gs = g.astype(acc_dtype) / win.counts(pool_size).astype(acc_dtype)
        dxp = np.zeros([n + lo + hi for n, (lo, hi) in zip(x.shape, win.pads)], acc_dtype)
        for sl in win.slices:
            dxp[sl] += gs
        return win.crop(dxp).astype(g.dtype, copy=False)

    def vjp(self, node, h):
        # linear in g, with the average pooling as its transpose; x only gives the shape
        return [apply("pool", [h], mode="avg", **node.attrs), None]
