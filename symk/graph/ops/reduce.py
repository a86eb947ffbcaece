"""Reductions (sum, prod, max, min, any, all, mean, argmax/argmin, logsumexp) and scans
along one axis (cumsum, cumprod)."""

from __future__ import annotations

import numpy as np

from symk.errors import ShapeError
from symk.graph import build as gb
from symk.graph.op import Op, register
from symk.graph.ops.elementwise import float_of
from symk.graph.types import Type, normalize_axes, normalize_axis


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def identity(kind: str, dtype: str | np.dtype) -> float | int | bool:
    """The value a reduction combining by ``kind`` starts from: its result over no elements
    (0 for sums, 1 for products, the dtype's lowest for max, highest for min; ``argmax`` and
    ``argmin`` start their running best from max's and min's)."""
    kind = kind.removeprefix("arg")
    if kind in ("sum", "any"):
        return 0
    if kind in ("prod", "all"):
        return 1
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return -np.inf if kind == "max" else np.inf
    if dt.kind == "b":
        return kind == "min"
    info = np.iinfo(dt)
    return int(info.min if kind == "max" else info.max)


def check_nonempty(name: str, x: Type, axes) -> None:
    """A ShapeError when ``name`` (max, min, argmax, argmin: reductions with no identity)
    reduces an axis of static size 0, as numpy and TensorFlow reject it (the native kernels
    would otherwise return their starting value, e.g. -inf, as if it were a result)."""
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise ShapeError(f"cannot reduce the empty axis {empty[0]} of {x}: the {name} of no "
                         f"elements is undefined")


def accumulator_dtype(kind: str, dtype: str) -> str:
    """The dtype a reduction accumulates in: float32 and float16 sums in float64 (like
    numpy's pairwise sum, it keeps the error small), others in their own dtype."""
    return "float64" if kind == "sum" and dtype in ("float32", "float16") else dtype


def max_and_exp_sum(L, dt: str, finite_max: bool = False) -> tuple[int, int]:
    """Kernel IR of the two passes logsumexp and softmax share (``L``: codegen's lowering):
    m = max(x) (0 where it is infinite, with ``finite_max``) and s = sum(exp(x - m)) in the
    accumulator's dtype."""
    b = L.b
    m = L.reduce("max", dt, lambda x: b.cast(x, dt))
    if finite_max:
        m = b.where(b.eq(b.abs(m), b.c(float("inf"), m)), b.c(0, m), m)
    s = L.reduce("sum", accumulator_dtype("sum", dt), lambda x: b.exp(b.sub(b.cast(x, dt), m)))
    return m, s


class Reduce(Op):
    reduction = True
    combine = "sum"
    #: True when the result is the combined value divided by the count (``mean``)
    averages = False
    arity = 1
    attr_names = ("axes", "keepdims")
    np_fn = staticmethod(np.sum)

    def out_dtype(self, dtype: str) -> str:
        return "int32" if dtype == "bool" else dtype

    def infer(self, inputs, axes, keepdims=False):
        (x,) = inputs
        axes = normalize_axes(list(axes), x.ndim)
        return Type(self.out_dtype(x.dtype), reduced_shape(x.shape, axes, keepdims))

    def row_axis(self, node, axes):
        (a,) = axes
        red = normalize_axes(list(node.attrs["axes"]), node.inputs[0].ndim)
        if a in red:
            return None  # a reduction across rows
        return a if node.attrs.get("keepdims") else a - sum(1 for r in red if r < a)

    def ref(self, x, axes, keepdims=False):
        od = self.out_dtype(x.dtype.name)
        return np.asarray(self.np_fn(x.astype(od, copy=False), axis=tuple(axes),
                                     keepdims=keepdims)).astype(od, copy=False)

    def lower_reduction(self, node, L) -> None:
        """Kernel IR (``L``: codegen's lowering, see ``Op.lower_reduction``): one pass
        combining the input (cast to the result's dtype, or to bool for any/all) in the
        accumulator's dtype, divided by the count for a mean."""
        b, kind = L.b, self.combine
        acc = accumulator_dtype(kind, node.dtype)
        to = "bool" if kind in ("any", "all") else node.dtype
        r = L.reduce(kind, acc, lambda x: b.cast(x, to))
        if self.averages:
            r = b.div(r, b.cast(L.count(), acc))
        L.result(b.cast(r, node.dtype))


def _expand_back(node, g):
    """g of a reduction's output, reshaped with the reduced axes kept (size 1)."""
    x = node.inputs[0]
    axes, keepdims = node.attrs["axes"], node.attrs.get("keepdims", False)
    if not keepdims:
        for a in sorted(axes):
            g = gb.expand_dims(g, a)
    return g, x, axes


@register
class Sum(Reduce):
    name = "sum"

    def vjp(self, node, g):
        g, x, _ = _expand_back(node, g)
        return [gb.broadcast_like(g, x)]


@register
class Prod(Reduce):
    name = "prod"
    combine = "prod"
    np_fn = staticmethod(np.prod)

    def vjp(self, node, g):
        g, x, axes = _expand_back(node, g)
        # d prod / d x_i = product of the other elements, safe with zeros (like Theano):
        # no zero: prod / x_i; one zero: the product of the rest at the zero, 0 elsewhere;
        # two or more zeros: 0
        zero = gb.eq(x, 0)
        nzeros = gb.sum(gb.cast(zero, x.dtype), axes, keepdims=True)
        safe = gb.where(zero, 1, x)
        rest = gb.reduce("prod", safe, axes, keepdims=True)
        d = gb.where(gb.eq(nzeros, 0), gb.div(rest, safe),
                     gb.where(gb.logical_and(gb.eq(nzeros, 1), zero), rest, 0))
        return [gb.mul(gb.broadcast_like(g, x), d)]


