"""softmax, l2_normalize, bias_add and the cross-entropy losses against tests/np_ref.py."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.harness import Arg, check_op, fixed, ints, onehot, probs, uniform

FLOATS = ("float32", "float64")


@pytest.mark.parametrize("axis", [-1, 0, 1, -2])
def test_softmax(axis):
    check_op("softmax", [(3, 4, 5)], dtypes=FLOATS, axis=axis)


def test_softmax_default_axis_and_extremes():
    check_op("softmax", [(None, 7)])
    x = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    out = check_op("softmax", [(1, 3)], gen=fixed(x))
    np.testing.assert_allclose(out[0], [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("axis", [None, -1, 0, 1, [0, 1]])
def test_l2_normalize(axis):
    check_op("l2_normalize", [(4, 5)], dtypes=FLOATS, axis=axis)


def test_l2_normalize_zero_vector():
    out = check_op("l2_normalize", [(2, 3)], gen=fixed([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]]),
                   axis=1)
    np.testing.assert_allclose(out[0], [[0, 0, 0], [0.6, 0, 0.8]], rtol=1e-6)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("xs,bs", [
    ((4, 3), (3,)),
    ((2, 5, 3), (3,)), ((2, 5, 3), (5, 3)),
    ((2, 4, 5, 3), (3,)), ((2, 4, 5, 3), (4, 5, 3)),
    ((3, 3, 4, 5, 2), (2,)), ((2, 3, 4, 5, 2), (3, 4, 5, 2)),
])
def test_bias_add(fmt, xs, bs):
    if fmt == "channels_first" and len(xs) >= 3:
        # channels_first input (N, C, spatial...), bias (C,) or channels_last (spatial..., C)
        xs = (xs[0], xs[-1]) + xs[1:-1]
    check_op("bias_add", [xs, bs], dtypes=FLOATS, data_format=fmt)


def test_bias_add_default_format_and_errors():
    check_op("bias_add", [(None, 4, 3), (3,)])
    with pytest.raises(ValueError):
        K.bias_add(K.placeholder((2, 3, 4)), K.placeholder((2, 3, 4)))


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_categorical_crossentropy_probs(axis):
    check_op("categorical_crossentropy", [(4, 3, 5), (4, 3, 5)], dtypes=FLOATS,
             gen=[onehot(axis), probs(axis)], axis=axis, batch_none=axis != 0)


@pytest.mark.parametrize("axis", [-1, 1])
def test_categorical_crossentropy_logits(axis):
    check_op("categorical_crossentropy", [(4, 3, 5), (4, 3, 5)], dtypes=FLOATS,
             gen=[onehot(axis), uniform(-5, 5)], axis=axis, from_logits=True)


def test_categorical_crossentropy_unnormalized_and_clipped():
    # outputs are renormalized along the axis, then clipped to [eps, 1 - eps]
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], np.float32)
    o = np.array([[2.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    check_op("categorical_crossentropy", [(3, 3), (3, 3)], gen=[fixed(t), fixed(o)])
    check_op("categorical_crossentropy", [(3, 3), (3, 3)], gen=[fixed(t), probs()],
             batch_none=False)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ts,os_", [((6,), (6, 4)), ((6, 1), (6, 4)), ((2, 3), (2, 3, 4))])
def test_sparse_categorical_crossentropy(from_logits, ts, os_):
    gen_o = uniform(-4, 4) if from_logits else probs()
    check_op("sparse_categorical_crossentropy", [ts, os_],
             dtypes=[("int32", "float32"), ("float32", "float64")],
             gen=[ints(0, 4), gen_o], from_logits=from_logits)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_categorical_crossentropy_axis(from_logits):
    gen_o = uniform(-4, 4) if from_logits else probs(1)
    check_op("sparse_categorical_crossentropy", [(2, 3), (2, 4, 3)],
             dtypes=[("int32", "float32")], gen=[ints(0, 4), gen_o], from_logits=from_logits,
             axis=1)


def test_sparse_categorical_crossentropy_none_dims():
    check_op("sparse_categorical_crossentropy", [(None, None), (None, None, 4)],
             dtypes=[("int32", "float32")], gen=[ints(0, 4), probs()])


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy(from_logits):
    gen_o = uniform(-6, 6) if from_logits else uniform(0, 1)
    check_op("binary_crossentropy", [(5, 3), (5, 3)], dtypes=FLOATS,
             gen=[uniform(0, 1), gen_o], from_logits=from_logits)
    check_op("binary_crossentropy", [(None, 2, 3), (None, 2, 3)],
             gen=[ints(0, 2), gen_o], from_logits=from_logits)


def test_binary_crossentropy_clips_saturated_probabilities():
    t = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    o = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    out = check_op("binary_crossentropy", [(4,), (4,)], gen=[fixed(t), fixed(o)],
                   batch_none=False, rtol=1e-4)
    assert np.all(np.isfinite(out[0])) and out[0][0] > 15


def test_binary_crossentropy_logits_extremes_are_finite():
    t = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    o = np.array([-500.0, 500.0, 500.0, -500.0], np.float32)
    out = check_op("binary_crossentropy", [(4,), (4,)], gen=[fixed(t), fixed(o)],
                   batch_none=False, from_logits=True)
    np.testing.assert_allclose(out[0], [500, 500, 0, 0], atol=1e-6)


def test_unknown_dims():
    check_op("softmax", [(None, None)], axis=0)
    check_op("l2_normalize", [(None, None, 3)], axis=[1, 2])
    check_op("categorical_crossentropy", [(None, None, 4), (None, None, 4)],
             gen=[onehot(), probs()])
    check_op("categorical_crossentropy", [(None, None, 4), (None, None, 4)],
             gen=[onehot(), None], from_logits=True)


def test_floatx_and_epsilon_settings():
    K.set_floatx("float64")
    check_op("exp", [(3, 4)], dtypes=["int32"])
    check_op("mean", [(3, 4)], dtypes=["bool"], axis=1)
    check_op("one_hot", [(5,), Arg(3)], dtypes=["int32"], gen=ints(0, 3))
    K.set_floatx("float32")
    K.set_epsilon(1e-3)
    t = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    o = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    out = check_op("categorical_crossentropy", [(2, 2), (2, 2)], gen=[fixed(t), fixed(o)])
    np.testing.assert_allclose(out[0], [-np.log(np.float32(1 - 1e-3)), -np.log(1e-3)],
                               rtol=1e-6)
    check_op("binary_crossentropy", [(2, 2), (2, 2)], gen=[fixed(t), fixed(o)])
    check_op("sparse_categorical_crossentropy", [(2,), (2, 2)], dtypes=[("int32", "float32")],
             gen=[fixed([0, 1]), fixed(o)])
