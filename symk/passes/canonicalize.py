"""Canonicalization: algebraic identities that never change a result, constant folding, and a
canonical operand order.

Float identities that would change NaN/Inf results are applied to integer and bool tensors
only: ``x*0 -> 0`` (inf*0 and nan*0 are nan) and ``x-x -> 0`` (inf-inf is nan).  The identities
with a zero are exact for floats only with the right sign of zero (as in LLVM without ``nsz``):
IEEE gives -0 + +0 = +0, so ``x + 0 -> x`` would turn a -0 result into -0 where +0 was computed,
and 1/x would then flip from +inf to -inf.  Hence for floats ``x + (-0.0) -> x``,
``x - (+0.0) -> x`` and ``(-0.0) - x -> -x`` only."""

from __future__ import annotations

import math

import numpy as np

from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.ops.leaves import const_array
from symk.graph.types import is_float
from symk.passes.pattern import AttrVar, Bindings, Const, Pat, Var
from symk.passes.rewrite import RuleSet

X, Y = Var("x"), Var("y")
rules = RuleSet()
fold_rules = RuleSet()

#: constants larger than this many elements are not produced by folding
FOLD_MAX_ELEMENTS = 1 << 16


def same(x: Node, n: Node) -> Node | None:
    """``x`` standing in for ``n`` when only the dtype may differ (else decline)."""
    if x.shape != n.shape:
        return None
    return gb.cast(x, n.dtype)


def _signed_zero(c: Node, negative: bool) -> bool:
    """Every element of the zero constant ``c`` is -0.0 (``negative``) or +0.0."""
    a = const_array(c)
    assert a is not None  # c is bound by a Const pattern: a constant node
    return bool(np.all(np.signbit(a) == negative))


# x + 0 -> x  (floats: only x + (-0.0), since -0 + +0 = +0)
rules.rule("add_zero", Pat("add", X, Const("c", 0)), "x + 0 -> x")(
    lambda b, n: same(b["x"], n)
    if not is_float(b["x"].dtype) or _signed_zero(b["c"], True) else None)
# x - 0 -> x  (floats: only x - (+0.0), since -0 - -0 = +0)
rules.rule("sub_zero", Pat("sub", X, Const("c", 0)), "x - 0 -> x")(
    lambda b, n: same(b["x"], n)
    if not is_float(b["x"].dtype) or _signed_zero(b["c"], False) else None)
# x * 1 -> x
rules.rule("mul_one", Pat("mul", X, Const("c", 1)), "x * 1 -> x")(lambda b, n: same(b["x"], n))
# x / 1 -> x
rules.rule("div_one", Pat("div", X, Const("c", 1)), "x / 1 -> x")(lambda b, n: same(b["x"], n))
# 0 - x -> -x  (floats: only (-0.0) - x, since +0 - +0 = +0 but -(+0) = -0)
rules.rule("zero_sub", Pat("sub", Const("c", 0), X), "0 - x -> -x")(
    lambda b, n: same(gb.neg(gb.cast(b["x"], n.dtype)), n)
    if not is_float(n.dtype) or _signed_zero(b["c"], True) else None)
# -(-x) -> x
rules.rule("neg_neg", Pat("neg", Pat("neg", X)), "-(-x) -> x")(lambda b, n: b["x"])
# x + (-y) -> x - y
rules.rule("add_neg", Pat("add", X, Pat("neg", Y)), "x + (-y) -> x - y")(
    lambda b, n: same(gb.sub(b["x"], b["y"]), n))
# x - (-y) -> x + y
rules.rule("sub_neg", Pat("sub", X, Pat("neg", Y)), "x - (-y) -> x + y")(
    lambda b, n: same(gb.add(b["x"], b["y"]), n))


def _zeros_shaped_like(x: Node, n: Node) -> Node | None:
    """Zeros of ``n``'s type built from ``x``'s shape (never from ``n`` itself, which would keep
    the replaced node alive under ``shape_of`` and rewrite it forever)."""
    if None not in n.shape:
        return gb.zeros_like(n)
    return gb.zeros_like(x, n.dtype) if x.shape == n.shape else None


