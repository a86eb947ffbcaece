"""Elementwise K functions against the numpy references of tests/np_ref.py."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests import np_ref
from tests.harness import Arg, check_op, fixed, uniform

FLOATS = ("float32", "float64")
NUMERIC = ("float32", "float64", "int32")


@pytest.mark.parametrize("name", ["abs", "square", "sign"])
def test_numeric_unary(name):
    check_op(name, [(4, 3)], dtypes=NUMERIC)
    check_op(name, [(2, 3, 4)])


@pytest.mark.parametrize("name", ["exp", "sin", "cos", "tanh", "sigmoid", "hard_sigmoid",
                                  "softplus", "softsign"])
def test_float_unary(name):
    check_op(name, [(4, 3)], dtypes=FLOATS, gen=uniform(-4, 4))
    check_op(name, [(None, 2, 3)])


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh", "softplus"])
def test_float_unary_of_int_is_floatx(name):
    check_op(name, [(3, 4)], dtypes=["int32"])


def test_log():
    check_op("log", [(4, 3)], dtypes=FLOATS, gen=uniform(0.01, 5))


def test_sqrt_clips_negatives_to_zero():
    check_op("sqrt", [(4, 5)], dtypes=FLOATS, gen=uniform(-3, 3))
    out = check_op("sqrt", [(3,)], gen=fixed([-4.0, 0.0, 9.0]), batch_none=False)
    np.testing.assert_array_equal(out[0], [0.0, 0.0, 3.0])


def test_round_half_to_even():
    vals = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51, 3.7], np.float32)
    out = check_op("round", [(9,)], dtypes=FLOATS, gen=fixed(vals), batch_none=False)
    np.testing.assert_array_equal(out[0], [-2, -2, -0, 0, 2, 2, 0, -1, 4])
    check_op("round", [(4, 6)], dtypes=FLOATS, gen=uniform(-5, 5))


@pytest.mark.parametrize("a", [2, 3, 0.5, -1.0])
def test_pow(a):
    check_op("pow", [(4, 3), Arg(a)], dtypes=FLOATS, gen=uniform(0.5, 2))


def test_pow_int():
    check_op("pow", [(4, 3), Arg(2)], dtypes=["int32"])


def test_pow_tensor_exponent():
    check_op("pow", [(4, 3), (4, 3)], gen=[uniform(0.5, 2), uniform(-2, 2)], ref=np.power)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (0, 1), (1.0, -1.0), (None, 0.3), (-0.3, None)])
def test_clip(lo, hi):
    check_op("clip", [(5, 4), Arg(lo), Arg(hi)], dtypes=FLOATS)


def test_clip_max_below_min_gives_min():
    out = check_op("clip", [(3,), Arg(2.0), Arg(1.0)], gen=fixed([0.0, 1.5, 3.0]),
                   batch_none=False)
    np.testing.assert_array_equal(out[0], [2.0, 2.0, 2.0])


def test_clip_int():
    check_op("clip", [(5, 4), Arg(-2), Arg(3)], dtypes=["int32"])


def test_clip_tensor_bounds():
    check_op("clip", [(4, 3), (4, 3), (4, 3)], gen=[None, uniform(-1, 0), uniform(0, 1)],
             ref=lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi))


COMPARISONS = ["equal", "not_equal", "greater", "greater_equal", "less", "less_equal"]


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons(name):
    # small ints make ties likely, so equality cases are exercised
    check_op(name, [(4, 5), (4, 5)], dtypes=["int32", "float32", "float64"])
    check_op(name, [(3, 4), (4,)], dtypes=["int32"])
    check_op(name, [(3, 4), Arg(0)], dtypes=["int32"])
    check_op(name, [(3, 4), Arg(0.25)], gen=fixed([[0.25, -1.0, 2.0, 0.25]] * 3),
             batch_none=False)


def test_equal_bool():
    check_op("equal", [(4, 3), (4, 3)], dtypes=["bool"])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum(name):
    check_op(name, [(4, 5), (4, 5)], dtypes=NUMERIC)
    check_op(name, [(2, 3, 4), (3, 1)])
    check_op(name, [(3, 4), Arg(0.1)])


@pytest.mark.parametrize("kw", [
    {}, {"alpha": 0.3}, {"alpha": 1.5}, {"max_value": 1.0}, {"max_value": 6},
    {"max_value": 6.0}, {"threshold": 0.5},
    {"alpha": 0.2, "max_value": 1.5}, {"alpha": 0.1, "threshold": -0.5},
    {"alpha": 0.25, "max_value": 2.0, "threshold": 0.5}, {"threshold": -1.0, "max_value": 0.5},
])
def test_relu(kw):
    check_op("relu", [(6, 5)], dtypes=FLOATS, gen=uniform(-8, 8), **kw)


def test_relu_known_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0, 7.0], np.float32)
    out = check_op("relu", [(7,)], gen=fixed(x), batch_none=False, alpha=0.5, max_value=2.0,
                   threshold=0.5)
    # x > 0.5 keeps x (clipped to 2), else 0; minus 0.5 * relu(0.5 - x)
    np.testing.assert_allclose(out[0], [-1.25, -0.5, -0.25, 0.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu(alpha):
    check_op("elu", [(5, 4)], dtypes=FLOATS, gen=uniform(-4, 4), alpha=alpha)


def test_sigmoid_extremes_are_finite():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], np.float32)
    out = check_op("sigmoid", [(5,)], gen=fixed(x), batch_none=False, atol=1e-30)
    assert np.all(np.isfinite(out[0]))
    out = check_op("softplus", [(5,)], gen=fixed(x), batch_none=False)
    assert np.all(np.isfinite(out[0]))


# ---------------------------------------------------------------- switch


def test_switch_elementwise_condition():
    check_op("switch", [(4, 3), (4, 3), (4, 3)], dtypes=[("bool", "float32", "float32")])
    check_op("switch", [(4, 3), (4, 3), (4, 3)], dtypes=[("float32", "float64", "float64")])


def test_switch_lower_rank_condition():
    # the condition is aligned with the leading axes of the branches
    check_op("switch", [(4,), (4, 3), (4, 3)], dtypes=[("bool", "float32", "float32")])
    check_op("switch", [(2, 3), (2, 3, 4), (2, 3, 4)], dtypes=[("bool", "float32", "float32")])
    check_op("switch", [(2,), (2, 3, 4), (2, 3, 4)], dtypes=[("int32", "float32", "float32")])


@pytest.mark.parametrize("value", [0, 1])
def test_switch_scalar_condition(value):
    check_op("switch", [(), (4, 3), (4, 3)], dtypes=[("bool", "float32", "float32")],
             gen=[fixed(value), None, None])


def test_switch_python_condition_and_callables():
    x = K.placeholder((2, 3))
    y = K.placeholder((2, 3))
    f = K.function([x, y], [K.switch(K.constant(True, "bool"), lambda: x * 2, lambda: y)])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(f([a, -a])[0], a * 2)
    cond = K.placeholder((), dtype="bool")
    g = K.function([cond, x, y], [K.switch(cond, lambda: x + 1, lambda: y - 1)])
    np.testing.assert_array_equal(g([True, a, a])[0], a + 1)
    np.testing.assert_array_equal(g([False, a, a])[0], a - 1)


def test_switch_condition_rank_too_high():
    with pytest.raises(ValueError):
        K.switch(K.placeholder((2, 3, 4), dtype="bool"), K.placeholder((2, 3)),
                 K.placeholder((2, 3)))


def test_np_ref_relu_matches_definition():
    # the reference itself, against hand-computed values (TF leaky relu when only alpha)
    x = np.array([-2.0, 3.0])
    np.testing.assert_allclose(np_ref.relu(x, alpha=0.1), [-0.2, 3.0])
