"""Reductions and scans of K against the numpy references of tests/np_ref.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.harness import check_op, fixed, uniform

AXES = [None, 0, 1, -1, -2, [0, 2], [-1, 0], (1, 2), [0, 1, 2]]


@pytest.mark.parametrize("name", ["sum", "max", "min", "mean", "prod", "var", "std",
                                  "logsumexp"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_float_reductions(name, axis, keepdims):
    gen = uniform(0.5, 1.5) if name == "prod" else None
    check_op(name, [(3, 4, 5)], gen=gen, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name", ["sum", "max", "min", "mean", "prod", "var", "std",
                                  "logsumexp"])
def test_float_reductions_float64_and_2d(name):
    gen = uniform(0.5, 1.5) if name == "prod" else None
    check_op(name, [(6, 4)], dtypes=["float64"], gen=gen, axis=1)
    check_op(name, [(6, 4)], gen=gen)
    check_op(name, [(None, 4)], gen=gen, axis=-1, keepdims=True)


@pytest.mark.parametrize("name", ["sum", "max", "min", "prod", "cumsum", "cumprod"])
def test_int_reductions_keep_dtype(name):
    check_op(name, [(4, 5)], dtypes=["int32"], axis=1)
    if name in ("sum", "max", "min", "prod"):
        check_op(name, [(4, 5)], dtypes=["int32"], axis=None, keepdims=True)


@pytest.mark.parametrize("name", ["mean", "var", "std"])
def test_bool_mean_var_are_floatx(name):
    check_op(name, [(4, 5)], dtypes=["bool"], axis=0)


@pytest.mark.parametrize("name", ["any", "all"])
@pytest.mark.parametrize("dtype", ["bool", "float32", "int32"])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, True), (-1, False), ([0, 2], True)])
def test_any_all(name, dtype, axis, keepdims):
    # mostly-zero ints/floats so that both outcomes occur
    def gen(rng, shape, dt):
        return (rng.integers(0, 2, shape) * rng.integers(0, 2, shape)).astype(dt)
    check_op(name, [(3, 2, 4)], dtypes=[dtype], gen=gen, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_argmax_argmin(name, axis):
    check_op(name, [(3, 4, 5)], axis=axis)
    check_op(name, [(6, 7)], dtypes=["int32"], axis=axis if axis in (0, -1) else 1)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_ties_take_the_first(name):
    out = check_op(name, [(2, 4)], gen=fixed([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, -1.0, -1.0]]),
                   batch_none=False)
    assert out[0].tolist() == ([1, 0] if name == "argmax" else [3, 2])
    check_op(name, [(None, 4)], gen=fixed([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_cumulative(name, axis):
    check_op(name, [(3, 4, 2)], dtypes=["float32", "float64"], gen=uniform(0.5, 1.5), axis=axis)


def test_cumulative_default_axis_is_zero():
    check_op("cumsum", [(4, 3)])
    check_op("cumprod", [(4, 3)], gen=uniform(0.5, 1.5))


def test_logsumexp_is_stable():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [0.0, -np.inf]], np.float32)
    out = check_op("logsumexp", [(3, 2)], gen=fixed(x), batch_none=False, axis=1)
    np.testing.assert_allclose(out[0], [1000 + np.log(2), -1000 + np.log(2), 0.0], rtol=1e-6)


def test_var_std_known_values():
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    assert check_op("var", [(1, 4)], gen=fixed(x), axis=1)[0].tolist() == [1.25]
    np.testing.assert_allclose(check_op("std", [(1, 4)], gen=fixed(x), axis=-1)[0],
                               [np.sqrt(1.25)])


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "max", "logsumexp", "prod"])
@pytest.mark.parametrize("axis", [[0, 1], 1, None, -1])
def test_reductions_over_unknown_dims(name, axis):
    gen = uniform(0.5, 1.5) if name == "prod" else None
    check_op(name, [(None, None, 3)], gen=gen, axis=axis, keepdims=axis == 1)
