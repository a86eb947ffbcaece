"""Hand-written graphs that exercise the kernel lowering and the LLVM renderer: broadcasting of
every kind, ``None`` dims fed with two sizes, reductions over every axis combination,
argmax/argmin with ties and NaN, any/all, logsumexp with infinite rows, softmax on a non-last
axis, integer/bool/float64 kernels, integer floor division and modulo with negative and zero
divisors, and casts.  Each case builds placeholders, outputs and one or more lists of feed
values (several when a ``None`` dim is fed with different sizes), plus the expected values
computed with numpy written here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symk import backend as K
from symk.graph.node import apply
from symk.graph.tensor import Tensor

NAN, INF = np.nan, np.inf


@dataclass
class Built:
    inputs: list[Tensor]
    outputs: list[Tensor]
    #: one list of input values per run
    feeds: list[list[np.ndarray]]
    #: numpy written here: feeds -> expected outputs (None: only device/kernel comparisons)
    expect: Callable[..., list[np.ndarray]] | None = None


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (_rng(seed).normal(size=shape) * scale).astype(np.float32)


def broadcast_scalar() -> Built:
    x = K.placeholder((3, 4))
    s = K.placeholder(())
    outs = [x + s, s * x - 2.5, K.maximum(x, s), x * 2.5, s / 4.0 + s]
    return Built([x, s], outs, [[_f32(3, 4), np.float32(0.75)]],
                 lambda x, s: [x + s, s * x - np.float32(2.5), np.maximum(x, s),
                               x * np.float32(2.5), s / np.float32(4.0) + s])


def broadcast_row_col() -> Built:
    a = K.placeholder((3, 1))
    b = K.placeholder((1, 4))
    v = K.placeholder((4,))
    c = K.placeholder((2, 1, 4))
    d = K.placeholder((1, 1))
    outs = [a * b, a + b * 2.0, K.minimum(a, b), b + v, c - a, (a + v) * c, d + a * b]
    return Built([a, b, v, c, d], outs,
                 [[_f32(3, 1, seed=1), _f32(1, 4, seed=2), _f32(4, seed=3),
                   _f32(2, 1, 4, seed=4), _f32(1, 1, seed=5)]],
                 lambda a, b, v, c, d: [a * b, a + b * np.float32(2), np.minimum(a, b), b + v,
                                        c - a, (a + v) * c, d + a * b])


def none_dims() -> Built:
    x = K.placeholder((None, 4))
    v = K.placeholder((4,))
    col = K.placeholder((None, 1))
    y = K.placeholder((None, None))
    outs = [x + v, x * x, col * v, col - x, K.exp(y) * 0.5, K.sum(y, axis=1),
            K.max(x, axis=0)]

    def feeds(n: int, m: int, seed: int) -> list[np.ndarray]:
        return [_f32(n, 4, seed=seed), _f32(4, seed=seed + 1), _f32(n, 1, seed=seed + 2),
                _f32(n, m, seed=seed + 3)]
    return Built([x, v, col, y], outs, [feeds(3, 2, 10), feeds(7, 5, 20)],
                 lambda x, v, col, y: [x + v, x * x, col * v, col - x,
                                       np.exp(y) * np.float32(0.5), y.sum(axis=1),
                                       x.max(axis=0)])


def none_outer_product() -> Built:
    """Each ``None`` dim of the domain comes from a different input, broadcast against
    static 1s of the others."""
    a = K.placeholder((None, 1))
    b = K.placeholder((1, None))
    c = K.placeholder((None, None, 1))
    outs = [a * b, K.sum(a - b, axis=0), K.max(a + b, axis=1, keepdims=True), c + b,
            K.sum(c * b, axis=[0, 2])]

    def feeds(n: int, m: int, k: int) -> list[np.ndarray]:
        return [_f32(n, 1, seed=n), _f32(1, m, seed=m), _f32(k, n, 1, seed=k)]
    return Built([a, b, c], outs, [feeds(3, 4, 2), feeds(1, 6, 3)],
                 lambda a, b, c: [a * b, (a - b).sum(0), (a + b).max(1, keepdims=True), c + b,
                                  (c * b).sum(axis=(0, 2))])


_AXES = [0, 1, 2, [0, 2], [1, 2], None]


def reduce_axes() -> Built:
    x = K.placeholder((3, 4, 5))
    outs = []
    exp = []
    for ax in _AXES:
        for keep in (False, True):
            outs.append(K.sum(x, axis=ax, keepdims=keep))
            npax = tuple(ax) if isinstance(ax, list) else ax
            exp.append((np.sum, npax, keep))
    for fn, npfn, ax in [(K.max, np.max, 1), (K.min, np.min, [0, 1]), (K.prod, np.prod, 2),
                         (K.mean, np.mean, 0), (K.mean, np.mean, None), (K.max, np.max, None),
                         (K.mean, np.mean, [0, 2])]:
        for keep in (False, True):
            outs.append(fn(x, axis=ax, keepdims=keep))
            exp.append((npfn, tuple(ax) if isinstance(ax, list) else ax, keep))

    def expect(x):
        return [np.asarray(f(x, axis=a, keepdims=k)) for f, a, k in exp]
    return Built([x], outs, [[_f32(3, 4, 5, seed=7)]], expect)


def reduce_none_dims() -> Built:
    x = K.placeholder((None, 4, 5))
    outs = [K.sum(x, axis=0), K.sum(x, axis=1, keepdims=True), K.mean(x), K.max(x, axis=[0, 2]),
            K.sum(K.exp(x) * 2.0, axis=2) + 1.0]
    return Built([x], outs, [[_f32(2, 4, 5, seed=8)], [_f32(6, 4, 5, seed=9)]],
                 lambda x: [x.sum(0), x.sum(1, keepdims=True), np.asarray(x.mean()),
                            x.max(axis=(0, 2)),
                            (np.exp(x) * np.float32(2)).sum(axis=2) + np.float32(1)])


def argmax_ties_nan() -> Built:
    x = K.placeholder((4, 5))
    v = np.array([[1, 3, 3, 0, 3],
                  [NAN, 2, NAN, 5, 5],
                  [-INF, -INF, -INF, -INF, -INF],
                  [2, NAN, 7, 7, -1]], np.float32)
    i = K.placeholder((3, 4), dtype="int32")
    iv = np.array([[1, 5, 5, -2], [0, 0, 0, 0], [-7, 3, -7, 3]], np.int32)
    outs = [K.argmax(x, axis=1), K.argmax(x, axis=0), K.argmin(x, axis=1), K.argmin(x, axis=0),
            K.argmax(i, axis=1), K.argmin(i, axis=1), K.argmax(i, axis=0),
            K.argmax(-x, axis=-1)]
    return Built([x, i], outs, [[v, iv]],
                 lambda x, i: [x.argmax(1), x.argmax(0), x.argmin(1), x.argmin(0), i.argmax(1),
                               i.argmin(1), i.argmax(0), (-x).argmax(-1)])


def any_all() -> Built:
    x = K.placeholder((3, 4))
    v = np.array([[0, 0, 0, 0], [1, 0, -2, 0], [3, 4, 5, NAN]], np.float32)
    b = K.greater(x, 0.5)
    outs = [K.any(b, axis=1), K.all(b, axis=1), K.any(b, axis=0, keepdims=True), K.all(b),
            K.any(x, axis=1), K.all(x, axis=0), K.any(b)]
    return Built([x], outs, [[v]],
                 lambda x: [(x > .5).any(1), (x > .5).all(1), (x > .5).any(0, keepdims=True),
                            np.asarray((x > .5).all()), (x != 0).any(1), (x != 0).all(0),
                            np.asarray((x > .5).any())])


def _np_logsumexp(x: np.ndarray, axis, keepdims: bool = False) -> np.ndarray:
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        m = np.max(x64, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        r = np.log(np.sum(np.exp(x64 - m), axis=axis, keepdims=True)) + m
        r = r if keepdims else np.squeeze(r, axis=axis)
    return r.astype(x.dtype)


def logsumexp_inf_rows() -> Built:
    x = K.placeholder((5, 4))
    v = np.array([[-INF] * 4, [1, 2, 3, 4], [INF, 0, 1, 2], [NAN, 0, 1, 2], [-INF, 0, -INF, 90]],
                 np.float32)
    outs = [K.logsumexp(x, axis=1), K.logsumexp(x, axis=1, keepdims=True),
            K.logsumexp(x[:3] * 1.0, axis=0)]
    return Built([x], outs, [[v]],
                 lambda x: [_np_logsumexp(x, 1), _np_logsumexp(x, 1, True),
                            _np_logsumexp(x[:3], 0)])


def _np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def _np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x64 = x.astype(np.float64)
    z = x64 - x64.max(axis=axis, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=axis, keepdims=True))).astype(x.dtype)


def softmax_axes() -> Built:
    x = K.placeholder((3, 4, 5))
    outs = [K.softmax(x, axis=0), K.softmax(x, axis=1), K.softmax(x, axis=-1),
            Tensor(apply("log_softmax", [x.node], axis=0)),
            Tensor(apply("log_softmax", [x.node], axis=2)),
            K.softmax(x * 2.0 + 1.0, axis=1) * 3.0]
    return Built([x], outs, [[_f32(3, 4, 5, seed=11, scale=3.0)]],
                 lambda x: [_np_softmax(x, 0), _np_softmax(x, 1), _np_softmax(x, 2),
                            _np_log_softmax(x, 0), _np_log_softmax(x, 2),
                            _np_softmax(x * np.float32(2) + np.float32(1), 1) * np.float32(3)])


def int_kernels() -> Built:
    a = K.placeholder((6,), dtype="int32")
    b = K.placeholder((6,), dtype="int32")
    c = K.placeholder((6,), dtype="int64")
    av = np.array([7, -7, 0, 2**31 - 1, -(2**31), 5], np.int32)
    bv = np.array([2, 3, -4, 1, -1, -5], np.int32)
    cv = np.array([2**40, -3, 0, 9, -(2**62), 1], np.int64)
    outs = [a + b, a - b, a * b, K.maximum(a, b), K.minimum(a, b), K.abs(b), -b, K.sign(a),
            c * 3 + 1, K.abs(c), K.sum(c), K.max(a), K.sum(b, keepdims=True),
            K.cast(a, "int64") * c, K.equal(a, b), K.greater_equal(c, 0)]
    return Built([a, b, c], outs, [[av, bv, cv]],
                 lambda a, b, c: [a + b, a - b, a * b, np.maximum(a, b), np.minimum(a, b),
                                  np.abs(b), -b, np.sign(a), c * 3 + 1, np.abs(c),
                                  np.asarray(c.sum()), np.asarray(a.max()),
                                  b.sum(keepdims=True, dtype=np.int32),
                                  a.astype(np.int64) * c, a == b, c >= 0])


def int_division() -> Built:
    a = K.placeholder((10,), dtype="int32")
    b = K.placeholder((10,), dtype="int32")
    c = K.placeholder((10,), dtype="int64")
    d = K.placeholder((10,), dtype="int64")
    av = np.array([7, -7, 7, -7, 0, 5, -5, -(2**31), 9, -1], np.int32)
    bv = np.array([2, 2, -2, -2, 3, 0, 0, -1, 3, 4], np.int32)
    cv = av.astype(np.int64) * 1000003
    cv[7] = -(2**63)
    dv = bv.astype(np.int64)
    outs = [a // b, a % b, c // d, c % d, a // 3, a % -3, K.cast(a // b, "float32")]

    def expect(a, b, c, d):
        with np.errstate(all="ignore"):
            return [a // b, a % b, c // d, c % d, a // np.int32(3), a % np.int32(-3),
                    (a // b).astype(np.float32)]
    return Built([a, b, c, d], outs, [[av, bv, cv, dv]], expect)


def float_division() -> Built:
    """numpy's float floor division and modulo: 1 // 0.1 == 9 (not floor(1 / 0.1) == 10),
    inf // 2 is NaN, division by zero gives ±inf/NaN, zero remainders take the divisor's
    sign."""
    x = K.placeholder((12,), dtype="float64")
    y = K.placeholder((12,), dtype="float64")
    u = K.placeholder((12,))
    v = K.placeholder((12,))
    xv = np.array([7.5, -7.5, 7.5, -7.5, 1.0, -1.0, 0.0, INF, 1.0, -4.0, 4.0, NAN])
    yv = np.array([2.0, 2.0, -2.0, -2.0, 0.0, 0.0, 0.0, 2.0, 0.1, 2.0, -2.0, 1.0])
    outs = [x / y, x // y, x % y, u // v, u % v]
    return Built([x, y, u, v], outs, [[xv, yv, xv.astype(np.float32), yv.astype(np.float32)]],
                 lambda x, y, u, v: [x / y, x // y, x % y, u // v, u % v])


def bool_float64() -> Built:
    p = K.placeholder((5,), dtype="bool")
    q = K.placeholder((5,), dtype="bool")
    x = K.placeholder((5,), dtype="float64")
    pv = np.array([True, False, True, False, True])
    qv = np.array([True, True, False, False, False])
    xv = np.array([1.5, -2.25, 0.0, 1e300, -1e-300])
    outs = [K.cast(p, "float64") * x, K.equal(p, q), K.not_equal(p, q),
            K.switch(p, x, -x), K.cast(K.cast(q, "int32") + K.cast(p, "int32"), "float64"),
            x * x + 1.0, K.sqrt(K.abs(x)), K.any(p), K.all(q),
            K.cast(K.greater(x, 0.0), "float32")]
    return Built([p, q, x], outs, [[pv, qv, xv]],
                 lambda p, q, x: [p * x, p == q, p != q, np.where(p, x, -x),
                                  (q.astype(np.int32) + p).astype(np.float64), x * x + 1.0,
                                  np.sqrt(np.abs(x)), np.asarray(p.any()), np.asarray(q.all()),
                                  (x > 0).astype(np.float32)])


def casts() -> Built:
    x = K.placeholder((9,))
    i = K.placeholder((4,), dtype="int64")
    xv = np.array([2.7, -2.7, 0.5, -0.5, 0.0, -0.0, 1e6, NAN, 3e9], np.float32)
    iv = np.array([2**33 + 5, -1, 0, 7], np.int64)
    outs = [K.cast(x, "int32"), K.cast(x, "int64"), K.cast(x, "bool"), K.cast(x, "float64"),
            K.cast(K.cast(x, "bool"), "float32"), K.cast(i, "int32"), K.cast(i, "float32"),
            K.cast(i, "bool"), K.round(x), K.cast(K.cast(x, "float64") * 1e300, "float32")]

    def expect(x, i):
        with np.errstate(all="ignore"):
            return [x.astype(np.int32), x.astype(np.int64), x.astype(bool),
                    x.astype(np.float64), x.astype(bool).astype(np.float32),
                    i.astype(np.int32), i.astype(np.float32), i.astype(bool), np.round(x),
                    (x.astype(np.float64) * 1e300).astype(np.float32)]
    return Built([x, i], outs, [[xv, iv]], expect)


def fused_prologue_epilogue() -> Built:
    x = K.placeholder((None, 6))
    y = K.placeholder((6,))
    s = K.sum(K.exp(x) * y, axis=1, keepdims=True)
    outs = [s / K.max(x, axis=1, keepdims=True) - 1.0, K.tanh(x) + s, K.argmax(x * y, axis=1),
            K.mean(K.square(x - K.mean(x, axis=1, keepdims=True)), axis=1)]

    def expect(x, y):
        s = (np.exp(x) * y).sum(axis=1, keepdims=True)
        m = x - x.mean(axis=1, keepdims=True)
        return [s / x.max(axis=1, keepdims=True) - np.float32(1), np.tanh(x) + s,
                (x * y).argmax(1), (m * m).mean(axis=1)]
    return Built([x, y], outs, [[_f32(4, 6, seed=12), _f32(6, seed=13)],
                                [_f32(9, 6, seed=14), _f32(6, seed=15)]], expect)


def specials_minmax() -> Built:
    x = K.placeholder((8,))
    y = K.placeholder((8,))
    xv = np.array([NAN, 1.0, NAN, -INF, INF, 0.0, -0.0, 3.0], np.float32)
    yv = np.array([1.0, NAN, NAN, 5.0, -5.0, -0.0, 0.0, INF], np.float32)
    m = K.placeholder((3, 4))
    mv = np.array([[1, NAN, 3, 0], [-INF, -INF, -INF, -INF], [INF, 2, 1, 0]], np.float32)
    outs = [K.maximum(x, y), K.minimum(x, y), K.max(m, axis=1), K.min(m, axis=1),
            K.max(m, axis=0), K.min(m, axis=0), K.relu(x), K.abs(x), x * 0.0, y / x,
            K.clip(x, -1.0, 1.0), K.sign(x)]

    def expect(x, y, m):
        with np.errstate(all="ignore"):
            return [np.maximum(x, y), np.minimum(x, y), m.max(1), m.min(1), m.max(0), m.min(0),
                    np.maximum(x, np.float32(0)), np.abs(x), x * np.float32(0), y / x,
                    np.clip(x, np.float32(-1), np.float32(1)), np.sign(x)]
    return Built([x, y, m], outs, [[xv, yv, mv]], expect)


def empty_batch() -> Built:
    """A ``None`` dim fed with 0: empty parallel loops, and reductions over an empty axis give
    the identity (0 for sums, NaN for the mean of nothing)."""
    x = K.placeholder((None, 5))
    outs = [K.exp(x) + 1.0, K.sum(x, axis=1), K.sum(x, axis=0), K.mean(x, axis=0),
            K.softmax(x), K.prod(x, axis=0), K.any(K.greater(x, 0.0), axis=0)]

    def expect(x):
        e = np.exp(x - x.max(axis=1, keepdims=True)) if len(x) else x
        with np.errstate(all="ignore"):
            mean = (x.sum(0) / np.float32(len(x))).astype(np.float32)
        return [np.exp(x) + np.float32(1), x.sum(1), x.sum(0), mean,
                e / e.sum(1, keepdims=True), x.prod(0), (x > 0).any(0)]
    return Built([x], outs, [[np.zeros((0, 5), np.float32)], [_f32(3, 5, seed=16)]], expect)


CASES: dict[str, Callable[[], Built]] = {f.__name__: f for f in [
    broadcast_scalar, broadcast_row_col, none_dims, none_outer_product, reduce_axes,
    reduce_none_dims, argmax_ties_nan, any_all, logsumexp_inf_rows, softmax_axes, int_kernels,
    int_division, float_division, bool_float64, casts, fused_prologue_epilogue,
    specials_minmax, empty_batch]}
