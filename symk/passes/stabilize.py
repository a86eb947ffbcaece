"""Stabilization: rewrite numerically fragile formulas into stable equivalents, including the
forms Keras's losses produce (clipping to [eps, 1-eps] and renormalization).  Each replacement
computes the same value as the original wherever the original is finite."""

from __future__ import annotations

import math

from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.ops.leaves import const_array
from symk.passes.canonicalize import same
from symk.passes.pattern import AttrVar, Bindings, Const, Pat, Var
from symk.passes.rewrite import RuleSet

X = Var("x")
rules = RuleSet()
#: The rules ``K.gradients`` applies to a loss before differentiating it (and ``rules`` starts
#: with them): the gradient of the stabilized log-softmax is ``g - softmax(x) * sum(g)``, where
#: the gradient of the formula as written goes through the log, the clip, the renormalization
#: and the softmax Jacobian (a dozen kernels).  The other rules' stabilized forms have no simpler
#: gradient (and would share more forward values with it, each one a kernel boundary).
loss_rules = RuleSet()

SOFTMAX = Pat("softmax", X, attrs={"axis": AttrVar("a")}, name="s")
SIGMOID = Pat("sigmoid", X)


def _scalar(node: Node) -> float | None:
    a = const_array(node)
    if a is None or a.size != 1:
        return None
    return float(a.reshape(()))


def _log_bounds(lo_node: Node, hi_node: Node, like: Node) -> tuple[Node, Node] | None:
    lo, hi = _scalar(lo_node), _scalar(hi_node)
    if lo is None or hi is None or lo < 0 or hi <= 0:
        return None
    return (gb.lift(math.log(lo) if lo > 0 else -math.inf, like), gb.lift(math.log(hi), like))


# log(softmax(x)) -> log_softmax(x)
loss_rules.rule("log_softmax", Pat("log", SOFTMAX), "log(softmax(x)) -> log_softmax(x)")(
    lambda b, n: apply("log_softmax", [b["x"]], axis=b["a"]))


@loss_rules.rule("softmax_renormalize",
                 Pat("div", SOFTMAX, Pat("sum", Pat("softmax", X, attrs={"axis": AttrVar("a")}),
                                         attrs={"keepdims": True})),
                 "softmax(x) / sum(softmax(x)) -> softmax(x)")
def _renorm(b: Bindings, n: Node) -> Node | None:
    s = n.inputs[1]
    if tuple(s.attrs["axes"]) != (b["a"],):
        return None
    return same(b["s"], n)


@loss_rules.rule("log_clip_softmax", Pat("log", Pat("clip", SOFTMAX, Var("lo"), Var("hi"))),
                 "log(clip(softmax(x), lo, hi)) -> clip(log_softmax(x), log lo, log hi)")
def _lcs(b: Bindings, n: Node) -> Node | None:
    ls = apply("log_softmax", [b["x"]], axis=b["a"])
    bounds = _log_bounds(b["lo"], b["hi"], ls)
    return None if bounds is None else same(gb.clip(ls, *bounds), n)


for _r in loss_rules.rules:
    rules.add(_r)


# log(sigmoid(x)) -> -softplus(-x)
rules.rule("log_sigmoid", Pat("log", SIGMOID), "log(sigmoid(x)) -> -softplus(-x)")(
    lambda b, n: gb.neg(apply("softplus", [gb.neg(b["x"])])))
# log(1 - sigmoid(x)) -> -softplus(x)
rules.rule("log_one_minus_sigmoid", Pat("log", Pat("sub", Const("one", 1), SIGMOID)),
           "log(1 - sigmoid(x)) -> -softplus(x)")(
    lambda b, n: same(gb.neg(apply("softplus", [b["x"]])), n))


@rules.rule("log_clip_sigmoid", Pat("log", Pat("clip", SIGMOID, Var("lo"), Var("hi"))),
            "log(clip(sigmoid(x), lo, hi)) -> clip(-softplus(-x), log lo, log hi)")
def _lcsig(b: Bindings, n: Node) -> Node | None:
    v = gb.neg(apply("softplus", [gb.neg(b["x"])]))
    bounds = _log_bounds(b["lo"], b["hi"], v)
    return None if bounds is None else same(gb.clip(v, *bounds), n)


@rules.rule("log_one_minus_clip_sigmoid", Pat("log", Pat("sub", Const("one", 1), Pat(
    "clip", SIGMOID, Var("lo"), Var("hi")))),
    "log(1 - clip(sigmoid(x), lo, hi)) -> clip(-softplus(x), log(1-hi), log(1-lo))")
def _l1mcs(b: Bindings, n: Node) -> Node | None:
    lo, hi = _scalar(b["lo"]), _scalar(b["hi"])
    if lo is None or hi is None or hi >= 1 or lo > 1:
        return None
    v = gb.neg(apply("softplus", [b["x"]]))
    lo_b = gb.lift(math.log(1 - hi), v)
    hi_b = gb.lift(math.log(1 - lo) if lo < 1 else -math.inf, v)
    return same(gb.clip(v, lo_b, hi_b), n)


