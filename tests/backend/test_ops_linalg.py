"""dot (Theano n-D semantics) and batch_dot (Keras 2.3.1 shape rules) against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests import np_ref
from tests.harness import Arg, check_op


@pytest.mark.parametrize("xs,ys", [
    ((2, 3), (3, 4)),
    ((4, 3), (3,)),
    ((3,), (3, 4)),
    ((3,), (3,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (5, 4, 6)),  # Theano n-D: (2, 3, 5, 6)
    ((2, 3), (4, 3, 5)),  # Keras docstring: (2, 4, 5)
    ((2, 3, 4), (4,)),
    ((2, 2, 3, 4), (3, 4, 2)),
])
def test_dot(xs, ys):
    check_op("dot", [xs, ys], dtypes=["float32", "float64"], batch_none=False)


def test_dot_shapes_from_keras_docs():
    assert K.int_shape(K.dot(K.placeholder((32, 28, 3)), K.placeholder((3, 4)))) == (32, 28, 4)
    assert K.int_shape(K.dot(K.placeholder((2, 3)), K.ones((4, 3, 5)))) == (2, 4, 5)
    assert K.int_shape(K.dot(K.placeholder((2, 3, 4)), K.placeholder((5, 4, 6)))) == \
        (2, 3, 5, 6)


def test_dot_batch_none():
    check_op("dot", [(None, 3), (3, 4)])
    check_op("dot", [(None, 5, 3), (3, 4)])
    check_op("dot", [(None, 5, 3), (2, 3, 4)])


def test_dot_int():
    check_op("dot", [(3, 4), (4, 2)], dtypes=["int32"], batch_none=False)


def test_dot_incompatible_shapes():
    with pytest.raises(ValueError):
        K.dot(K.placeholder((2, 3)), K.placeholder((4, 5)))


def test_matmul_reference_is_independent():
    x, y = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(np_ref.dot(x, y), [[20, 23, 26, 29], [56, 68, 80, 92]])


@pytest.mark.parametrize("xs,ys,axes", [
    ((4, 3), (4, 3), 1),  # (4, 1)
    ((4, 3), (4, 3), None),
    ((4, 3), (4, 3), (1, 1)),
    ((4, 3), (4, 3), [-1, -1]),
    ((4, 2), (4, 2, 5), None),  # (4, 5)
    ((4, 2), (4, 2, 5), 1),
    ((4, 5, 2), (4, 2), None),  # (4, 5)
    ((4, 5, 2), (4, 2), (2, 1)),
    ((4, 5, 2), (4, 5, 3), 1),  # (4, 2, 3)
    ((4, 5, 2), (4, 3, 2), (2, 2)),  # (4, 5, 3)
    ((4, 5, 2), (4, 2, 3), None),  # (4, 5, 3)
    ((4, 20, 1), (4, 30, 20), (1, 2)),  # Keras docstring: (4, 1, 30)
    ((4, 2, 3, 5), (4, 5, 6), None),  # (4, 2, 3, 6)
    ((4, 2, 3, 5), (4, 3, 6, 7), (2, 1)),  # (4, 2, 5, 6, 7)
    ((4, 2, 3), (4, 6, 3, 7), (-1, 2)),  # (4, 2, 6, 7)
    ((4, 3, 5), (4, 3), (1, 1)),  # (4, 5)
])
def test_batch_dot(xs, ys, axes):
    check_op("batch_dot", [xs, ys], dtypes=["float32", "float64"], axes=axes)


def test_batch_dot_shapes_from_keras_docs():
    out = K.batch_dot(K.ones((32, 20, 1)), K.ones((32, 30, 20)), axes=(1, 2))
    assert K.int_shape(out) == (32, 1, 30)
    x = K.variable([[1, 2], [3, 4]])
    y = K.variable([[5, 6], [7, 8]])
    np.testing.assert_array_equal(K.eval(K.batch_dot(x, y, axes=1)), [[17], [53]])
    assert K.int_shape(K.batch_dot(K.placeholder((None, 20)), K.placeholder((None, 30, 20)),
                                   axes=(1, 2))) == (None, 30)


@pytest.mark.parametrize("xs,ys,axes", [
    ((3,), (3, 4), None),  # rank < 2
    ((4, 3), (5, 3), None),  # different batch sizes
    ((4, 3), (4, 3), 0),  # the batch axis
    ((4, 3), (4, 5), 1),  # mismatched summed dims
    ((4, 3, 2), (4, 2, 3), [[1], [2]]),  # multiple target dims
])
def test_batch_dot_errors(xs, ys, axes):
    with pytest.raises(ValueError):
        K.batch_dot(K.placeholder(xs), K.placeholder(ys), axes=axes)


def test_batch_dot_arg_form():
    check_op("batch_dot", [(4, 5, 2), (4, 5, 3), Arg(1)])


def test_unknown_contracted_dims():
    check_op("dot", [(2, None), (None, 3)])
    check_op("dot", [(None, None), (None, None)])
    check_op("batch_dot", [(None, None, 3), (None, 3, None)], axes=(2, 1))
    check_op("batch_dot", [(None, None), (None, None)], axes=1)
