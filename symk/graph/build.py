"""Node-level builders: the small functional API that gradient rules, passes and the Keras
backend use to make nodes.  Python scalars are lifted to constants with weak typing (a Python
float next to a float32 tensor is float32, like numpy's NEP 50 and Keras).  Every helper
builds its node with ``symk.graph.node.apply``, the one node constructor, which callers also use
directly for ops without a helper here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symk.errors import ArgumentError, DTypeError
from symk.graph.node import ConstValue, Node, apply
from symk.graph.types import as_dtype, is_float, scalar_dtype

Scalar = int | float | bool


#: array kinds symk cannot hold, by numpy dtype kind
FOREIGN_KINDS = {"O": "Python objects", "U": "strings", "S": "bytes", "V": "raw records",
                  "M": "datetimes", "m": "timedeltas", "c": "complex numbers"}


def as_array(value: Any, dtype: str | np.dtype | None = None, what: str = "value") -> np.ndarray:
    """``value`` as a numpy array of ``dtype`` (None: numpy's choice) that symk can hold.

    Refuses objects, strings and complex numbers (``DTypeError``) and casts that would change
    a value: NaN/inf, fractions or out-of-range numbers into an int dtype, anything but 0/1
    into bool (``ArgumentError``).  Values are scanned only when such a cast is needed."""
    try:
        a = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ArgumentError(f"cannot convert {what} ({type(value).__name__}) to an array: "
                            f"{e}") from None
    kind = a.dtype.kind
    if kind in FOREIGN_KINDS:
        if kind == "O" and isinstance(value, int):
            raise ArgumentError(f"{what} {value} is out of the range of int64")
        extra = " (symk has no complex dtypes)" if kind == "c" else ""
        raise DTypeError(f"{what} holds {FOREIGN_KINDS[kind]} (dtype {a.dtype}), which "
                         f"symk cannot store{extra}")
    if dtype is None:
        return a
    target = dtype if isinstance(dtype, np.dtype) else np.dtype(as_dtype(dtype))
    if a.dtype == target:
        return a
    bad = misfit(a, target)
    if bad is not None:
        raise ArgumentError(f"{what} holds {bad[0]!r} ({a.dtype}), which does not fit "
                            f"{target}: {bad[1]}")
    return a.astype(target)


def misfit(a: np.ndarray, target: np.dtype) -> tuple[Any, str] | None:
    """The first value of ``a`` that a cast to ``target`` would change, and why (None when
    every value converts unchanged).  Only casts into int/bool dtypes that numpy does not call
    safe scan the values: NaN/inf, fractions and out-of-range numbers into an int dtype,
    anything but 0/1 into bool.  Shared by constants, variables and fed values."""
    if target.kind not in "iub" or np.can_cast(a.dtype, target) or not a.size:
        return None
    with np.errstate(invalid="ignore"):
        if target.kind == "b":
            ok = (a == 0) | (a == 1)
        else:
            info = np.iinfo(target)
            ok = (a >= info.min) & (a <= info.max)
            if a.dtype.kind == "f":
                ok &= np.mod(a, 1) == 0
    if np.all(ok):
        return None
    bad = np.asarray(a)[~np.asarray(ok)].flat[0].item()
    if target.kind == "b":
        return bad, "bool holds only 0 and 1"
    if not np.isfinite(bad):
        return bad, f"{target} holds no nan or inf"
    if info.min <= bad <= info.max:
        return bad, "it has a fractional part"
    return bad, f"it is outside the range [{info.min}, {info.max}] of {target} (it would wrap"\
        " around)"


def const(value: Any, dtype: str | None = None) -> Node:
    return apply("constant", [], value=ConstValue(as_array(value, dtype, "constant")))


def lift(x: Node | Scalar | np.ndarray, like: Node | None = None) -> Node:
    """A node for ``x``; Python scalars take their dtype from ``like`` (weak typing)."""
    if isinstance(x, Node):
        return x
    if isinstance(x, (bool, int, float, np.bool_, np.number)):
        v = x.item() if isinstance(x, np.generic) else x
        if like is not None:
            return const(v, scalar_dtype(v, like.dtype))
        if isinstance(v, bool):
            return const(v, "bool")
        if isinstance(v, int):
            return const(v, "int32" if -2**31 <= v < 2**31 else "int64")
        return const(v, "float32")
    return const(np.asarray(x))


def _bin(name: str, a: Any, b: Any) -> Node:
    if not isinstance(a, Node):
        a = lift(a, b if isinstance(b, Node) else None)
    b = lift(b, a)
    return apply(name, [a, b])


def add(a, b): return _bin("add", a, b)
def sub(a, b): return _bin("sub", a, b)
def mul(a, b): return _bin("mul", a, b)
def div(a, b): return _bin("div", a, b)
def pow(a, b): return _bin("pow", a, b)  # noqa: A001
def maximum(a, b): return _bin("maximum", a, b)
def minimum(a, b): return _bin("minimum", a, b)
def floordiv(a, b): return _bin("floordiv", a, b)
def mod(a, b): return _bin("mod", a, b)
def lt(a, b): return _bin("lt", a, b)
def le(a, b): return _bin("le", a, b)
def gt(a, b): return _bin("gt", a, b)
def ge(a, b): return _bin("ge", a, b)
def eq(a, b): return _bin("eq", a, b)
def ne(a, b): return _bin("ne", a, b)
def logical_and(a, b): return _bin("logical_and", a, b)
def logical_or(a, b): return _bin("logical_or", a, b)


def where(c: Node, a: Any, b: Any) -> Node:
    if not isinstance(a, Node):
        a = lift(a, b if isinstance(b, Node) else None)
    b = lift(b, a)
    return apply("where", [c, a, b])


def clip(x: Node, lo: Any, hi: Any) -> Node:
    return apply("clip", [x, lift(lo, x), lift(hi, x)])


def _un(name: str):
    def f(x: Node, **attrs: Any) -> Node:
        return apply(name, [x], **attrs)
    f.__name__ = name
    return f


neg = _un("neg")
abs = _un("abs")  # noqa: A001
exp = _un("exp")
log = _un("log")
sqrt = _un("sqrt")
square = _un("square")
sign = _un("sign")
sin = _un("sin")
cos = _un("cos")
tanh = _un("tanh")
sigmoid = _un("sigmoid")
floor = _un("floor")
logical_not = _un("logical_not")
stop_gradient = _un("stop_gradient")


def cast(x: Node, dtype: str) -> Node:
    dtype = as_dtype(dtype)
    return x if x.dtype == dtype else apply("cast", [x], dtype=dtype)


def _reduce(name: str, x: Node, axes: Sequence[int] | None, keepdims: bool) -> Node:
    from symk.graph.types import normalize_axes

    return apply(name, [x], axes=normalize_axes(None if axes is None else list(axes), x.ndim),
                 keepdims=bool(keepdims))


def sum(x: Node, axes=None, keepdims: bool = False) -> Node:  # noqa: A001
    return _reduce("sum", x, axes, keepdims)


def reduce(name: str, x: Node, axes=None, keepdims: bool = False) -> Node:
    return _reduce(name, x, axes, keepdims)


def cumsum(x: Node, axis: int, reverse: bool = False) -> Node:
    return apply("cumsum", [x], axis=axis % x.ndim, reverse=reverse)


def expand_dims(x: Node, axis: int) -> Node:
    return apply("expand_dims", [x], axis=axis % (x.ndim + 1))


def squeeze(x: Node, axis: int) -> Node:
    return apply("squeeze", [x], axis=axis % x.ndim)


def transpose(x: Node, perm: Sequence[int]) -> Node:
    perm = tuple(int(p) for p in perm)
    return x if perm == tuple(range(x.ndim)) else apply("transpose", [x], perm=perm)


def shape_of(x: Node) -> Node:
    return apply("shape_of", [x])


def reshape(x: Node, shape: Sequence[int]) -> Node:
    return apply("reshape", [x], shape=tuple(int(s) for s in shape))


def reshape_like(g: Node, x: Node) -> Node:
    """g reshaped to x's (runtime) shape."""
    if g.shape == x.shape and None not in x.shape:
        return g
    if None not in x.shape:
        return apply("reshape", [g], shape=x.shape)
    return apply("reshape", [g, shape_of(x)], shape=x.shape)


def concatenate(xs: Sequence[Node], axis: int) -> Node:
    return apply("concatenate", list(xs), axis=axis % xs[0].ndim)


def einsum(spec: str, xs: Sequence[Node]) -> Node:
    return apply("einsum", list(xs), spec=spec)


def broadcast_like(g: Node, x: Node) -> Node:
    """g broadcast to x's shape (x is read only when that shape is known at run time only)."""
    if g.shape == x.shape and None not in g.shape:
        return g
    if None not in x.shape:
        return apply("broadcast_to", [g], shape=tuple(x.shape))
    return apply("broadcast_like", [g, x])


def unbroadcast(g: Node, x: Node) -> Node:
    """Sum ``g`` (the gradient of a broadcast result) back to the shape of ``x``."""
    if is_float(x.dtype) and g.dtype != x.dtype:
        g = cast(g, x.dtype)
    lead = g.ndim - x.ndim
    axes = list(range(lead)) + [lead + i for i, d in enumerate(x.shape)
                                if d == 1 and g.shape[lead + i] != 1]
    if not axes:
        return g
    g = sum(g, axes, keepdims=True)
    for _ in range(lead):
        g = squeeze(g, 0)
    return g


def zeros_like(x: Node, dtype: str | None = None) -> Node:
    return fill_like(x, 0, dtype)


def ones_like(x: Node, dtype: str | None = None) -> Node:
    return fill_like(x, 1, dtype)


def fill_like(x: Node, value: Scalar, dtype: str | None = None) -> Node:
    dtype = as_dtype(dtype or x.dtype)
    if None not in x.shape:
        return const(np.full(x.shape, value, dtype=dtype)) if x.ndim == 0 or _small(x) else \
            apply("fill", [const(np.asarray(x.shape, np.int32))], value=value, dtype=dtype,
                  shape=x.shape)
    return apply("fill", [shape_of(x)], value=value, dtype=dtype, shape=x.shape)


def _small(x: Node) -> bool:
    n = x.type.size()
    return n is not None and n <= 64


def count(x: Node, axes: Sequence[int], dtype: str) -> Node:
    """Number of elements of x over ``axes`` (a constant when those dims are static)."""
    dims = [x.shape[a] for a in axes]
    if None not in dims:
        n = 1
        for d in dims:
            n *= d
        return const(n, dtype)
    return apply("count", [x], axes=tuple(axes), dtype=dtype)
