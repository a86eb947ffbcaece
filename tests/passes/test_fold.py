"""Constant folding: ops whose inputs are all constants become constants computed with the op's
numpy reference, up to a size cap; variables, placeholders, random draws, print and fill are
never folded."""

from __future__ import annotations

import numpy as np

from symk import backend as K
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.ops.leaves import const_array
from symk.passes import canonicalize
from symk.passes.rewrite import rewrite
from tests.passes.common import ph, run_levels

FOLD = canonicalize.fold_rules


def test_folds_through_each_ops_reference():
    a = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.75]], np.float32)
    c = gb.const(a)
    node = gb.sum(gb.mul(gb.exp(c), gb.transpose(gb.transpose(c, (1, 0)), (1, 0))), [1],
                  keepdims=True)
    stats: dict[str, int] = {}
    (out,) = rewrite([node], FOLD, stats)
    assert out.op.name == "constant" and stats["constant_fold"] == 5
    want = np.sum(np.exp(a) * a, axis=1, keepdims=True)
    np.testing.assert_allclose(const_array(out), want, rtol=1e-6)
    assert const_array(out).dtype == np.float32 and out.shape == (2, 1)


def test_folded_values_have_the_node_dtype():
    i = gb.const(np.array([1, 2, 3], np.int32))
    (e, d, s) = rewrite([gb.exp(i), gb.div(i, 2), apply("sum", [gb.const(np.ones(3, bool))],
                                                          axes=(0,), keepdims=False)], FOLD)
    assert const_array(e).dtype == np.float64
    np.testing.assert_allclose(const_array(e), np.exp([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(const_array(d), [0.5, 1.0, 1.5])
    assert const_array(s).dtype == np.int32 and const_array(s) == 3


def test_static_shape_of_folds_even_for_variables_and_placeholders():
    v = K.variable(np.zeros((2, 3), np.float32))
    x = ph((4, 5))
    a, b = rewrite([gb.shape_of(v.node), gb.shape_of(x)], FOLD)
    np.testing.assert_array_equal(const_array(a), [2, 3])
    np.testing.assert_array_equal(const_array(b), [4, 5])
    dyn = gb.shape_of(ph((None, 5)))
    assert rewrite([dyn], FOLD)[0] is dyn


def test_size_cap():
    cap = canonicalize.FOLD_MAX_ELEMENTS
    big = gb.const(np.ones(cap + 1, np.float32))
    ok = gb.const(np.ones(cap, np.float32))
    too_big, at_cap, reduced = rewrite([gb.exp(big), gb.exp(ok), gb.sum(gb.exp(ok))], FOLD)
    assert too_big.op.name == "exp"  # the result would exceed the cap
    assert at_cap.op.name == "constant"
    assert reduced.op.name == "constant" and np.isclose(const_array(reduced), cap * np.e)


def test_never_folds_variables_placeholders_or_random_ops():
    v = K.variable(np.array([1.0, 2.0], np.float32))
    x = ph((2,))
    shape = gb.const(np.array([2], np.int32))
    rnd = apply("random_uniform", [shape], dtype="float32", seed=3, shape=(2,), minval=0.0,
                maxval=1.0)
    fill = apply("fill", [shape], value=1.0, dtype="float32", shape=(2,))
    printed = apply("print", [gb.const(np.float32(1))], message="x")
    nodes = [gb.exp(v.node), gb.exp(x), gb.mul(rnd, 2.0), fill, printed]
    out = rewrite(nodes, FOLD)
    assert out == nodes
    # a placeholder with a default (the Keras learning phase) is not a constant either
    lp = K.learning_phase()
    node = gb.mul(gb.cast(lp.node, "float32"), 2.0)
    assert rewrite([node], FOLD)[0] is node


def test_random_draws_differ_per_element_after_passes():
    """A folded random op would repeat one value; the draws stay random."""
    r = K.random_uniform((1000,), seed=5)
    y = r * 2.0 + 1.0
    f = K.function([], [y])
    # the random op survives the passes (it is computed in the kernel, not folded)
    assert [n for k in f.fn.schedule.kernels for n in k.nodes if n.op.is_random]
    out = f([])[0]
    assert len(np.unique(out)) > 990 and 1.0 <= out.min() and out.max() <= 3.0


def test_errors_are_left_to_run_time():
    c = gb.const(np.array([1.0, 2.0, 3.0], np.float32))
    bad = apply("gather", [c, gb.const(np.array([5], np.int32))])
    assert rewrite([bad], FOLD)[0] is bad


def test_constant_graph_has_no_kernels_after_passes():
    c = K.constant(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))
    y = K.sum(K.exp(c) / 2.0, axis=0) + K.constant(np.float32(1.0))
    f = K.function([], [y])
    assert f.fn.schedule.steps == []
    want = np.sum(np.exp(np.array([[1.0, 2.0], [3.0, 4.0]])) / 2.0, axis=0) + 1.0
    np.testing.assert_allclose(f([])[0], want, rtol=1e-6)


def test_partially_constant_graph_folds_the_constant_part():
    x = ph((3,))
    c = gb.const(np.array([1.0, 4.0, 9.0], np.float32))
    node = gb.add(x, gb.sqrt(gb.mul(c, 2.0)))
    (out,) = rewrite([node], FOLD)
    assert out.op.name == "add" and const_array(out.inputs[1]) is not None
    on, off = run_levels([node], {x: np.ones(3, np.float32)})
    np.testing.assert_allclose(on[0], 1.0 + np.sqrt(np.array([2.0, 8.0, 18.0])), rtol=1e-6)
    np.testing.assert_array_equal(on[0], off[0])
