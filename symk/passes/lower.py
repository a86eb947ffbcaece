"""Lowering: composite ops expanded into primitives for targets without an intrinsic for them.
The reference executor and the LLVM and CUDA renderers implement softmax, log_softmax and
logsumexp directly, so these rules run only when a target asks for them (``target_lacks``,
which only tests set today)."""

from __future__ import annotations

from symk.graph import build as gb
from symk.graph.node import apply
from symk.passes.pattern import AttrVar, Pat, Var
from symk.passes.rewrite import RuleSet

X = Var("x")
rules = RuleSet()


def _max_kept(x, axes):
    m = apply("max", [x], axes=tuple(axes), keepdims=True)
    # rows of -inf/inf keep their (infinite) max out of the exponent: shift by 0 instead
    return gb.where(apply("eq", [gb.abs(m), gb.lift(float("inf"), m)]), gb.zeros_like(m), m)


@rules.rule("lower_softmax", Pat("softmax", X, attrs={"axis": AttrVar("a")}),
            "softmax(x) -> exp(x - max x) / sum(exp(x - max x))")
def _sm(b, n):
    x = b["x"]
    e = gb.exp(gb.sub(x, apply("max", [x], axes=(b["a"],), keepdims=True)))
    return gb.div(e, gb.sum(e, [b["a"]], keepdims=True))


@rules.rule("lower_log_softmax", Pat("log_softmax", X, attrs={"axis": AttrVar("a")}),
            "log_softmax(x) -> (x - max x) - log(sum(exp(x - max x)))")
def _lsm(b, n):
    x = b["x"]
    z = gb.sub(x, apply("max", [x], axes=(b["a"],), keepdims=True))
    return gb.sub(z, gb.log(gb.sum(gb.exp(z), [b["a"]], keepdims=True)))


@rules.rule("lower_logsumexp", Pat("logsumexp", X),
            "logsumexp(x) -> m + log(sum(exp(x - m))), m = max x (0 where infinite)")
def _lse(b, n):
    x, axes, keep = b["x"], n.attrs["axes"], n.attrs["keepdims"]
    m = _max_kept(x, axes)
    out = gb.add(gb.log(gb.sum(gb.exp(gb.sub(x, m)), axes, keepdims=True)), m)
    if not keep:
        for a in sorted(axes, reverse=True):
            out = gb.squeeze(out, a)
    return out


def for_target(lacks: frozenset[str]) -> RuleSet:
    """The lowering rules for ops a target has no intrinsic for."""
    rs = RuleSet()
    for r in rules.rules:
        if r.pattern.op in lacks:
            rs.add(r)
    return rs
