"""Strict arguments: every bad argument to a K function raises a symk error naming the function,
the argument and the caller's line (never a raw numpy/Python exception, never a silently wrong
result); valid edge cases (numpy ints, size -1, whole floats into int variables) still work."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError, DTypeError, ShapeError, SymkError
from tests.backend.test_errors import check

HERE = os.path.basename(__file__)


def _here() -> str:
    """``test_strict_args.py:<line>`` of the caller's line."""
    return f"{HERE}:{sys._getframe(1).f_lineno}"


def _raises(call, kind: type, fname: str, *needles: str) -> str:
    """Run the one-line lambda ``call``; its error must be ``kind`` and name ``fname``, the
    lambda's line and ``needles``."""
    with pytest.raises(SymkError) as e:
        call()
    return check(e, kind, fname, f"{HERE}:{call.__code__.co_firstlineno}", *needles)


def _ints(shape=(2, 3)):
    return K.variable(np.arange(np.prod(shape)).reshape(shape), dtype="int32", name="iv")


# ---------------------------------------------------------------- 1-2: constants and variables


@pytest.mark.parametrize("call,kind,fname,needle", [
    (lambda: K.constant(2**40, dtype="int32"), ArgumentError, "K.constant", "1099511627776"),
    (lambda: K.constant([1.5, 2.0], dtype="int32"), ArgumentError, "K.constant", "1.5"),
    (lambda: K.constant(2**70), ArgumentError, "K.constant", "int64"),
    (lambda: K.constant(1 + 2j), DTypeError, "K.constant", "complex"),
    (lambda: K.constant("abc"), DTypeError, "K.constant", "strings"),
    (lambda: K.constant(1.0, shape=(2, -1)), ArgumentError, "K.constant", "shape"),
    (lambda: K.constant([1.0, 2.0, 3.0], shape=(2, 2)), ShapeError, "K.constant", "(2, 2)"),
    (lambda: K.variable(np.array([2**40]), dtype="int32"), ArgumentError, "K.variable", "int32"),
    (lambda: K.variable(np.array([0.5]), dtype="int32"), ArgumentError, "K.variable", "0.5"),
    (lambda: K.variable(np.array([np.nan]), dtype="int64"), ArgumentError, "K.variable", "nan"),
    (lambda: K.variable([0, 2], dtype="bool"), ArgumentError, "K.variable", "bool"),
    (lambda: K.variable(np.array([1 + 2j])), DTypeError, "K.variable", "complex"),
    (lambda: K.variable(None), DTypeError, "K.variable", "object"),
    (lambda: K.variable(np.array([object()])), DTypeError, "K.variable", "object"),
    (lambda: K.variable(np.array(["a", "b"])), DTypeError, "K.variable", "strings"),
])
def test_bad_constant_and_variable_values(call, kind, fname, needle):
    _raises(call, kind, fname, needle)


