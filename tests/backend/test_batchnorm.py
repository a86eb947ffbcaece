"""batch_normalization and normalize_batch_in_training against numpy written here, for 2-D to
5-D inputs, both data formats (per-channel parameters of shape (C,) or already broadcast),
reduction axes other than the last, missing gamma/beta and unknown dims."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.harness import Arg, check_op, uniform

FLOATS = ("float32", "float64")
POS = uniform(0.2, 2.0)


def _param_shape(xshape, axis, p):
    """How a (C,) parameter lines up with x: along ``axis`` (Keras/TF's fused NCHW path and
    symk), or as given when it is already broadcast (ndim > 1)."""
    if p.ndim != 1:
        return p
    shape = [1] * len(xshape)
    shape[axis] = p.shape[0]
    return p.reshape(shape)


def np_batch_normalization(x, mean, var, beta, gamma, axis=-1, epsilon=1e-3):
    m, v = _param_shape(x.shape, axis, mean), _param_shape(x.shape, axis, var)
    y = (x.astype(np.float64) - m) / np.sqrt(v + epsilon)
    if gamma is not None:
        y = y * _param_shape(x.shape, axis, gamma)
    if beta is not None:
        y = y + _param_shape(x.shape, axis, beta)
    return y.astype(x.dtype)


@pytest.mark.parametrize("xshape,axis,pshape", [
    ((5, 3), -1, (3,)),                      # Dense: 2-D
    ((5, 3), 1, (3,)),
    ((2, 4, 5, 3), -1, (3,)),                # NHWC (TF's fused NHWC path)
    ((2, 4, 5, 3), 3, (3,)),
    ((2, 3, 4, 5), 1, (3,)),                 # NCHW with (C,) parameters (fused NCHW path)
    ((2, 3, 4, 5), 1, (1, 3, 1, 1)),         # NCHW as the Keras layer calls it (broadcast)
    ((2, 3, 4), 1, (1, 3, 1)),               # 3-D channels_first
    ((2, 4, 3), -1, (3,)),
    ((2, 3, 2, 2, 4), 1, (1, 3, 1, 1, 1)),   # 5-D channels_first
])
def test_batch_normalization(xshape, axis, pshape):
    check_op("batch_normalization", [xshape, pshape, pshape, pshape, pshape],
             ref=np_batch_normalization, dtypes=FLOATS,
             gen=[None, None, POS, None, None], axis=axis, epsilon=1e-3, batch_none=False)


def test_batch_normalization_without_affine_and_dynamic_batch():
    check_op("batch_normalization", [(None, 4, 3), (3,), (3,), Arg(None), Arg(None)],
             ref=np_batch_normalization, gen=[None, None, POS], epsilon=0.01)
    check_op("batch_normalization", [(None, 3, 4, 4), (3,), (3,), (3,), Arg(None)],
             ref=np_batch_normalization, gen=[None, None, POS, None], axis=1)


def np_normalize_batch_in_training(x, gamma, beta, reduction_axes, epsilon=1e-3):
    """TF's moments (biased variance) and batch_normalization with broadcast parameters;
    mean and variance come back shaped like the kept axes."""
    axes = tuple(sorted(reduction_axes))
    xd = x.astype(np.float64)
    mean = xd.mean(axis=axes)
    var = ((xd - xd.mean(axis=axes, keepdims=True)) ** 2).mean(axis=axes)
    bshape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    y = (xd - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + epsilon)
    if gamma is not None:
        y = y * gamma.reshape(bshape)
    if beta is not None:
        y = y + beta.reshape(bshape)
    return y.astype(x.dtype), mean.astype(x.dtype), var.astype(x.dtype)


@pytest.mark.parametrize("xshape,axes,pshape", [
    ((6, 3), [0], (3,)),                     # regular path: all but the last axis
    ((2, 4, 5, 3), [0, 1, 2], (3,)),         # NHWC (fused in TF 1)
    ((2, 3, 4, 5), [0, 2, 3], (3,)),         # NCHW (fused or broadcast in TF 1)
    ((3, 4, 5), [0, 2], (4,)),               # broadcast path, channels first 1-D data
    ((3, 4, 5), [0], (4, 5)),                # per-position statistics
    ((2, 3, 2, 2, 4), [0, 2, 3, 4], (3,)),   # 5-D channels_first
    ((2, 3, 4, 5), [2, 0, 3], (3,)),         # unsorted axes
])
def test_normalize_batch_in_training(xshape, axes, pshape):
    check_op("normalize_batch_in_training", [xshape, pshape, pshape, Arg(axes)],
             ref=np_normalize_batch_in_training, dtypes=FLOATS, rtol=1e-4, atol=1e-5,
             epsilon=1e-3)


def test_normalize_batch_in_training_dynamic_and_no_affine():
    check_op("normalize_batch_in_training", [(None, 3, 4), (3,), (3,), Arg([0, 2])],
             ref=np_normalize_batch_in_training, rtol=1e-4, atol=1e-5)
    check_op("normalize_batch_in_training", [(None, None, 3), (3,), (3,), Arg([0, 1])],
             ref=np_normalize_batch_in_training, rtol=1e-4, atol=1e-5, batch_sizes=(3, 4))
    check_op("normalize_batch_in_training", [(None, 3, 4, 4), Arg(None), Arg(None),
                                             Arg([0, 2, 3])],
             ref=np_normalize_batch_in_training, rtol=1e-4, atol=1e-5, epsilon=0.1)
    x = K.placeholder((None, 5, 3))
    _, m, v = K.normalize_batch_in_training(x, None, None, [0, 1])
    assert K.int_shape(m) == K.int_shape(v) == (3,)
