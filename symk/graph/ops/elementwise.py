"""Elementwise ops: each defined once by its dtype rule, scalar expression and gradient.

The numpy reference of every elementwise op is its scalar expression evaluated by the numpy
scalar builder; codegen renders the very same expression.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from symk.errors import SymkError
from symk.graph import build as gb
from symk.graph.node import Node
from symk.graph.op import Op, register
from symk.graph.scalar import NUMPY, ScalarBuilder
from symk.graph.types import Type, as_dtype, broadcast_shapes, is_float, result_dtype


def float_of(dtype: str) -> str:
    """The float dtype a float-only op computes in for an input of ``dtype`` (numpy's rule)."""
    if is_float(dtype):
        return dtype
    return "float64" if np.dtype(dtype).itemsize >= 4 else "float32"


class Elementwise(Op):
    elementwise = True
    #: "same": promoted input dtype; "float": float-only op; "bool": comparison/logical
    kind: ClassVar[str] = "same"

    def compute_dtype(self, dtypes: Sequence[str], **attrs: Any) -> str:
        d = result_dtype(*dtypes) if dtypes else "float32"
        if self.kind == "float":
            return float_of(d)
        if self.kind == "logical":
            return "bool"
        return d

    def input_dtypes(self, dtypes: Sequence[str], **attrs: Any) -> list[str]:
        """The dtype each input is cast to before the scalar expression runs."""
        cd = self.compute_dtype(dtypes, **attrs)
        return [cd] * len(dtypes)

    def out_dtype(self, dtypes: Sequence[str], **attrs: Any) -> str:
        if self.kind in ("bool", "logical"):
            return "bool"
        return self.compute_dtype(dtypes, **attrs)

    def infer(self, inputs: Sequence[Type], **attrs: Any) -> Type:
        shape = broadcast_shapes(*[t.shape for t in inputs])
        return Type(self.out_dtype([t.dtype for t in inputs], **attrs), shape)

    def scalar(self, b: ScalarBuilder, *xs: Any, **attrs: Any) -> Any:
        raise SymkError(f"internal error: elementwise op '{self.name}' has no scalar expression")

    def ref(self, *xs: np.ndarray, **attrs: Any) -> np.ndarray:
        xs = tuple(np.asarray(x) for x in xs)
        ids, od = self._dtypes(tuple(x.dtype for x in xs), tuple(attrs.items()))
        out = self.scalar(NUMPY, *[x.astype(d, copy=False) for x, d in zip(xs, ids)], **attrs)
        return np.asarray(out).astype(od, copy=False)

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (ops are registry singletons)
    def _dtypes(self, dts: tuple[np.dtype, ...], attrs: tuple) -> tuple[list, np.dtype]:
        names = [d.name for d in dts]
        a = dict(attrs)
        return ([np.dtype(d) for d in self.input_dtypes(names, **a)],
                np.dtype(self.out_dtype(names, **a)))


    def row_axis(self, node: Node, axes: Sequence[int | None]) -> int | None:
        # inputs are right-aligned: rows stay rows where every row-free input broadcasts
        r = node.ndim
        at = {a + r - x.ndim for x, a in zip(node.inputs, axes) if a is not None}
        if len(at) != 1:
            return None
        ax = at.pop()
        for x, a in zip(node.inputs, axes):
            k = ax - (r - x.ndim)
            if a is None and k >= 0 and x.shape[k] != 1:
                return None
        return ax


class Unary(Elementwise):
    arity = 1


class Binary(Elementwise):
    arity = 2


# ---------------------------------------------------------------- arithmetic


@register
class Add(Binary):
    name = "add"
    commutative = True

    def scalar(self, b, x, y):
        return b.add(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        return [gb.unbroadcast(g, x), gb.unbroadcast(g, y)]


@register
class Sub(Binary):
    name = "sub"

    def scalar(self, b, x, y):
        return b.sub(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        return [gb.unbroadcast(g, x), gb.unbroadcast(gb.neg(g), y)]


@register
class Mul(Binary):
    name = "mul"
    commutative = True

    def scalar(self, b, x, y):
        return b.mul(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        return [gb.unbroadcast(gb.mul(g, y), x), gb.unbroadcast(gb.mul(g, x), y)]


@register
class Div(Binary):
    """True division (integer inputs compute in floating point, like numpy)."""

    name = "div"
    kind = "float"

    def scalar(self, b, x, y):
        return b.div(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        gx = gb.div(g, y)
        gy = gb.neg(gb.div(gb.mul(g, node), y))
        return [gb.unbroadcast(gx, x), gb.unbroadcast(gy, y)]


@register
class FloorDiv(Binary):
    name = "floordiv"
    nondifferentiable = True

    def scalar(self, b, x, y):
        return b.floordiv(x, y)


@register
class Mod(Binary):
    name = "mod"

    def scalar(self, b, x, y):
        return b.mod(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        gy = gb.neg(gb.mul(g, gb.floor(gb.div(x, y))))
        return [gb.unbroadcast(g, x), gb.unbroadcast(gy, y)]


@register
class Pow(Binary):
    name = "pow"

    def scalar(self, b, x, y):
        return b.pow(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        # d/dx x**y = y * x**(y-1);  d/dy x**y = x**y * log(x)
        gx = gb.mul(g, gb.mul(y, gb.pow(x, gb.sub(y, 1))))
        gy = gb.mul(g, gb.mul(node, gb.log(gb.where(gb.gt(x, 0), x, gb.ones_like(x)))))
        return [gb.unbroadcast(gx, x), gb.unbroadcast(gy, y)]


@register
class Maximum(Binary):
    name = "maximum"
    commutative = True

    def scalar(self, b, x, y):
        return b.maximum(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        m = gb.ge(x, y)  # ties go to x, like TensorFlow
        return [gb.unbroadcast(gb.where(m, g, 0), x), gb.unbroadcast(gb.where(m, 0, g), y)]


@register
class Minimum(Binary):
    name = "minimum"
    commutative = True

    def scalar(self, b, x, y):
        return b.minimum(x, y)

    def vjp(self, node, g):
        x, y = node.inputs
        m = gb.le(x, y)
        return [gb.unbroadcast(gb.where(m, g, 0), x), gb.unbroadcast(gb.where(m, 0, g), y)]


# ---------------------------------------------------------------- comparisons and logic


def _cmp(opname: str, prim: str) -> None:
    cls = type(opname.capitalize(), (Binary,), {
        "name": opname, "kind": "bool", "nondifferentiable": True,
        "commutative": opname in ("eq", "ne"),
        "scalar": lambda self, b, x, y: getattr(b, prim)(x, y),
    })
    register(cls)


for _n in ("lt", "le", "gt", "ge", "eq", "ne"):
    _cmp(_n, _n)


@register
class LogicalAnd(Binary):
    name = "logical_and"
    commutative = True
    kind = "logical"
    nondifferentiable = True

    def scalar(self, b, x, y):
        return b.logical_and(x, y)


@register
class LogicalOr(Binary):
    name = "logical_or"
    commutative = True
    kind = "logical"
    nondifferentiable = True

    def scalar(self, b, x, y):
        return b.logical_or(x, y)


@register
class LogicalNot(Unary):
    name = "logical_not"
    kind = "logical"
    nondifferentiable = True

    def scalar(self, b, x):
        return b.logical_not(x)


@register
class Where(Elementwise):
    """where(cond, a, b): cond is cast to bool; a and b are promoted together."""

    name = "where"
    arity = 3

    def compute_dtype(self, dtypes, **attrs):
        return result_dtype(dtypes[1], dtypes[2])

    def infer(self, inputs, **attrs):
        shape = broadcast_shapes(*[t.shape for t in inputs])
        return Type(result_dtype(inputs[1].dtype, inputs[2].dtype), shape)

    def input_dtypes(self, dtypes, **attrs):
        cd = self.compute_dtype(dtypes)
        return ["bool", cd, cd]

    def scalar(self, b, c, x, y):
        return b.where(c, x, y)

    def vjp(self, node, g):
        c, x, y = node.inputs
        return [None, gb.unbroadcast(gb.where(c, g, 0), x), gb.unbroadcast(gb.where(c, 0, g), y)]


@register
class Clip(Elementwise):
    """clip(x, lo, hi) = minimum(maximum(x, lo), hi)."""

    name = "clip"
    arity = 3

    def scalar(self, b, x, lo, hi):
        return b.minimum(b.maximum(x, lo), hi)

    def vjp(self, node, g):
        x, lo, hi = node.inputs
        inside = gb.logical_and(gb.ge(x, lo), gb.le(x, hi))
        return [gb.unbroadcast(gb.where(inside, g, 0), x),
                gb.unbroadcast(gb.where(gb.lt(x, lo), g, 0), lo),
                gb.unbroadcast(gb.where(gb.gt(x, hi), g, 0), hi)]


@register
class Cast(Unary):
    name = "cast"
    attr_names = ("dtype",)

    def compute_dtype(self, dtypes, dtype):
        return dtypes[0]

    def out_dtype(self, dtypes, dtype):
        return as_dtype(dtype)

    def scalar(self, b, x, dtype):
        return b.cast(x, dtype)

    def vjp(self, node, g):
        (x,) = node.inputs
        if not is_float(x.dtype) or not is_float(node.dtype):
            return [None]
        return [gb.cast(g, x.dtype)]


# ---------------------------------------------------------------- unary math


def _unary(name: str, kind: str, expr, grad=None, nondiff: bool = False,
           attrs: tuple[str, ...] = ()) -> None:
    """Register a unary op from its scalar expression and its gradient ``grad(x, y, g)``."""
    body: dict[str, Any] = {"name": name, "kind": kind, "attr_names": attrs,
                            "scalar": lambda self, b, x, **a: expr(b, x, **a),
                            "nondifferentiable": nondiff}
    if grad is not None:
        def vjp(self, node, g, _grad=grad):
            return [_grad(node.inputs[0], node, g, **dict(node.attrs))]
        body["vjp"] = vjp
    register(type(name.title().replace("_", ""), (Unary,), body))


def _sigmoid_expr(b, x):
    # stable on both sides: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) otherwise
    one = b.c(1, x)
    e = b.exp(b.neg(b.abs(x)))
    return b.where(b.ge(x, b.c(0, x)), b.div(one, b.add(one, e)), b.div(e, b.add(one, e)))


def _softplus_expr(b, x):
    # log(1+e^x) = max(x,0) + log1p(e^-|x|)
    return b.add(b.maximum(x, b.c(0, x)), b.log1p(b.exp(b.neg(b.abs(x)))))


def _relu_expr(b, x, alpha=0.0, max_value=None, threshold=0.0):
    zero = b.c(0, x)
    if threshold:
        base = b.where(b.gt(x, b.c(threshold, x)), x, zero)
    else:
        base = b.maximum(x, zero)
    if max_value is not None:
        base = b.minimum(b.maximum(base, zero), b.c(max_value, x))
    if alpha:
        neg = b.maximum(b.sub(b.c(threshold, x), x), zero)
        base = b.sub(base, b.mul(b.c(alpha, x), neg))
    return base


def _relu_grad(x, y, g, alpha=0.0, max_value=None, threshold=0.0):
    if not alpha and max_value is None and not threshold:
        # plain relu: y > 0 exactly where x > 0; reading y (not x) lets x's producer fuse
        return gb.where(gb.gt(y, 0), g, 0)
    if max_value is not None:
        d = gb.logical_and(gb.gt(x, max(threshold, 0.0)), gb.lt(x, max_value))
    else:
        d = gb.gt(x, threshold)
    gx = gb.where(d, g, 0)
    if alpha:
        gx = gb.add(gx, gb.where(gb.lt(x, threshold), gb.mul(g, alpha), 0))
    return gx


def _elu_expr(b, x, alpha=1.0):
    return b.where(b.gt(x, b.c(0, x)), x, b.mul(b.c(alpha, x), b.expm1(x)))


def _sign_expr(b, x):
    return b.sign(x)


_unary("neg", "same", lambda b, x: b.neg(x), lambda x, y, g: gb.neg(g))
_unary("abs", "same", lambda b, x: b.abs(x), lambda x, y, g: gb.mul(g, gb.sign(x)))
_unary("square", "same", lambda b, x: b.mul(x, x), lambda x, y, g: gb.mul(g, gb.mul(x, 2)))
_unary("sqrt", "float", lambda b, x: b.sqrt(x), lambda x, y, g: gb.div(g, gb.mul(y, 2)))
_unary("exp", "float", lambda b, x: b.exp(x), lambda x, y, g: gb.mul(g, y))
_unary("log", "float", lambda b, x: b.log(x), lambda x, y, g: gb.div(g, x))
_unary("log1p", "float", lambda b, x: b.log1p(x), lambda x, y, g: gb.div(g, gb.add(x, 1)))
_unary("expm1", "float", lambda b, x: b.expm1(x), lambda x, y, g: gb.mul(g, gb.add(y, 1)))
_unary("sin", "float", lambda b, x: b.sin(x), lambda x, y, g: gb.mul(g, gb.cos(x)))
_unary("cos", "float", lambda b, x: b.cos(x), lambda x, y, g: gb.neg(gb.mul(g, gb.sin(x))))
_unary("tanh", "float", lambda b, x: b.tanh(x),
       lambda x, y, g: gb.mul(g, gb.sub(1, gb.mul(y, y))))
_unary("erf", "float", lambda b, x: b.erf(x),
       lambda x, y, g: gb.mul(g, gb.mul(gb.exp(gb.neg(gb.mul(x, x))), 2 / math.sqrt(math.pi))))
_unary("sigmoid", "float", _sigmoid_expr,
       lambda x, y, g: gb.mul(g, gb.mul(y, gb.sub(1, y))))
_unary("softplus", "float", _softplus_expr, lambda x, y, g: gb.mul(g, gb.sigmoid(x)))
_unary("softsign", "float", lambda b, x: b.div(x, b.add(b.c(1, x), b.abs(x))),
       lambda x, y, g: gb.div(g, gb.square(gb.add(gb.abs(x), 1))))
_unary("hard_sigmoid", "float",
       lambda b, x: b.minimum(b.maximum(b.add(b.mul(b.c(0.2, x), x), b.c(0.5, x)), b.c(0, x)),
                              b.c(1, x)),
       # the boundaries pass the gradient, as Keras's clip(0.2x + 0.5, 0, 1) does
       lambda x, y, g: gb.where(gb.logical_and(gb.ge(x, -2.5), gb.le(x, 2.5)),
                                gb.mul(g, 0.2), 0))
_unary("relu", "same", _relu_expr, _relu_grad, attrs=("alpha", "max_value", "threshold"))
_unary("elu", "float", _elu_expr,
       lambda x, y, g, alpha=1.0: gb.where(gb.gt(x, 0), g, gb.mul(g, gb.mul(gb.exp(x), alpha))),
       attrs=("alpha",))
_unary("sign", "same", _sign_expr, nondiff=True)
_unary("round", "same", lambda b, x: b.rint(x), nondiff=True)
_unary("floor", "same", lambda b, x: b.floor(x), nondiff=True)
_unary("ceil", "same", lambda b, x: b.ceil(x), nondiff=True)


@register
class BroadcastTo(Unary):
    """broadcast_to(g, shape): g broadcast to a static shape."""

    name = "broadcast_to"
    attr_names = ("shape",)
    broadcast_attr = True

    def infer(self, inputs, shape):
        return Type(inputs[0].dtype, broadcast_shapes(inputs[0].shape, tuple(shape)))

    def ref(self, g, shape):
        return np.broadcast_to(g, np.broadcast_shapes(g.shape, tuple(shape))).copy()

    def scalar(self, b, g, shape):
        return g

    def row_axis(self, node, axes):
        return None  # its static shape names the number of rows

    def vjp(self, node, g):
        return [gb.unbroadcast(g, node.inputs[0])]


@register
class BroadcastLike(Binary):
    """broadcast_like(g, x): g broadcast to the (broadcast) shape of g and x; x gives only shape."""

    name = "broadcast_like"

    def compute_dtype(self, dtypes, **attrs):
        return dtypes[0]

    def ref(self, g, x):
        return np.broadcast_to(g, np.broadcast_shapes(g.shape, x.shape)).copy()

    def scalar(self, b, g, x):
        return g

    def vjp(self, node, g):
        return [gb.unbroadcast(g, node.inputs[0]), None]