@register
class Mean(Reduce):
    name = "mean"
    averages = True

    def out_dtype(self, dtype):
        return float_of(dtype)

    def ref(self, x, axes, keepdims=False):
        od = self.out_dtype(x.dtype.name)
        return np.asarray(np.mean(x.astype(od, copy=False), axis=tuple(axes),
                                  keepdims=keepdims), dtype=od)

    def vjp(self, node, g):
        g, x, axes = _expand_back(node, g)
        return [gb.div(gb.broadcast_like(g, x), gb.count(x, axes, node.dtype))]


class _MaxMin(Reduce):
    needs_elements = True

    def infer(self, inputs, axes, keepdims=False):
        check_nonempty(self.name, inputs[0], normalize_axes(list(axes), inputs[0].ndim))
        return super().infer(inputs, axes, keepdims)

    def vjp(self, node, g):
        g, x, axes = _expand_back(node, g)
        y, _, _ = _expand_back(node, node)
        mask = gb.cast(gb.eq(x, y), node.dtype)
        ties = gb.sum(mask, axes, keepdims=True)  # ties share the gradient, like TensorFlow
        return [gb.mul(gb.broadcast_like(gb.div(g, ties), x), mask)]


@register
class Max(_MaxMin):
    name = "max"
    combine = "max"
    np_fn = staticmethod(np.max)

    def out_dtype(self, dtype):
        return dtype


@register
class Min(_MaxMin):
    name = "min"
    combine = "min"
    np_fn = staticmethod(np.min)

    def out_dtype(self, dtype):
        return dtype


@register
class Any(Reduce):
    name = "any"
    combine = "any"
    nondifferentiable = True
    np_fn = staticmethod(np.any)

    def out_dtype(self, dtype):
        return "bool"


@register
class All(Reduce):
    name = "all"
    combine = "all"
    nondifferentiable = True
    np_fn = staticmethod(np.all)

    def out_dtype(self, dtype):
        return "bool"


@register
class LogSumExp(Reduce):
    """log(sum(exp(x))) computed stably as m + log(sum(exp(x - m))), m = max(x)."""

    name = "logsumexp"
    combine = None  # (a max pass, then a sum pass: see its lowering)

    def out_dtype(self, dtype):
        return float_of(dtype)

    def lower_reduction(self, node, L) -> None:
        # m + log(sum(exp(x - m))), m = max(x) (0 where it is infinite)
        b, dt = L.b, node.dtype
        m, s = max_and_exp_sum(L, dt, finite_max=True)
        L.result(b.add(b.log(b.cast(s, dt)), m))

    def ref(self, x, axes, keepdims=False):
        x = x.astype(self.out_dtype(x.dtype.name), copy=False)
        axes = tuple(axes)
        if x.size == 0:
            return np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdims))
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, np.zeros_like(m))
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        return out if keepdims else np.squeeze(out, axis=axes)

    def vjp(self, node, g):
        g, x, _ = _expand_back(node, g)
        y, _, _ = _expand_back(node, node)
        return [gb.mul(gb.broadcast_like(g, x), gb.exp(gb.sub(x, y)))]


@register
class ArgMax(Op):
    name = "argmax"
    arity = 1
    reduction = True
    needs_elements = True
    nondifferentiable = True
    attr_names = ("axis", "keepdims")
    np_fn = staticmethod(np.argmax)

    def infer(self, inputs, axis, keepdims=False):
        (x,) = inputs
        a = normalize_axis(axis, x.ndim)
        check_nonempty(self.name, x, (a,))
        return Type("int64", reduced_shape(x.shape, (a,), keepdims))

    def ref(self, x, axis, keepdims=False):
        return np.asarray(self.np_fn(x, axis=axis, keepdims=keepdims), dtype=np.int64)

    def lower_reduction(self, node, L) -> None:
        L.result(L.arg(self.name))


@register
class ArgMin(ArgMax):
    name = "argmin"
    np_fn = staticmethod(np.argmin)


class _Cumulative(Op):
    """Inclusive scans along one axis (in reverse order with ``reverse``); fused like a
    reduction whose output keeps the input's shape."""

    arity = 1
    attr_names = ("axis", "reverse")
    reduction = True
    #: how each element joins the running value (``sum``, ``prod``)
    combine_step = "sum"

    def infer(self, inputs, axis, reverse=False):
        (x,) = inputs
        normalize_axis(axis, x.ndim)
        return Type("int32" if x.dtype == "bool" else x.dtype, x.shape)

    def ref(self, x, axis, reverse=False):
        od = "int32" if x.dtype == np.bool_ else x.dtype
        x = x.astype(od, copy=False)
        if reverse:
            x = np.flip(x, axis)
        out = self.np_fn(x, axis=axis, dtype=od)
        return np.flip(out, axis) if reverse else out

    def lower_reduction(self, node, L) -> None:
        L.scan(self.combine_step)


@register
class CumSum(_Cumulative):
    name = "cumsum"
    np_fn = staticmethod(np.cumsum)
    combine_step = "sum"

    def vjp(self, node, g):
        a, rev = node.attrs["axis"], node.attrs.get("reverse", False)
        return [gb.cumsum(g, a, reverse=not rev)]


@register
class CumProd(_Cumulative):
    name = "cumprod"
    np_fn = staticmethod(np.cumprod)
    combine_step = "prod"

    def vjp(self, node, g):
        # d y_j / d x_i = y_j / x_i for j >= i  (inputs must be nonzero)
        (x,) = node.inputs
        a, rev = node.attrs["axis"], node.attrs.get("reverse", False)
        return [gb.div(gb.cumsum(gb.mul(g, node), a, reverse=not rev), x)]
