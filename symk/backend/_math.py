"""Elementwise math and reductions of the Keras backend API."""

from __future__ import annotations

import math

from symk import config
from symk.backend._core import api, as_list, as_real, keras_shaped
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import is_float, normalize_axes, normalize_axis

# ---------------------------------------------------------------- elementwise


def _floaty(x):
    """x as a node, cast to floatx when it is not floating point (Keras float-only ops)."""
    node = to_node(x)
    return node if is_float(node.dtype) else gb.cast(node, config.floatx())


def _unary(name):
    def f(x):
        return Tensor(apply(name, [to_node(x)]))
    f.__name__ = name
    f.__doc__ = f"Elementwise {name}."
    return api(f)


abs = _unary("abs")  # noqa: A001
square = _unary("square")
sign = _unary("sign")
round = _unary("round")  # noqa: A001  (half to even, like Keras' TensorFlow/Theano backends)


def _float_unary(name):
    def f(x):
        return Tensor(apply(name, [_floaty(x)]))
    f.__name__ = name
    f.__doc__ = f"Elementwise {name} (computed in floating point)."
    return api(f)


exp = _float_unary("exp")
log = _float_unary("log")
sin = _float_unary("sin")
cos = _float_unary("cos")
tanh = _float_unary("tanh")
sigmoid = _float_unary("sigmoid")
hard_sigmoid = _float_unary("hard_sigmoid")
softplus = _float_unary("softplus")
softsign = _float_unary("softsign")


@api
def sqrt(x):
    """sqrt(max(x, 0)): Keras clips negative inputs to 0."""
    node = _floaty(x)
    return Tensor(apply("sqrt", [gb.maximum(node, 0)]))


@api
def pow(x, a):  # noqa: A001
    return Tensor(gb.pow(to_node(x), to_node(a, x)))


@api
def clip(x, min_value, max_value):
    if isinstance(min_value, (int, float)) and isinstance(max_value, (int, float)):
        if max_value < min_value:
            max_value = min_value
    if min_value is None:
        min_value = -math.inf
    if max_value is None:
        max_value = math.inf
    node = to_node(x)
    return Tensor(gb.clip(node, to_node(min_value, node), to_node(max_value, node)))


def _binary(name, fn, shaped=False):
    def f(x, y):
        xn = to_node(x, y if not isinstance(y, (int, float)) else None)
        return Tensor(fn(xn, to_node(y, xn)))
    f.__name__ = name
    return api(keras_shaped()(f) if shaped else f)


equal = _binary("equal", gb.eq)
not_equal = _binary("not_equal", gb.ne, shaped=True)  # as in Keras's Theano backend
greater = _binary("greater", gb.gt)
greater_equal = _binary("greater_equal", gb.ge)
less = _binary("less", gb.lt)
less_equal = _binary("less_equal", gb.le)
maximum = _binary("maximum", gb.maximum)
minimum = _binary("minimum", gb.minimum)


@api
def relu(x, alpha=0.0, max_value=None, threshold=0.0):
    return Tensor(apply("relu", [to_node(x)], alpha=as_real(alpha, "alpha"),
                        max_value=None if max_value is None else as_real(max_value, "max_value"),
                        threshold=as_real(threshold, "threshold")))


@api
def elu(x, alpha=1.0):
    return Tensor(apply("elu", [_floaty(x)], alpha=as_real(alpha, "alpha")))


# ---------------------------------------------------------------- reductions


def _axes(x, axis):
    return normalize_axes(None if axis is None else as_list(axis), x.ndim)


def _reduction(name, pre=None, shaped=False):
    def f(x, axis=None, keepdims=False):
        node = to_node(x)
        if pre is not None:
            node = pre(node)
        return Tensor(apply(name, [node], axes=_axes(node, axis), keepdims=bool(keepdims)))
    f.__name__ = name
    f.__doc__ = f"{name} over ``axis`` (None: all axes)."
    return api(keras_shaped()(f) if shaped else f)


def _to_bool(node):
    return gb.cast(node, "bool")


def _bool_to_float(node):
    return gb.cast(node, config.floatx()) if node.dtype == "bool" else node


sum = _reduction("sum")  # noqa: A001
prod = _reduction("prod")
max = _reduction("max")  # noqa: A001
min = _reduction("min")  # noqa: A001
# any/all (and not_equal) set _keras_shape, as in Keras's Theano backend
any = _reduction("any", _to_bool, shaped=True)  # noqa: A001
all = _reduction("all", _to_bool, shaped=True)  # noqa: A001
mean = _reduction("mean", _bool_to_float)


@api
def logsumexp(x, axis=None, keepdims=False):
    node = _floaty(x)
    return Tensor(apply("logsumexp", [node], axes=_axes(node, axis), keepdims=bool(keepdims)))


@api
def var(x, axis=None, keepdims=False):
    node = _bool_to_float(to_node(x))
    axes = _axes(node, axis)
    m = apply("mean", [node], axes=axes, keepdims=True)
    d = gb.square(gb.sub(node, m))
    return Tensor(apply("mean", [d], axes=axes, keepdims=bool(keepdims)))


@api
def std(x, axis=None, keepdims=False):
    return Tensor(gb.sqrt(var(x, axis, keepdims).node))


@api
def argmax(x, axis=-1):
    node = to_node(x)
    return Tensor(apply("argmax", [node], axis=normalize_axis(axis, node.ndim)))


@api
def argmin(x, axis=-1):
    node = to_node(x)
    return Tensor(apply("argmin", [node], axis=normalize_axis(axis, node.ndim)))


@api
def cumsum(x, axis=0):
    node = to_node(x)
    return Tensor(apply("cumsum", [node], axis=normalize_axis(axis, node.ndim)))


@api
def cumprod(x, axis=0):
    node = to_node(x)
    return Tensor(apply("cumprod", [node], axis=normalize_axis(axis, node.ndim)))