# log(sum(exp(x))) -> logsumexp(x)
rules.rule("logsumexp", Pat("log", Pat("sum", Pat("exp", X), attrs={"axes": AttrVar("ax"),
           "keepdims": AttrVar("k")})), "log(sum(exp(x))) -> logsumexp(x)")(
    lambda b, n: apply("logsumexp", [b["x"]], axes=b["ax"], keepdims=b["k"]))
# log(1 + x) -> log1p(x)
rules.rule("log1p", Pat("log", Pat("add", X, Const("one", 1))), "log(1 + x) -> log1p(x)")(
    lambda b, n: same(apply("log1p", [b["x"]]), n))
# exp(x) - 1 -> expm1(x)
rules.rule("expm1", Pat("sub", Pat("exp", X), Const("one", 1)), "exp(x) - 1 -> expm1(x)")(
    lambda b, n: same(apply("expm1", [b["x"]]), n))


# Gradients: K.gradients differentiates the formula as written, so the gradient of
# log(sigmoid(x)) divides by sigmoid(x), which underflows to 0 (nan = inf * 0) for x << 0.
# These rules recognize the vector-Jacobian products of log and sigmoid and cancel the division.
SIG = Var("s", lambda n: n.op.name == "sigmoid")
ONE_MINUS_SIG = Pat("sub", Const("one", 1), SIG, name="d")


@rules.rule("grad_log_sigmoid", Pat("mul", Pat("div", Var("g"), SIG), Pat("mul", SIG,
            ONE_MINUS_SIG)), "g / s * (s * (1 - s)) -> g * sigmoid(-x), s = sigmoid(x)")
def _gls(b: Bindings, n: Node) -> Node | None:
    s = b["s"]
    return same(gb.mul(b["g"], apply("sigmoid", [gb.neg(s.inputs[0])])), n)


@rules.rule("grad_log_one_minus_sigmoid", Pat("mul", Pat("neg", Pat("div", Var("g"),
            ONE_MINUS_SIG)), Pat("mul", SIG, Var("d"))),
            "-(g / (1 - s)) * (s * (1 - s)) -> -(g * s), s = sigmoid(x)")
def _grad_log_one_minus_sigmoid(b: Bindings, n: Node) -> Node | None:
    return same(gb.neg(gb.mul(b["g"], b["s"])), n)


# The VJP of a reduction broadcasts g like the reduction's input x, and a mean's or a reshape's
# reads shape_of(x): x is read for its shape only, but that read makes x a kernel output (it
# can no longer fuse into the reduction as its prologue, or into its consumer as an epilogue).
# The shape of an elementwise x is the broadcast of its inputs' shapes (rank-0 inputs change
# nothing), so the read moves down to the values below x's elementwise cone: leaves, or values
# materialized anyway.  Each rule walks the whole cone at once (a rule fires at most 32 times
# on one node, and a chain of elementwise ops may be longer).
def _elementwise(n: Node) -> bool:
    return n.op.elementwise and not n.op.broadcast_attr  # (broadcast_to: an attr joins it)


ELEMENTWISE = Var("x", _elementwise)


def _shape_sources(x: Node) -> list[Node]:
    """The values below ``x``'s elementwise cone whose broadcast shape is ``x``'s shape."""
    out: dict[int, Node] = {}
    stack, seen = [x], set[int]()
    while stack:
        y = stack.pop()
        if not y.ndim or id(y) in seen:
            continue
        seen.add(id(y))
        if _elementwise(y):
            stack.extend(reversed(y.inputs))
        else:
            out[id(y)] = y
    return list(out.values())


@rules.rule("broadcast_like_inputs", Pat("broadcast_like", Var("g"), ELEMENTWISE),
            "broadcast_like(g, f(a, b)) -> broadcast_like(broadcast_like(g, a), b), f elementwise")
def _bli(b: Bindings, n: Node) -> Node | None:
    g = b["g"]
    if None not in n.shape:  # a static shape needs no source
        return apply("broadcast_to", [g], shape=n.shape)
    for a in _shape_sources(b["x"]):
        g = gb.broadcast_like(g, a)
    return g if g.type == n.type else None


def _shape_carrier(x: Node) -> Node:
    """The value below ``x`` through elementwise ops with one shaped input of x's rank (the
    others scalars): it has x's shape."""
    while _elementwise(x):
        shaped = [a for a in x.inputs if a.ndim]
        if len(shaped) != 1 or shaped[0].ndim != x.ndim:
            break
        x = shaped[0]
    return x


@rules.rule("shape_of_elementwise", Pat("shape_of", ELEMENTWISE),
            "shape_of(f(a, scalars)) -> shape_of(a), f elementwise")
def _shape_of_elementwise(b: Bindings, n: Node) -> Node | None:
    x = _shape_carrier(b["x"])
    return None if x is b["x"] else gb.shape_of(x)


@rules.rule("count_elementwise", Pat("count", ELEMENTWISE),
            "count(f(a, scalars), axes) -> count(a, axes), f elementwise")
def _coe(b: Bindings, n: Node) -> Node | None:
    x = _shape_carrier(b["x"])
    return None if x is b["x"] else apply("count", [x], **n.attrs)
