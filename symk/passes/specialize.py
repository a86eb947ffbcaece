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

# x ** 2 -> x * x  (computed in the result dtype: an int x with a float 2 must not overflow)
rules.rule("pow_two", Pat("pow", X, Const("c", 2)), "x ** 2 -> x * x")(
    lambda b, n: same(gb.square(gb.cast(b["x"], n.dtype)), n))
# x ** 1 -> x
rules.rule("pow_one", Pat("pow", X, Const("c", 1)), "x ** 1 -> x")(lambda b, n: same(b["x"], n))


@rules.rule("pow_half", Pat("pow", X, Const("c", 0.5)), "x ** 0.5 -> sqrt(x)")
def _ph(b, n):
    # exact for numpy's power with a scalar 0.5 (sqrt: nan at -inf, -0 at -0); C's pow would
    # give +inf and +0 there, so a target rendering pow(x, 0.5) with libm must special-case it
    if not is_float(n.dtype) or b["c"].type.size() != 1:
        return None
    return same(gb.sqrt(gb.cast(b["x"], n.dtype)), n)


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
    if x.dtype == "float16":  # numpy's mean accumulates float16 in float32
        s = apply("sum", [gb.cast(x, "float32")], axes=n.attrs["axes"],
                  keepdims=n.attrs["keepdims"])
        return gb.cast(gb.mul(s, gb.lift(1.0 / count, s)), "float16")
    s = apply("sum", [x], axes=n.attrs["axes"], keepdims=n.attrs["keepdims"])
    return gb.mul(s, gb.lift(1.0 / count, s))


@rules.rule("where_const", Pat("where", Var("c"), Var("a"), Var("b")),
            "where(True, a, b) -> a; where(False, a, b) -> b (scalar constant condition)")
def _wc(b, n):
    c = const_array(b["c"])
    if c is None or c.size != 1:
        return None
    return same(b["a"] if bool(c.reshape(())) else b["b"], n)