@rules.rule("mul_zero_int", Pat("mul", X, Const("c", 0)), "x * 0 -> 0 (ints/bools only)")
def _mul_zero(b: Bindings, n: Node) -> Node | None:
    if is_float(n.dtype):
        return None  # inf * 0 and nan * 0 are nan
    return _zeros_shaped_like(b["x"], n)


@rules.rule("sub_self_int", Pat("sub", X, X), "x - x -> 0 (ints/bools only)")
def _sub_self(b: Bindings, n: Node) -> Node | None:
    return None if is_float(n.dtype) else _zeros_shaped_like(b["x"], n)


# where(c, x, x) -> x
rules.rule("where_same", Pat("where", Var("c"), X, X), "where(c, x, x) -> x")(
    lambda b, n: same(b["x"], n))


@rules.rule("transpose_transpose", Pat("transpose", Pat("transpose", X, attrs={"perm":
            AttrVar("p")}), attrs={"perm": AttrVar("q")}), "T(T(x, p), q) -> T(x, p[q])")
def _transpose_transpose(b: Bindings, n: Node) -> Node | None:
    p, q = b["p"], b["q"]
    return gb.transpose(b["x"], [p[i] for i in q])


@rules.rule("transpose_identity", Pat("transpose", X), "T(x, identity) -> x")
def _tid(b: Bindings, n: Node) -> Node | None:
    return b["x"] if tuple(n.attrs["perm"]) == tuple(range(n.ndim)) else None


@rules.rule("reshape_reshape", Pat("reshape", Pat("reshape", X)), "R(R(x, s1), s2) -> R(x, s2)")
def _reshape_reshape(b: Bindings, n: Node) -> Node | None:
    inner = n.inputs[0]
    return apply("reshape", [inner.inputs[0], *n.inputs[1:]], **n.attrs)


@rules.rule("reshape_same", Pat("reshape", X), "R(x, shape(x)) -> x")
def _rsame(b: Bindings, n: Node) -> Node | None:
    x = b["x"]
    return x if x.shape == n.shape and None not in x.shape else None


def _reshape_drops_kept_dims(b: Bindings, n: Node) -> Node | None:
    r = n.inputs[0]
    # (a plain reduction: its keepdims only decides whether the reduced axes stay as 1s)
    if r.op.combine is None or not r.attrs.get("keepdims"):
        return None
    axes = set(r.attrs["axes"])
    if n.shape != tuple(d for i, d in enumerate(r.shape) if i not in axes):
        return None
    return apply(r.op.name, [r.inputs[0]], axes=r.attrs["axes"], keepdims=False)


# R(red(x, axes, keepdims=True), shape without those axes) -> red(x, axes, keepdims=False)
# (bias gradients: the reduction's epilogue can then fuse, no view in between)
rules.rule("reshape_keepdims", Pat("reshape", X),
           "R(red(x, a, keepdims), shape without a) -> red(x, a)")(_reshape_drops_kept_dims)


def _leading_ones_source(x: Node) -> Node | None:
    """y when ``x`` is a reshaping op (``Op.reshapes``) of a static-shaped y prepending 1s."""
    if not x.op.reshapes or not x.inputs:
        return None
    y = x.inputs[0]
    k = x.ndim - y.ndim
    if k < 1 or None in y.shape or x.shape != (1,) * k + y.shape:
        return None
    return y


# f(.., reshape(b, (1,..,1) + b.shape), ..) -> f(.., b, ..), f elementwise: broadcasting
# prepends the 1s anyway (a bias added to a batch then needs no view step)
@rules.rule("elementwise_leading_ones", Pat("*"),
            "f(.., reshape(b, (1,)*k + b.shape), ..) -> f(.., b, ..), result shape unchanged")
