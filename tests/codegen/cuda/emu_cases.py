"""Graphs whose CUDA kernels the emulator runs, each with numpy written here (or in
``tests/np_ref.py``, or the hand-written ``tests/codegen/cases.py``) as the expected values:
the elementwise op suite over float32/float64/int32/bool, broadcasting, ``None`` dims,
reductions of every kind (full, row, column, partial axes, argmax/argmin, cumsum/cumprod in
both directions, softmax/log_softmax/logsumexp multi-pass kernels) and sizes that need several
tiles per row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from symk import backend as K
from tests import np_ref
from tests.codegen.cases import CASES, Built


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _data(shape: tuple, dtype: str, seed: int, lo: float = -3.0, hi: float = 3.0) -> np.ndarray:
    r = _rng(seed)
    if dtype == "bool":
        return r.random(shape) < 0.5
    if dtype.startswith("int"):
        return r.integers(-5, 6, shape).astype(dtype)
    return r.uniform(lo, hi, shape).astype(dtype)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def _softplus(x):
    return np.logaddexp(0.0, x.astype(np.float64)).astype(x.dtype)


#: name -> (K function, numpy function, dtypes, (lo, hi) input range)
UNARY: dict[str, tuple[Callable, Callable, tuple, tuple]] = {
    "exp": (K.exp, np.exp, ("float32", "float64"), (-5, 5)),
    "log": (K.log, np.log, ("float32", "float64"), (0.01, 5)),
    "tanh": (K.tanh, np.tanh, ("float32", "float64"), (-5, 5)),
    "sigmoid": (K.sigmoid, _sigmoid, ("float32", "float64"), (-30, 30)),
    "softplus": (K.softplus, _softplus, ("float32", "float64"), (-30, 30)),
    "sin": (K.sin, np.sin, ("float32", "float64"), (-6, 6)),
    "cos": (K.cos, np.cos, ("float32", "float64"), (-6, 6)),
    "sqrt": (K.sqrt, np_ref.sqrt, ("float32", "float64"), (-1, 9)),
    "abs": (K.abs, np_ref.abs, ("float32", "float64", "int32"), (-3, 3)),
    "square": (K.square, np_ref.square, ("float32", "float64", "int32"), (-3, 3)),
    "sign": (K.sign, np_ref.sign, ("float32", "int32"), (-3, 3)),
    "round": (K.round, np_ref.round, ("float32", "float64"), (-4, 4)),
    "relu": (K.relu, np_ref.relu, ("float32", "float64"), (-3, 3)),
    "elu": (K.elu, np_ref.elu, ("float32",), (-3, 3)),
    "neg": (lambda x: -x, np.negative, ("float32", "int32"), (-3, 3)),
    "logical_not": (lambda x: K.equal(x, False), np.logical_not, ("bool",), (0, 1)),
}

#: name -> (K function, numpy function, dtypes)
BINARY: dict[str, tuple[Callable, Callable, tuple]] = {
    "add": (lambda a, b: a + b, np.add, ("float32", "float64", "int32")),
    "sub": (lambda a, b: a - b, np.subtract, ("float32", "int32")),
    "mul": (lambda a, b: a * b, np.multiply, ("float32", "float64", "int32")),
    "div": (lambda a, b: a / b, np.true_divide, ("float32", "float64")),
    "maximum": (K.maximum, np.maximum, ("float32", "float64", "int32")),
    "minimum": (K.minimum, np.minimum, ("float32", "int32")),
    "pow": (lambda a, b: K.pow(K.abs(a) + 0.5, b),
            lambda a, b: np.power(np.abs(a) + a.dtype.type(0.5), b), ("float32", "float64")),
    "equal": (K.equal, np.equal, ("float32", "int32", "bool")),
    "not_equal": (K.not_equal, np.not_equal, ("int32", "bool")),
    "greater": (K.greater, np.greater, ("float32", "int32")),
    "less_equal": (K.less_equal, np.less_equal, ("float32", "float64")),
}


def _unary_case(name: str, dt: str) -> Callable[[], Built]:
    kfn, nfn, _, (lo, hi) = UNARY[name]

    def build() -> Built:
        x = K.placeholder((None, 7), dtype=dt)
        return Built([x], [kfn(x)], [[_data((3, 7), dt, 1, lo, hi)],
                                     [_data((40, 7), dt, 2, lo, hi)]],
                     lambda x: [np.asarray(nfn(x))])
    return build


def _binary_case(name: str, dt: str) -> Callable[[], Built]:
    kfn, nfn, _ = BINARY[name]

    def build() -> Built:
        a = K.placeholder((5, 6), dtype=dt)
        b = K.placeholder((6,), dtype=dt)
        return Built([a, b], [kfn(a, b)], [[_data((5, 6), dt, 3), _data((6,), dt, 4)]],
                     lambda a, b: [np.asarray(nfn(a, b))])
    return build


def _reductions() -> Built:
    x = K.placeholder((None, 6, 37))
    specs = [(K.sum, np.sum, 2), (K.sum, np.sum, 0), (K.sum, np.sum, 1), (K.sum, np.sum, None),
             (K.max, np.max, [0, 2]), (K.min, np.min, 1), (K.prod, np.prod, 1),
             (K.mean, np.mean, [1, 2]), (K.mean, np.mean, None), (K.argmax, np.argmax, 2),
             (K.argmin, np.argmin, 0), (K.argmax, np.argmax, 1)]
    outs = [f(x, axis=a) for f, _, a in specs]

    def expect(x):
        res = []
        for _, g, a in specs:
            v = g(x, axis=tuple(a) if isinstance(a, list) else a)
            res.append(np.asarray(v if g not in (np.argmax, np.argmin) else v.astype(np.int64)))
        return res
    return Built([x], outs, [[_data((2, 6, 37), "float32", 5)],
                             [_data((9, 6, 37), "float32", 6)]], expect)


def _big_rows() -> Built:
    """Rows longer than a block (several strides per thread) and a full reduction."""
    x = K.placeholder((3, 3000))
    y = K.placeholder((5000,))
    outs = [K.sum(x, axis=1), K.max(x, axis=1), K.argmax(x, axis=1), K.sum(y), K.softmax(x),
            K.cumsum(K.abs(y)), K.logsumexp(x, axis=1), K.mean(y * y)]

    def expect(x, y):
        e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
        lse = np.log(np.exp(x.astype(np.float64)).sum(1)).astype(np.float32)
        return [x.sum(1), x.max(1), x.argmax(1).astype(np.int64), np.asarray(y.sum()),
                (e / e.sum(1, keepdims=True)).astype(np.float32), np.cumsum(np.abs(y)), lse,
                np.asarray((y * y).mean())]
    return Built([x, y], outs, [[_data((3, 3000), "float32", 7), _data((5000,), "float32", 8)]],
                 expect)


def _scans() -> Built:
    x = K.placeholder((None, 45))
    i = K.placeholder((4, 50), dtype="int32")
    outs = [K.cumsum(x, axis=1), K.cumsum(x, axis=0), K.cumprod(x * 0.1 + 1.0, axis=1),
            K.cumsum(i, axis=1), K.exp(K.cumsum(x, axis=1)) * 2.0]

    def expect(x, i):
        return [np.cumsum(x, 1), np.cumsum(x, 0),
                np.cumprod(x * np.float32(0.1) + np.float32(1), axis=1),
                np.cumsum(i, 1, dtype=np.int32),
                np.exp(np.cumsum(x, 1)) * np.float32(2)]
    return Built([x, i], outs, [[_data((3, 45), "float32", 9), _data((4, 50), "int32", 10)],
                                [_data((70, 45), "float32", 11), _data((4, 50), "int32", 12)]],
                 expect)


def _rank0() -> Built:
    """Reductions of a rank-0 value: one row whose update is not in a loop (every thread of the
    block must not add its own copy)."""
    x = K.placeholder(())
    i = K.placeholder((), dtype="int32")
    outs = [K.prod(x), K.sum(x * 2.0), K.max(x), K.mean(x), K.sum(i), K.any(K.greater(x, 0.0)),
            K.logsumexp(x)]

    def expect(x, i):
        return [np.asarray(x), np.asarray(x * np.float32(2)), np.asarray(x), np.asarray(x),
                np.asarray(i), np.asarray(x > 0), np.asarray(x)]
    return Built([x, i], outs, [[np.asarray(1.5, np.float32), np.asarray(3, np.int32)],
                                [np.asarray(-0.75, np.float32), np.asarray(-2, np.int32)]],
                 expect)


def _softmaxes() -> Built:
    x = K.placeholder((None, 5, 33), dtype="float64")
    outs = [K.softmax(x), K.softmax(x, axis=1), K.logsumexp(x, axis=1),
            K.categorical_crossentropy(K.softmax(x), K.softmax(x * 2.0))]

    def expect(x):
        def sm(v, ax):
            e = np.exp(v - v.max(ax, keepdims=True))
            return e / e.sum(ax, keepdims=True)
        m = x.max(1, keepdims=True)
        return [sm(x, -1), sm(x, 1), (np.log(np.exp(x - m).sum(1, keepdims=True)) + m)[:, 0],
                np_ref.categorical_crossentropy(sm(x, -1), sm(x * 2.0, -1))]
    return Built([x], outs, [[_data((2, 5, 33), "float64", 13)],
                             [_data((4, 5, 33), "float64", 14)]], expect)


def _int_bool() -> Built:
    a = K.placeholder((None, 9), dtype="int32")
    b = K.placeholder((None, 9), dtype="bool")
    outs = [K.sum(a, axis=1), K.max(a, axis=0), K.any(b, axis=1), K.all(b, axis=0),
            K.cast(b, "int32") * a, K.sum(K.cast(b, "float32"))]

    def expect(a, b):
        return [a.sum(1, dtype=np.int32), a.max(0), b.any(1), b.all(0), b.astype(np.int32) * a,
                np.asarray(b.astype(np.float32).sum())]
    return Built([a, b], outs, [[_data((4, 9), "int32", 15), _data((4, 9), "bool", 16)],
                                [_data((33, 9), "int32", 17), _data((33, 9), "bool", 18)]],
                 expect)


def all_cases() -> dict[str, Callable[[], Built]]:
    out: dict[str, Callable[[], Built]] = dict(CASES)
    for name, (_, _, dts, _) in UNARY.items():
        for dt in dts:
            out[f"unary_{name}_{dt}"] = _unary_case(name, dt)
    for name, (_, _, dts) in BINARY.items():
        for dt in dts:
            out[f"binary_{name}_{dt}"] = _binary_case(name, dt)
    out.update({"reductions": _reductions, "big_rows": _big_rows, "scans": _scans,
                "softmaxes": _softmaxes, "int_bool": _int_bool, "rank0": _rank0})
    return out
