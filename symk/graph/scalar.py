"""The scalar expression language of elementwise ops, and its numpy evaluation.

Each elementwise op writes its math once, as a function of a *scalar builder* ``b`` using only
the primitives listed in ``PRIMITIVES``.  The numpy builder below evaluates such an expression on
whole arrays (this is the op's reference implementation); the kernel IR builder in codegen
implements the same primitives, so every renderer computes the same formula.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

#: every primitive a scalar expression may use (a renderer must implement each one)
PRIMITIVES = (
    "const", "cast", "add", "sub", "mul", "div", "neg", "abs", "exp", "log", "sqrt", "sin",
    "cos", "tanh", "log1p", "expm1", "erf", "floor", "ceil", "rint", "sign", "pow",
    "maximum", "minimum", "where", "lt", "le", "gt", "ge", "eq", "ne", "logical_and",
    "logical_or", "logical_not", "floordiv", "mod", "bitxor", "shr",
)
# ``bitxor`` and ``shr`` (logical right shift) take unsigned integer operands of one dtype
# (the counter-based random generator, ``symk.graph.philox``, is their user)


class ScalarBuilder(Protocol):
    def dtype(self, x: Any) -> str: ...
    def const(self, value: float | int | bool, dtype: str) -> Any: ...
    def cast(self, x: Any, dtype: str) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...


_erf = np.frompyfunc(math.erf, 1, 1)


class NumpyScalarBuilder:
    """Evaluates scalar expressions on numpy arrays, keeping dtypes exact."""

    def dtype(self, x: np.ndarray) -> str:
        return x.dtype.name

    def const(self, value: float | int | bool, dtype: str) -> np.ndarray:
        return np.asarray(value, dtype=dtype)

    def c(self, value: float | int | bool, like: np.ndarray) -> np.ndarray:
        return np.asarray(value, dtype=like.dtype)

    def cast(self, x: np.ndarray, dtype: str) -> np.ndarray:
        return np.asarray(x).astype(dtype, copy=False)

    add = staticmethod(np.add)
    sub = staticmethod(np.subtract)
    mul = staticmethod(np.multiply)
    neg = staticmethod(np.negative)
    abs = staticmethod(np.abs)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    tanh = staticmethod(np.tanh)
    log1p = staticmethod(np.log1p)
    expm1 = staticmethod(np.expm1)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    rint = staticmethod(np.rint)
    sign = staticmethod(np.sign)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    lt = staticmethod(np.less)
    le = staticmethod(np.less_equal)
    gt = staticmethod(np.greater)
    ge = staticmethod(np.greater_equal)
    eq = staticmethod(np.equal)
    ne = staticmethod(np.not_equal)
    logical_and = staticmethod(np.logical_and)
    logical_or = staticmethod(np.logical_or)
    logical_not = staticmethod(np.logical_not)
    floordiv = staticmethod(np.floor_divide)
    mod = staticmethod(np.mod)
    bitxor = staticmethod(np.bitwise_xor)
    shr = staticmethod(np.right_shift)

    @staticmethod
    def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.dtype.kind in "iub" and b.dtype.kind in "iub":
            return np.floor_divide(a, b)  # only reached through explicit integer division ops
        return np.true_divide(a, b)

    @staticmethod
    def pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            # integer powers with negative exponents are undefined; numpy raises
            b = np.maximum(b, 0)
        return np.power(a, b)

    @staticmethod
    def where(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(c, a, b)

    @staticmethod
    def erf(x: np.ndarray) -> np.ndarray:
        return np.asarray(_erf(x), dtype=np.float64).astype(x.dtype)


NUMPY = NumpyScalarBuilder()
