"""Canonicalization rules, one by one: the rewritten graph (structure) and the results with all
passes against level 0 and a numpy formula written here (numbers).  Float identities that would
change NaN/Inf results (``x*0``, ``x-x``) must stay unrewritten for floats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.passes import canonicalize
from symk.passes.rewrite import rewrite
from tests.passes.common import assert_close, ops, ph, run_levels

RNG = np.random.default_rng(1)


@dataclass
class Case:
    rule: str
    leaves: list[tuple[tuple[int | None, ...], str]]
    build: Callable[..., Node]  # leaves -> graph
    expect: Callable[..., Node]  # leaves -> expected graph after the rule
    ref: Callable[..., np.ndarray]  # arrays -> numpy result
    feed_shapes: list[tuple[int, ...]] | None = None


def _f32(x):
    return np.float32(x)


CASES = [
    Case("add_zero", [((2, 3), "float32")], lambda x: gb.add(x, -0.0), lambda x: x,
         lambda a: a + _f32(-0.0)),
    Case("add_zero", [((2, 3), "float32")], lambda x: gb.add(gb.const(np.full(3, -0.0,
         np.float32)), x), lambda x: x, lambda a: a + np.full(3, -0.0, np.float32)),
    Case("add_zero", [((3,), "int32")], lambda x: gb.add(x, 0), lambda x: x, lambda a: a + 0),
    Case("add_zero", [((3,), "int32")], lambda x: gb.add(x, 0.0), lambda x: gb.cast(x,
         "float64"), lambda a: a + 0.0),
    Case("sub_zero", [((4,), "float32")], lambda x: gb.sub(x, 0.0), lambda x: x,
         lambda a: a - _f32(0)),
    Case("mul_one", [((4,), "float32")], lambda x: gb.mul(1.0, x), lambda x: x,
         lambda a: a * _f32(1)),
    Case("div_one", [((4,), "float32")], lambda x: gb.div(x, 1.0), lambda x: x,
         lambda a: a / _f32(1)),
    Case("div_one", [((4,), "int32")], lambda x: gb.div(x, 1), lambda x: gb.cast(x, "float64"),
         lambda a: a / 1),
    Case("zero_sub", [((4,), "float32")], lambda x: gb.sub(-0.0, x), lambda x: gb.neg(x),
         lambda a: _f32(-0.0) - a),
    Case("zero_sub", [((4,), "int32")], lambda x: gb.sub(0, x), lambda x: gb.neg(x),
         lambda a: 0 - a),
    Case("neg_neg", [((4,), "float32")], lambda x: gb.neg(gb.neg(x)), lambda x: x,
         lambda a: np.negative(np.negative(a))),
    Case("add_neg", [((4,), "float32"), ((4,), "float32")], lambda x, y: gb.add(gb.neg(y), x),
         lambda x, y: gb.sub(x, y), lambda a, b: (-b) + a),
    Case("sub_neg", [((4,), "float32"), ((4,), "float32")], lambda x, y: gb.sub(x, gb.neg(y)),
         lambda x, y: gb.add(x, y), lambda a, b: a - (-b)),
    Case("mul_zero_int", [((2, 3), "int32")], lambda x: gb.mul(x, 0),
         lambda x: gb.const(np.zeros((2, 3), np.int32)), lambda a: a * 0),
    Case("mul_zero_int", [((None, 3), "int64")], lambda x: gb.mul(0, x),
         lambda x: gb.zeros_like(x), lambda a: a * 0, [(5, 3)]),
    Case("mul_zero_int", [((3,), "bool")], lambda x: gb.mul(x, gb.const(False)),
         lambda x: gb.const(np.zeros(3, bool)), lambda a: a * False),
    Case("sub_self_int", [((None,), "int32")], lambda x: gb.sub(x, x),
         lambda x: gb.zeros_like(x), lambda a: a - a, [(7,)]),
    Case("where_same", [((4,), "bool"), ((4,), "float32")], lambda c, x: gb.where(c, x, x),
         lambda c, x: x, lambda c, a: np.where(c, a, a)),
    Case("transpose_transpose", [((2, 3, 4), "float32")],
         lambda x: gb.transpose(gb.transpose(x, (1, 2, 0)), (2, 0, 1)), lambda x: x,
         lambda a: a.transpose(1, 2, 0).transpose(2, 0, 1)),
    Case("transpose_transpose", [((2, 3, 4), "float32")],
         lambda x: gb.transpose(gb.transpose(x, (1, 0, 2)), (0, 2, 1)),
         lambda x: gb.transpose(x, (1, 2, 0)),
         lambda a: a.transpose(1, 0, 2).transpose(0, 2, 1)),
    Case("transpose_identity", [((2, 3), "float32")],
         lambda x: apply("transpose", [x], perm=(0, 1)), lambda x: x, lambda a: a),
    Case("reshape_reshape", [((2, 6), "float32")],
         lambda x: gb.reshape(gb.reshape(x, (3, 4)), (4, 3)), lambda x: gb.reshape(x, (4, 3)),
         lambda a: a.reshape(3, 4).reshape(4, 3)),
    Case("reshape_same", [((2, 6), "float32")], lambda x: gb.reshape(x, (2, 6)), lambda x: x,
         lambda a: a.reshape(2, 6)),
    Case("reshape_keepdims", [((None, 5), "float32")],
         lambda x: gb.reshape(gb.sum(x, [0], keepdims=True), (5,)),
         lambda x: gb.sum(x, [0]), lambda a: a.sum(0, keepdims=True).reshape(5), [(4, 5)]),
    Case("reshape_keepdims", [((2, 3, 4), "float32")],
         lambda x: gb.reshape(gb.reduce("max", x, [0, 2], keepdims=True), (3,)),
         lambda x: gb.reduce("max", x, [0, 2]), lambda a: a.max((0, 2), keepdims=True).ravel()),
    Case("elementwise_leading_ones", [((None, 3), "float32"), ((3,), "float32")],
         lambda x, b: gb.add(x, gb.reshape(b, (1, 3))), lambda x, b: gb.add(x, b),
         lambda a, c: a + c.reshape(1, 3), [(4, 3), (3,)]),
    Case("elementwise_leading_ones", [((2, 4, 3), "float32"), ((4, 3), "float32")],
         lambda x, b: gb.mul(gb.expand_dims(b, 0), x), lambda x, b: gb.mul(b, x),
         lambda a, c: c[None] * a),
    Case("squeeze_expand", [((None, 3), "float32")],
         lambda x: gb.squeeze(gb.expand_dims(x, 1), 1), lambda x: x,
         lambda a: np.squeeze(np.expand_dims(a, 1), 1), [(2, 3)]),
    Case("expand_squeeze", [((3, 1, 2), "float32")],
         lambda x: gb.expand_dims(gb.squeeze(x, 1), 1), lambda x: x,
         lambda a: np.expand_dims(np.squeeze(a, 1), 1)),
    Case("cast_cast", [((4,), "int16")],
         lambda x: gb.cast(gb.cast(x, "float64"), "float32"), lambda x: gb.cast(x, "float32"),
         lambda a: a.astype(np.float64).astype(np.float32)),
    Case("cast_cast", [((4,), "float32")],
         lambda x: gb.cast(gb.cast(x, "float64"), "float32"), lambda x: x,
         lambda a: a.astype(np.float64).astype(np.float32)),
    Case("stop_gradient_identity", [((4,), "float32")], lambda x: gb.exp(gb.stop_gradient(x)),
         lambda x: gb.exp(x), lambda a: np.exp(a)),
    Case("broadcast_noop", [((2, 3), "float32"), ((2, 3), "float32")],
         lambda g, x: apply("broadcast_like", [g, x]), lambda g, x: g, lambda a, b: a),
    Case("reduce_no_axes", [((2, 3), "float32")], lambda x: apply("sum", [x], axes=(),
         keepdims=False), lambda x: x, lambda a: np.sum(a, axis=())),
    Case("reduce_no_axes", [((2, 3), "bool")], lambda x: apply("sum", [x], axes=(),
         keepdims=True), lambda x: gb.cast(x, "int32"), lambda a: a.astype(np.int32)),
    Case("const_second", [((4,), "float32")], lambda x: apply("maximum", [gb.const(
         np.float32(0.5)), x]), lambda x: apply("maximum", [x, gb.const(np.float32(0.5))]),
         lambda a: np.maximum(_f32(0.5), a)),
    Case("const_second", [((4,), "int32")], lambda x: apply("eq", [gb.const(np.int32(2)), x]),
         lambda x: apply("eq", [x, gb.const(np.int32(2))]), lambda a: a == 2),
]


def _leaves(case: Case) -> list[Node]:
    return [ph(s, d) for s, d in case.leaves]


def _value(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "bool":
        return RNG.random(shape) < 0.5
    if dtype.startswith("int"):
        return RNG.integers(-5, 6, shape).astype(dtype)
    v = RNG.normal(size=shape).astype(dtype)
    if v.size >= 4:  # the values IEEE arithmetic is picky about
        v.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, -0.0]
    return v


def _ids(case: Case) -> str:
    return case.rule


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_rule_structure(case):
    leaves = _leaves(case)
    stats: dict[str, int] = {}
    (out,) = rewrite([case.build(*leaves)], canonicalize.rules, stats)
    want = case.expect(*leaves)
    assert out is want, f"got {ops(out)}, expected {ops(want)}"
    assert stats.get(case.rule, 0) >= 1, f"rule {case.rule} did not fire: {stats}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_rule_numbers(case):
    leaves = _leaves(case)
    shapes = case.feed_shapes or [s for s, _ in case.leaves]
    vals = [_value(s, d) for s, (_, d) in zip(shapes, case.leaves)]
    node = case.build(*leaves)
    on, off = run_levels([node], dict(zip(leaves, vals)))
    with np.errstate(all="ignore"):
        want = np.asarray(case.ref(*vals))
    assert_close(off[0], want, what="level 0 vs numpy")
    # canonical rewrites may not change a single bit, the sign of a zero included
    assert_close(on[0], off[0], rtol=0, atol=0, what="passes vs level 0")
    assert on[0].dtype == np.dtype(node.dtype)
    # (numpy's sum over no axes adds +0, so sum(-0, axes=()) is +0 there: a reference artifact)
    if on[0].dtype.kind == "f" and case.rule != "reduce_no_axes":
        ok = ~np.isnan(off[0])
        np.testing.assert_array_equal(np.signbit(on[0][ok]), np.signbit(off[0][ok]))


# ---------------------------------------------------------------- what must not be rewritten


def test_float_x_times_zero_and_x_minus_x_are_kept():
    """inf*0, nan*0, inf-inf and nan-nan are NaN: rewriting to 0 would change results."""
    x = ph((4,))
    times_zero, minus_self = gb.mul(x, 0.0), gb.sub(x, x)
    assert rewrite([times_zero, minus_self], canonicalize.rules) == [times_zero, minus_self]
    a = np.array([np.inf, -np.inf, np.nan, 3.0], np.float32)
    on, off = run_levels([times_zero, minus_self], {x: a})
    for got in on + off:
        np.testing.assert_array_equal(np.isnan(got), [True, True, True, False])
        assert got[3] == 0.0
    # what the integer-only rule would have given, had it applied to floats
    assert not np.isnan(np.zeros(4, np.float32)).any()


def test_rules_that_would_change_shape_or_precision_decline():
    x, small = ph((3,)), ph((1,))
    cases = [
        gb.add(small, gb.const(np.zeros(3, np.float32))),  # x + 0 broadcasts x
        gb.cast(gb.cast(x, "int32"), "float32"),  # truncating inner cast
        gb.cast(gb.cast(x, "float16"), "float32"),  # rounding inner cast
        gb.expand_dims(gb.squeeze(ph((3, None)), 1), 1),  # size of axis 1 unknown
        gb.reshape(ph((None, 2)), (-1, 2)),  # same static shape only when fully static
        gb.add(x, gb.const(np.array([0, 1, 0], np.float32))),  # not all zeros
        gb.reshape(gb.sum(ph((2, 6)), [0], keepdims=True), (2, 3)),  # not just dropping axis 0
        gb.add(gb.reshape(x, (1, 3)), 2.0),  # the 1s shape the result: the view stays
        gb.add(gb.reshape(ph((None,)), (1, -1)), ph((2, 1))),  # b's size is not static
    ]
    assert rewrite(cases, canonicalize.rules) == cases
    xs = np.array([1.7, -2.5, 70000.0], np.float32)
    on, off = run_levels(cases[1:3], {x: xs})
    np.testing.assert_array_equal(on[0], [1.0, -2.0, 70000.0])
    np.testing.assert_array_equal(on[1], [np.float16(1.7), -2.5, np.inf])
    assert_close(on[1], off[1])


def test_zero_identities_keep_the_sign_of_zero():
    """IEEE -0 + +0 = +0 and +0 - +0 = +0: for floats only x + (-0), x - (+0) and (-0) - x
    are rewritten; the other forms would flip 1/result between +inf and -inf at x = -0."""
    x = ph((3,))
    kept = [gb.add(x, 0.0), gb.sub(x, -0.0), gb.sub(0.0, x)]
    assert rewrite(kept, canonicalize.rules) == kept
    done = [gb.add(x, -0.0), gb.sub(x, 0.0), gb.sub(-0.0, x)]
    assert rewrite(done, canonicalize.rules) == [x, x, gb.neg(x)]
    xs = np.array([-0.0, 0.0, -np.inf], np.float32)
    recip = [gb.div(1.0, n) for n in kept + done]
    on, off = run_levels(recip, {x: xs})
    with np.errstate(divide="ignore"):
        want = [1 / (xs + np.float32(0)), 1 / (xs - np.float32(-0.0)),
                1 / (np.float32(0) - xs), 1 / xs, 1 / xs, 1 / (-xs)]
    for k, (a, b, w) in enumerate(zip(on, off, want)):
        np.testing.assert_array_equal(a, w, err_msg=f"case {k}")
        np.testing.assert_array_equal(np.signbit(a), np.signbit(w), err_msg=f"case {k}")
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b), err_msg=f"case {k}")
    assert on[0][0] == np.inf and on[3][0] == -np.inf


def test_canonicalize_feeds_later_rules():
    """Canonical operand order lets one-sided patterns match: 1 + sigmoid... and log(1 + x)."""
    x = ph((4,))
    node = gb.log(apply("add", [gb.const(np.float32(1)), x]))
    (out,) = rewrite([node], canonicalize.rules)
    assert out.inputs[0].inputs[1].op.name == "constant"  # constant second


def test_every_canonical_rule_has_cases():
    assert {c.rule for c in CASES} == {r.name for r in canonicalize.rules.rules}
