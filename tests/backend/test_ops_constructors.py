"""Filled tensors, constants, casts and variable values against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.harness import Arg, check_op, uniform


@pytest.mark.parametrize("name,fill", [("zeros", 0), ("ones", 1)])
@pytest.mark.parametrize("dtype", [None, "float64", "int32", "bool"])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4), [4, 1]])
def test_zeros_ones(name, fill, dtype, shape):
    t = getattr(K, name)(shape, dtype=dtype)
    want = np.full(tuple(shape), fill, dtype=dtype or K.floatx())
    got = K.eval(t)
    assert got.dtype == want.dtype and t.dtype == want.dtype.name
    assert K.int_shape(t) == tuple(shape)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,fill", [("zeros", 0), ("ones", 1)])
def test_zeros_ones_symbolic_shape(name, fill):
    check_op(lambda x: getattr(K, name)(K.shape(x)), [(None, 3)],
             ref=lambda a: np.full(a.shape, fill, np.float32), static_shape=False)


@pytest.mark.parametrize("size,dtype", [(3, None), ((2, 4), "float64"), ((4, 2), "int32"),
                                        (1, "float32")])
def test_eye(size, dtype):
    t = K.eye(size, dtype=dtype)
    nr, nc = size if isinstance(size, tuple) else (size, size)
    want = np.eye(nr, nc, dtype=dtype or K.floatx())
    got = K.eval(t)
    assert got.dtype == want.dtype and t.dtype == want.dtype.name
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name,fill", [("zeros_like", 0), ("ones_like", 1)])
def test_zeros_ones_like(name, fill):
    for dtype in ("float32", "float64", "int32", "bool"):
        check_op(name, [(3, 4)], dtypes=[dtype], ref=lambda a: np.full_like(a, fill))
    check_op(name, [(2, 3)], ref=lambda a, dtype: np.full(a.shape, fill, dtype), dtype="int32")
    check_op(name, [(2, 3)], dtypes=["int32"], ref=lambda a, dtype: np.full(a.shape, fill, dtype),
             dtype="float64")


def test_identity():
    check_op("identity", [(3, 4)], dtypes=["float32", "int32", "bool"], ref=lambda a: a.copy())


@pytest.mark.parametrize("src,dst", [
    ("float32", "int32"), ("float32", "float64"), ("float64", "float32"), ("int32", "float32"),
    ("float32", "bool"), ("bool", "float32"), ("int32", "bool"), ("bool", "int32"),
    ("int32", "int64"), ("float32", "float16"),
])
def test_cast(src, dst):
    # float -> int truncates toward zero; anything -> bool is "nonzero"
    gen = uniform(-3, 3) if src[0] == "f" else None
    check_op("cast", [(4, 5), Arg(dst)], dtypes=[src], gen=gen,
             ref=lambda a, d: (a != 0) if d == "bool" else a.astype(d))


def test_cast_truncates_toward_zero():
    out = K.eval(K.cast(K.constant([-1.7, -0.5, 0.5, 1.7, 2.0]), "int32"))
    np.testing.assert_array_equal(out, [-1, 0, 0, 1, 2])


@pytest.mark.parametrize("value,dtype,shape,want", [
    (3, None, None, np.array(3, np.float32)),
    ([1, 2, 3], "int32", None, np.array([1, 2, 3], np.int32)),
    (np.arange(6.0).reshape(2, 3), "float64", None, np.arange(6.0).reshape(2, 3)),
    (2.5, None, (2, 3), np.full((2, 3), 2.5, np.float32)),
    ([1, 2, 3, 4], "float32", (2, 2), np.array([[1, 2], [3, 4]], np.float32)),
    (True, "bool", None, np.array(True)),
])
def test_constant(value, dtype, shape, want):
    t = K.constant(value, dtype=dtype, shape=shape)
    got = K.eval(t)
    assert got.dtype == want.dtype and t.dtype == want.dtype.name
    assert K.int_shape(t) == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value,dtype", [
    (np.arange(6.0).reshape(2, 3), None), ([[1, 2], [3, 4]], "int32"), (3.5, "float64"),
    (np.ones((2, 1, 3), np.float64), "float32"), ([True, False], "bool"),
])
def test_variable_value_round_trip(value, dtype):
    v = K.variable(value, dtype=dtype)
    want = np.asarray(value, dtype=dtype or K.floatx())
    for got in (K.get_value(v), K.eval(v), K.batch_get_value([v])[0]):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert K.int_shape(v) == want.shape and K.dtype(v) == want.dtype.name
    new = np.asarray(want) * 0 + 1 if want.dtype != bool else ~want
    K.set_value(v, new)
    np.testing.assert_array_equal(K.get_value(v), new)
    K.batch_set_value([(v, want)])
    np.testing.assert_array_equal(K.eval(v), want)
    # the stored value is a copy: mutating the source or the result does not leak in
    got = K.get_value(v)
    if got.ndim:
        got[...] = 0 if want.dtype != bool else False
        np.testing.assert_array_equal(K.get_value(v), want)


def test_variable_from_symbolic_tensor():
    v = K.variable(K.ones((2, 2)) * 3)
    np.testing.assert_array_equal(K.get_value(v), np.full((2, 2), 3, np.float32))


def test_variable_in_a_function():
    v = K.variable(np.arange(4.0).reshape(2, 2))
    x = K.placeholder((None, 2))
    f = K.function([x], [K.dot(x, v)])
    a = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(f([a])[0], a @ np.arange(4.0).reshape(2, 2))
    K.set_value(v, np.eye(2))
    np.testing.assert_allclose(f([a])[0], a)