def _elementwise_leading_ones(b: Bindings, n: Node) -> Node | None:
    if not n.op.elementwise or n.op.broadcast_attr or not any(x.op.reshapes for x in n.inputs):
        return None
    ins = [_leading_ones_source(x) or x for x in n.inputs]
    if all(a is x for a, x in zip(ins, n.inputs)):
        return None
    new = apply(n.op, ins, **n.attrs)
    return new if new.type == n.type else None


@rules.rule("squeeze_expand", Pat("squeeze", Pat("expand_dims", X, attrs={"axis": AttrVar("a")}),
            attrs={"axis": AttrVar("a")}), "squeeze(expand_dims(x, a), a) -> x")
def _se(b: Bindings, n: Node) -> Node | None:
    return b["x"]


@rules.rule("expand_squeeze", Pat("expand_dims", Pat("squeeze", X, attrs={"axis": AttrVar("a")}),
            attrs={"axis": AttrVar("a")}), "expand_dims(squeeze(x, a), a) -> x if x.shape[a]==1")
def _es(b: Bindings, n: Node) -> Node | None:
    return b["x"] if b["x"].shape == n.shape else None


@rules.rule("cast_cast", Pat("cast", Pat("cast", X)), "cast(cast(x, a), b) -> cast(x, b) when "
            "a holds every value of x")
def _cc(b: Bindings, n: Node) -> Node | None:
    x, mid = b["x"], n.inputs[0]
    if np.can_cast(np.dtype(x.dtype), np.dtype(mid.dtype), "safe"):
        return gb.cast(x, n.dtype)
    return None


# stop_gradient(x) -> x  (gradients are already built when passes run)
rules.rule("stop_gradient_identity", Pat("stop_gradient", X), "stop_gradient(x) -> x")(
    lambda b, n: b["x"])


@rules.rule("broadcast_noop", Pat("broadcast_like", X, Y), "broadcast_like(x, y) -> x when "
            "x already has the result shape")
def _bn(b: Bindings, n: Node) -> Node | None:
    x = b["x"]
    return x if x.shape == n.shape and None not in x.shape else None


@rules.rule("reduce_no_axes", Pat("sum", X, attrs={"axes": ()}), "sum(x, axes=()) -> x")
def _rna(b: Bindings, n: Node) -> Node | None:
    return same(b["x"], n)


@rules.rule("const_second", Pat("*", Var("a"), Var("b")), "c op x -> x op c for commutative op")
def _const_second(b: Bindings, n: Node) -> Node | None:
    if not n.op.commutative:
        return None
    a, c = n.inputs
    if const_array(a) is not None and const_array(c) is None:
        return apply(n.op, [c, a], **n.attrs)
    return None


@fold_rules.rule("constant_fold", Pat("*"), "op(constants) -> constant")
def _fold(b: Bindings, n: Node) -> Node | None:
    op = n.op
    if op.is_leaf or op.is_random or op.side_effect or op.name == "fill":
        return None
    if op.name == "shape_of":
        x = n.inputs[0]
        return gb.const(np.asarray(x.shape, np.int32)) if None not in x.shape else None
    if op.name == "count":  # count(x, axes) -> prod(x.shape[axes]) when those dims are static
        x = n.inputs[0]
        dims = [x.shape[a] for a in n.attrs["axes"]]
        return None if None in dims else gb.const(
            np.asarray(math.prod(dims), dtype=n.attrs["dtype"]))
    if not n.inputs:
        return None
    vals = [v for i in n.inputs if (v := const_array(i)) is not None]
    if len(vals) != len(n.inputs):  # an input is not a constant
        return None
    size = n.type.size()
    if size is None or size > FOLD_MAX_ELEMENTS:
        return None
    try:
        with np.errstate(all="ignore"):
            out = op.ref(*vals, **n.attrs)
    except Exception:  # noqa: BLE001  (e.g. an out-of-range gather: reported when it runs)
        return None
    return gb.const(np.asarray(out, dtype=n.dtype))
