"""Specialization: cheaper forms for common special cases (powers, means over static sizes) and
branches decided by constant conditions (the learning phase, once fed, is a constant)."""

from __future__ import annotations

import numpy as np

from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.ops.leaves import const_array
from symk.graph.types import is_float
from symk.passes.canonicalize import same
from symk.passes.pattern import Const, Pat, Var
from symk.passes.rewrite import RuleSet

X = Var("x")
rules = RuleSet()

# x ** 2 -> x * x
rules.rule("pow_two", Pat("pow", X, Const("c", 2)), "x ** 2 -> x * x")(
    lambda b, n: same(gb.square(b["x"]), n))
# x ** 1 -> x
rules.rule("pow_one", Pat("pow", X, Const("c", 1)), "x ** 1 -> x")(lambda b, n: same(b["x"], n))


@rules.rule("pow_half", Pat("pow", X, Const("c", 0.5)), "x ** 0.5 -> sqrt(x)")
def _ph(b, n):
    return same(gb.sqrt(b["x"]), n) if is_float(n.dtype) else None


@rules.rule("mean_to_sum", Pat("mean", X), "mean(x, axes) -> sum(x, axes) * (1/n), n static")
def _mean(b, n):
    x = b["x"]
    if not is_float(x.dtype):
        return None
    dims = [x.shape[a] for a in n.attrs["axes"]]
    if None in dims:
        return None
    count = int(np.prod(dims, dtype=np.int64))
    if count == 0:
        return None
    s = apply("sum", [x], axes=n.attrs["axes"], keepdims=n.attrs["keepdims"])
    return gb.mul(s, gb.lift(1.0 / count, s))


@rules.rule("where_const", Pat("where", Var("c"), Var("a"), Var("b")),
            "where(True, a, b) -> a; where(False, a, b) -> b (scalar constant condition)")
def _wc(b, n):
    c = const_array(b["c"])
    if c is None or c.size != 1:
        return None
    return same(b["a"] if bool(c.reshape(())) else b["b"], n)