def test_valid_constant_and_variable_values():
    np.testing.assert_array_equal(K.eval(K.constant(2**31 - 1, dtype="int32")), 2**31 - 1)
    v = K.variable(np.array([1.0, -2.0]), dtype="int32")
    assert K.get_value(v).dtype == np.int32
    np.testing.assert_array_equal(K.get_value(v), [1, -2])
    np.testing.assert_array_equal(K.get_value(K.variable([0, 1], dtype="bool")), [False, True])
    a = np.arange(4.0, dtype=np.float32)
    v = K.variable(a)
    a[0] = 7.0  # the variable holds a copy
    np.testing.assert_array_equal(K.get_value(v), [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(K.eval(K.constant(2.0, shape=(2, 2))), np.full((2, 2), 2.0))


def test_python_scalar_that_does_not_fit_the_tensor_dtype():
    x = K.placeholder((2,), dtype="int8", name="small")
    _raises(lambda: K.maximum(x, 1000), ArgumentError, "K.maximum", "int8", "1000")
    _raises(lambda: K.pow(K.placeholder((2,)), 1j), DTypeError, "K.pow", "complex")


# ---------------------------------------------------------------- 3: set_value


@pytest.mark.parametrize("value,kind,needle", [
    (np.full((2, 3), object()), DTypeError, "object"),
    (np.full((2, 3), "a"), DTypeError, "strings"),
    (np.full((2, 3), 1j), DTypeError, "complex"),
    (np.full((2, 3), np.nan), ArgumentError, "nan"),
    (np.full((2, 3), np.inf), ArgumentError, "inf"),
    (np.full((2, 3), 2**40), ArgumentError, "1099511627776"),
    (np.full((2, 3), 1.5), ArgumentError, "1.5"),
])
def test_set_value_refuses_values_an_int_variable_cannot_hold(value, kind, needle):
    v = _ints()
    _raises(lambda: K.set_value(v, value), kind, "K.set_value", f"'{v.name}'", needle)
    np.testing.assert_array_equal(K.get_value(v), np.arange(6).reshape(2, 3))


def test_set_value_bool_variable_takes_only_0_and_1():
    m = K.variable([0, 1], dtype="bool", name="mask")
    _raises(lambda: K.set_value(m, [1, 2]), ArgumentError, "K.set_value", m.name, "bool")
    K.set_value(m, np.array([1.0, 0.0]))
    np.testing.assert_array_equal(K.get_value(m), [True, False])


def test_set_value_wrong_shape():
    v = K.variable(np.zeros((2, 3)), name="v_strict")
    _raises(lambda: K.set_value(v, np.zeros((3, 2))), ShapeError, "K.set_value", v.name,
            "(2, 3)", "(3, 2)")
    np.testing.assert_array_equal(K.get_value(v), np.zeros((2, 3)))


def test_set_value_valid_casts():
    v = _ints()
    K.set_value(v, np.arange(6.0).reshape(2, 3) * 2)  # whole floats into int32
    assert K.get_value(v).dtype == np.int32
    np.testing.assert_array_equal(K.get_value(v), np.arange(6).reshape(2, 3) * 2)
    f = K.variable(np.zeros(()), name="lr")
    K.set_value(f, 0.25)  # a Python float into a float32 scalar (Keras's optimizers)
    assert K.get_value(f).dtype == np.float32 and K.get_value(f) == 0.25
    g = K.variable(np.zeros((2,)))
    K.set_value(g, np.array([1e-3, 2.5], np.float64))
    np.testing.assert_allclose(K.get_value(g), np.array([1e-3, 2.5], np.float32))


def test_batch_set_value_needs_pairs():
    v = _ints()
    _raises(lambda: K.batch_set_value([(v,)]), ArgumentError, "K.batch_set_value", "pair")
    _raises(lambda: K.batch_set_value([v]), ArgumentError, "K.batch_set_value", "pair")
    K.batch_set_value([(v, np.ones((2, 3)))])
    np.testing.assert_array_equal(K.get_value(v), np.ones((2, 3)))


# ---------------------------------------------------------------- 4: slice


@pytest.fixture
def m():
    return K.variable(np.arange(12.0).reshape(3, 4), name="m")


@pytest.mark.parametrize("call,kind,needle", [
    (lambda t: K.slice(t, (0, 1), (2, 4)), ShapeError, "size 4"),
    (lambda t: K.slice(t, (4, 0), (-1, 1)), ShapeError, "size 3"),
    (lambda t: K.slice(t, (-1, 0), (1, 4)), ArgumentError, "start"),
    (lambda t: K.slice(t, (0, 0), (1, -2)), ArgumentError, "size"),
    (lambda t: K.slice(t, (0.5, 0), (1, 1)), ArgumentError, "start"),
    (lambda t: K.slice(t, (0,), (1,)), ShapeError, "one entry per"),
])
def test_slice_bad_arguments(m, call, kind, needle):
    with pytest.raises(SymkError) as e:
        call(m)
    check(e, kind, "K.slice", f"{HERE}:{call.__code__.co_firstlineno}", needle)


def test_slice_valid_windows_match_numpy(m):
    a = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(K.eval(K.slice(m, (1, 1), (-1, 2))), a[1:, 1:3])
    np.testing.assert_array_equal(K.eval(K.slice(m, (0, 4), (3, 0))), a[:, 4:4])
    np.testing.assert_array_equal(K.eval(K.slice(m, np.array([2, 0]), (np.int64(1), -1))),
                                  a[2:3, :])


def test_slice_of_an_unknown_dim_is_checked_at_run_time():
    p = K.placeholder((None, 3), name="rows")
    y, at = K.slice(p, (1, 0), (2, 3)), _here()
    assert y.shape == (2, 3)
    f = K.function([p], [y])
    a = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(f([a])[0], a[1:3])
    with pytest.raises(SymkError) as e:
        f([a[:2]])  # rows 1..2 of a 2-row batch: TensorFlow fails, symk must not truncate
    check(e, ShapeError, "K.slice", at, "size 2")


# ---------------------------------------------------------------- 5-7: counts and shapes


@pytest.mark.parametrize("call,kind,fname", [
    (lambda: K.one_hot(K.constant([0, 1], dtype="int32"), -3), ArgumentError, "K.one_hot"),
    (lambda: K.one_hot(K.constant([0, 1], dtype="int32"), 0), ArgumentError, "K.one_hot"),
    (lambda: K.one_hot(K.constant([0, 1], dtype="int32"), 2.0), ArgumentError, "K.one_hot"),
    (lambda: K.one_hot(K.constant([0, 1], dtype="int32"), "3"), ArgumentError, "K.one_hot"),
    (lambda: K.tile(K.ones((2, 2)), [1.5, 1.5]), ArgumentError, "K.tile"),
    (lambda: K.tile(K.ones((2, 2)), (-1, 2)), ArgumentError, "K.tile"),
    (lambda: K.tile(K.ones((2, 2)), (True, 2)), ArgumentError, "K.tile"),
    (lambda: K.repeat_elements(K.ones((2, 2)), 1.5, 0), ArgumentError, "K.repeat_elements"),
    (lambda: K.repeat_elements(K.ones((2, 2)), -1, 1), ArgumentError, "K.repeat_elements"),
    (lambda: K.repeat(K.ones((2, 2)), 2.5), ArgumentError, "K.repeat"),
    (lambda: K.zeros((2, -1)), ArgumentError, "K.zeros"),
    (lambda: K.ones((2, 1.5)), ArgumentError, "K.ones"),
    (lambda: K.eye(-1), ArgumentError, "K.eye"),
    (lambda: K.eye((2, 3, 4)), ArgumentError, "K.eye"),
    (lambda: K.random_uniform((2, -1)), ArgumentError, "K.random_uniform"),
    (lambda: K.random_normal((2, 1.5)), ArgumentError, "K.random_normal"),
    (lambda: K.random_uniform_variable((2, -1), 0, 1), ArgumentError,
     "K.random_uniform_variable"),
    (lambda: K.placeholder(shape=(2, -1)), ArgumentError, "K.placeholder"),
    (lambda: K.placeholder(shape=(2, 1.5)), ArgumentError, "K.placeholder"),
    (lambda: K.placeholder(ndim=-1), ArgumentError, "K.placeholder"),
    (lambda: K.reshape(K.ones((2, 3)), (-1, -1)), ShapeError, "K.reshape"),
    (lambda: K.reshape(K.ones((2, 3)), (2.0, 3)), ArgumentError, "K.reshape"),
    (lambda: K.reshape(K.ones((2, 3)), (-2, -3)), ArgumentError, "K.reshape"),
    (lambda: K.arange(0, 10, 0), ArgumentError, "K.arange"),
    (lambda: K.arange("a", 10), ArgumentError, "K.arange"),
    (lambda: K.temporal_padding(K.ones((1, 2, 3)), (-1, 1)), ArgumentError,
     "K.temporal_padding"),
    (lambda: K.spatial_2d_padding(K.ones((1, 2, 2, 1)), ((1, 1),)), ArgumentError,
     "K.spatial_2d_padding"),
    (lambda: K.pool2d(K.ones((1, 4, 4, 1)), (2.5, 2)), ArgumentError, "K.pool2d"),
    (lambda: K.resize_images(K.ones((1, 2, 2, 1)), -2, 2, "channels_last"), ArgumentError,
     "K.resize_images"),
    (lambda: K.conv2d(K.ones((1, 4, 4, 1)), K.ones((2, 2, 1, 1)), strides=(0, 1)),
     ArgumentError, "K.conv2d"),
])
def test_bad_counts_and_shapes(call, kind, fname):
    msg = _raises(call, kind, fname)
    assert "negative dimensions" not in msg


def test_counts_given_as_numpy_ints_still_work():
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    x = K.constant(a)
    np.testing.assert_array_equal(K.eval(K.tile(x, (np.int64(2), np.int32(1)))), np.tile(a, (2, 1)))
    np.testing.assert_array_equal(K.eval(K.tile(x, np.array([1, 2]))), np.tile(a, (1, 2)))
    np.testing.assert_array_equal(K.eval(K.repeat_elements(x, np.int64(2), 1)),
                                  np.repeat(a, 2, axis=1))
    np.testing.assert_array_equal(K.eval(K.one_hot(K.constant([0, 2], dtype="int32"),
                                                    np.int64(3))), np.eye(3)[[0, 2]])
    np.testing.assert_array_equal(K.eval(K.reshape(x, (-1, np.int64(2)))), a.reshape(-1, 2))
    np.testing.assert_array_equal(K.eval(K.zeros((np.int64(2), 0))), np.zeros((2, 0)))
    np.testing.assert_array_equal(K.eval(K.eye(np.int64(2))), np.eye(2))
    np.testing.assert_array_equal(K.eval(K.arange(1, 10, np.int64(3))), np.arange(1, 10, 3))
    np.testing.assert_array_equal(K.eval(K.tile(x, (0, 1))), np.tile(a, (0, 1)))
    assert K.placeholder(shape=(None, np.int64(3))).shape == (None, 3)
    np.testing.assert_array_equal(K.eval(K.temporal_padding(K.ones((1, 1, 1)), (0, 2))),
                                  np.pad(np.ones((1, 1, 1)), ((0, 0), (0, 2), (0, 0))))


# ---------------------------------------------------------------- 8: numeric scalars


@pytest.mark.parametrize("call,fname", [
    (lambda v: K.relu(v, alpha="x"), "K.relu"),
    (lambda v: K.relu(v, max_value="6"), "K.relu"),
    (lambda v: K.relu(v, threshold=None), "K.relu"),
    (lambda v: K.elu(v, alpha="x"), "K.elu"),
    (lambda v: K.clip(v, "a", 1.0), "K.clip"),
    (lambda v: K.pow(v, "x"), "K.pow"),
    (lambda v: K.maximum(v, "x"), "K.maximum"),
    (lambda v: K.dropout(v, "x"), "K.dropout"),
    (lambda v: K.random_uniform((2,), minval="a"), "K.random_uniform"),
    (lambda v: K.random_binomial((2,), p="x"), "K.random_binomial"),
    (lambda v: K.truncated_normal((2,), stddev=[1.0, 2.0]), "K.truncated_normal"),
    (lambda v: K.batch_normalization(v, 0.0, 1.0, None, None, epsilon="e"),
     "K.batch_normalization"),
])
def test_non_numeric_scalars(call, fname):
    v = K.variable(np.ones((2, 3)), name="vs")
    with pytest.raises(SymkError) as e:
        call(v)
    msg = check(e, SymkError, fname, f"{HERE}:{call.__code__.co_firstlineno}")
    assert isinstance(e.value, (ArgumentError, DTypeError))
    assert "could not convert" not in msg


def test_numeric_scalars_as_keras_passes_them_still_work():
    a = np.array([[-2.0, -0.5, 0.5, 8.0]], np.float32)
    x = K.constant(a)
    alpha = np.asarray(0.1, np.float32)  # Keras's LeakyReLU: K.cast_to_floatx(alpha)
    np.testing.assert_allclose(K.eval(K.relu(x, alpha=alpha)), np.where(a > 0, a, 0.1 * a),
                               rtol=1e-6)
    np.testing.assert_allclose(K.eval(K.relu(x, max_value=np.float64(6), threshold=0)),
                               np.clip(a, 0, 6))
    np.testing.assert_allclose(K.eval(K.elu(x, np.float32(1.0))),
                               np.where(a > 0, a, np.expm1(a)), rtol=1e-6)
