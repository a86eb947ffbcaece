"""The ``Tensor`` handle's operators and indexing against numpy."""

from __future__ import annotations

import operator

import numpy as np
import pytest

from symk import backend as K
from tests.harness import check_op, ints, uniform

NUMERIC = ("float32", "float64", "int32")
BINARY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "mod": operator.mod,
}


def _nonzero(rng, shape, dtype):
    v = rng.integers(1, 6, shape) * rng.choice([-1, 1], shape)
    if np.dtype(dtype).kind == "f":
        v = v + rng.uniform(-0.4, 0.4, shape)
    return v.astype(dtype)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_operators(name):
    op = BINARY[name]
    check_op(op, [(4, 5), (4, 5)], ref=op, dtypes=NUMERIC, gen=[None, _nonzero])
    check_op(op, [(3, 4, 5), (5,)], ref=op, gen=[None, _nonzero])


def test_true_division():
    check_op(operator.truediv, [(4, 5), (4, 5)], ref=operator.truediv,
             dtypes=["float32", "float64"], gen=[None, _nonzero])
    check_op(operator.truediv, [(2, 3), (3,)], ref=operator.truediv, gen=[None, _nonzero])


def test_true_division_of_ints_is_float():
    # Python, numpy, TensorFlow and Theano all give a float for int / int
    x, y = K.placeholder((3,), dtype="int32"), K.placeholder((3,), dtype="int32")
    out = K.function([x, y], [x / y])([np.array([1, 7, -3]), np.array([2, 2, 2])])[0]
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out, [0.5, 3.5, -1.5])


def test_power_operator():
    check_op(operator.pow, [(4, 5), (4, 5)], ref=operator.pow, dtypes=["float32", "float64"],
             gen=[uniform(0.5, 2), uniform(-2, 2)])
    check_op(operator.pow, [(4, 5), (4, 5)], ref=operator.pow, dtypes=["int32"],
             gen=[ints(-3, 4), ints(0, 4)])


@pytest.mark.parametrize("scalar", [2, 1.5, -3])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow"])
def test_python_numbers_on_either_side(name, scalar):
    op = getattr(operator, name)
    gen = uniform(0.5, 3) if name in ("pow", "truediv", "floordiv", "mod") else None
    for dtype in ("float32", "float64"):
        check_op(lambda x: op(x, scalar), [(3, 4)], ref=lambda a: op(a, scalar), dtypes=[dtype],
                 gen=gen)
        if name == "pow" and scalar < 0:
            continue  # a negative base with fractional exponents is nan
        check_op(lambda x: op(scalar, x), [(3, 4)], ref=lambda a: op(scalar, a), dtypes=[dtype],
                 gen=gen)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "floordiv", "mod"])
def test_int_tensor_with_python_int(name):
    op = getattr(operator, name)
    check_op(lambda x: op(x, 3), [(3, 4)], ref=lambda a: op(a, np.int32(3)), dtypes=["int32"])
    check_op(lambda x: op(7, x), [(3, 4)], ref=lambda a: op(np.int32(7), a), dtypes=["int32"],
             gen=_nonzero)


def test_unary_operators():
    check_op(operator.neg, [(3, 4)], ref=operator.neg, dtypes=NUMERIC)
    check_op(operator.pos, [(3, 4)], ref=operator.pos)
    check_op(operator.abs, [(3, 4)], ref=np.abs, dtypes=NUMERIC)


@pytest.mark.parametrize("xs,ys", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((4,), (4, 3)),
                                   ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_operator(xs, ys):
    check_op(operator.matmul, [xs, ys], ref=lambda a, b: np.matmul(a.astype(np.float64), b)
             .astype(a.dtype), dtypes=["float32", "float64"], batch_none=False)
    c = np.arange(np.prod(xs), dtype=np.float32).reshape(xs) / 10
    check_op(lambda y: c @ y, [ys], ref=lambda b: np.matmul(c.astype(np.float64), b)
             .astype(np.float32), batch_none=False)  # numpy array on the left: __rmatmul__


def test_comparison_operators_build_nodes():
    for name in ("lt", "le", "gt", "ge"):
        op = getattr(operator, name)
        check_op(op, [(3, 4), (3, 4)], ref=op, dtypes=["int32", "float32"])
        check_op(lambda x: op(x, 0), [(3, 4)], ref=lambda a: op(a, 0), dtypes=["int32"])


def test_identity_equality_stays_python():
    x = K.placeholder((2,))
    y = K.placeholder((2,))
    assert x == x and x != y and (x == y) is False
    assert len({x, y, x}) == 2


KEYS = [
    0, -1, 2, slice(1, 3), slice(None, None, 2), slice(None, None, -1), slice(1, -1, 2),
    slice(-3, None), slice(4, 0, -2), slice(-1, -5, -1), (1, 2), (-1, -2), (slice(None), 1),
    (Ellipsis, 0), (Ellipsis, -1), (0, Ellipsis), (0, Ellipsis, 1), (None,), (None, 1),
    (slice(None), None, 1), (Ellipsis, None), (1, slice(None, None, -1), None),
    (slice(1, 2), slice(0, 5, 3), -2), (Ellipsis,), (slice(10, 20),), (slice(-10, 2),),
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_getitem(key):
    check_op(lambda x: x[key], [(5, 4, 3)], ref=lambda a: a[key], dtypes=["float32", "int32"],
             batch_none=False)


@pytest.mark.parametrize("key", [0, -1, slice(1, 3), (slice(None), 2), (Ellipsis, 1),
                                 (None, slice(None, None, -1)), slice(None, None, 2)],
                         ids=repr)
def test_getitem_batch_none(key):
    check_op(lambda x: x[key], [(None, 4, 3)], ref=lambda a: a[key], static_shape=False,
             batch_sizes=(3, 5))


def test_getitem_errors():
    x = K.placeholder((2, 3))
    with pytest.raises(ValueError):
        x[0, 0, 0]
    with pytest.raises(ValueError):
        x[..., 0, ...]
    with pytest.raises((ValueError, IndexError)):
        x[5]


def test_numpy_values_on_either_side():
    c = np.array([1.0, -2.0, 3.0], np.float32)
    check_op(lambda x: c + x, [(2, 3)], ref=lambda a: c + a)
    check_op(lambda x: x * c, [(2, 3)], ref=lambda a: a * c)
    check_op(lambda x: c - x, [(2, 3)], ref=lambda a: c - a)
    check_op(lambda x: np.float32(2.0) * x, [(2, 3)], ref=lambda a: np.float32(2.0) * a)
    check_op(lambda x: x / np.float32(4.0), [(2, 3)], ref=lambda a: a / np.float32(4.0))
