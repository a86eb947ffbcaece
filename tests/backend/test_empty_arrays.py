"""Arrays with a zero-sized dimension, on cpu and interp, against numpy: results of the right
(empty or identity) shape and value, and a symk error -- never a raw exception or a silent
value -- where the operation has no meaning (max over an empty axis)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ShapeError
from tests.harness import available_devices

DEVICES = [d for d in ("interp", "cpu") if d in available_devices()]


def _run(f, shapes, ref, dtype="float32"):
    rng = np.random.default_rng(0)
    vals = [rng.standard_normal(s).astype(dtype) for s in shapes]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        want = np.asarray(ref(*vals))
    for dev in DEVICES:
        phs = [K.placeholder(s, dtype=dtype) for s in shapes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = K.function(phs, [f(*phs)], device=dev)(vals)[0]
        assert got.shape == want.shape, f"{dev}: shape {got.shape}, expected {want.shape}"
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-5, atol=1e-5,
                                   equal_nan=True, err_msg=dev)


CASES = {
    # elementwise
    "add": (lambda a, b: a + b, [(0, 3), (0, 3)], np.add),
    "exp": (K.exp, [(4, 0)], np.exp),
    "relu": (K.relu, [(0, 5)], lambda x: np.maximum(x, 0)),
    "sigmoid_bcast": (lambda a, b: K.sigmoid(a * b), [(0, 3), (3,)],
                      lambda a, b: 1 / (1 + np.exp(-a * b))),
    # reductions with an identity (sum 0, prod 1, mean nan) and over non-empty axes
    "sum_empty_axis": (lambda x: K.sum(x, axis=1), [(3, 0, 2)], lambda x: x.sum(1)),
    "sum_all": (K.sum, [(0, 4)], np.sum),
    "prod_empty_axis": (lambda x: K.prod(x, axis=0), [(0, 4)], lambda x: x.prod(0)),
    "mean_empty_axis": (lambda x: K.mean(x, axis=-1), [(3, 0)], lambda x: x.mean(-1)),
    "max_of_empty_batch": (lambda x: K.max(x, axis=1), [(0, 4)], lambda x: x.reshape(0)),
    "argmax_of_empty_batch": (lambda x: K.argmax(x, axis=-1), [(0, 4)],
                              lambda x: np.zeros(0, np.int64)),
    "logsumexp_empty_axis": (lambda x: K.logsumexp(x, axis=1), [(2, 0)],
                             lambda x: np.full(2, -np.inf)),
    "cumsum": (lambda x: K.cumsum(x, axis=1), [(0, 4)], lambda x: np.cumsum(x, 1)),
    # shape
    "concat_empty": (lambda a, b: K.concatenate([a, b], axis=0), [(0, 3), (2, 3)],
                     lambda a, b: np.concatenate([a, b], 0)),
    "reshape": (lambda x: K.reshape(x, (0, 6)), [(0, 2, 3)], lambda x: x.reshape(0, 6)),
    "transpose": (K.transpose, [(0, 3)], np.transpose),
    "tile": (lambda x: K.tile(x, (2, 1)), [(0, 3)], lambda x: np.tile(x, (2, 1))),
    "flatten": (K.batch_flatten, [(0, 2, 3)], lambda x: x.reshape(0, 6)),
    # linalg
    "dot_empty_inner": (K.dot, [(5, 0), (0, 4)], np.matmul),
    "dot3_empty_inner": (K.dot, [(2, 3, 0), (0, 5)], np.matmul),
    "dot_empty_batch": (K.dot, [(0, 3), (3, 4)], np.matmul),
    "batch_dot_empty_inner": (lambda a, b: K.batch_dot(a, b, axes=(2, 1)),
                              [(2, 3, 0), (2, 0, 5)], np.matmul),
    "batch_dot_sum_rows": (lambda a, b: K.batch_dot(a, b, axes=(1, 1)), [(2, 3, 0), (2, 3, 4)],
                           lambda a, b: np.einsum("bsi,bsj->bij", a, b)),
    # nn
    "softmax_empty_batch": (K.softmax, [(0, 5)], lambda x: x),
    "softmax_empty_axis": (K.softmax, [(3, 0)], lambda x: x),
    "l2_normalize": (lambda x: K.l2_normalize(x, axis=-1), [(0, 4)], lambda x: x),
    "bias_add": (K.bias_add, [(0, 3), (3,)], np.add),
    # conv / pool
    "conv2d_empty_batch": (K.conv2d, [(0, 5, 5, 2), (3, 3, 2, 4)],
                           lambda x, w: np.zeros((0, 3, 3, 4))),
    "conv2d_no_filters": (K.conv2d, [(2, 5, 5, 2), (3, 3, 2, 0)],
                          lambda x, w: np.zeros((2, 3, 3, 0))),
    "pool2d_no_channels": (lambda x: K.pool2d(x, (2, 2), (2, 2), "valid", "channels_last", "max"),
                           [(2, 4, 4, 0)], lambda x: np.zeros((2, 2, 2, 0))),
    "pool3d_no_channels": (lambda x: K.pool3d(x, (2, 2, 2), (2, 2, 2), "valid", "channels_last",
                                              "avg"),
                           [(2, 4, 4, 4, 0)], lambda x: np.zeros((2, 2, 2, 2, 0))),
    "pool2d_empty_batch": (lambda x: K.pool2d(x, (2, 2), (2, 2), "valid", "channels_last", "avg"),
                           [(0, 4, 4, 3)], lambda x: np.zeros((0, 2, 2, 3))),
    "local_conv1d_no_filters": (lambda x, k: K.local_conv1d(x, k, (3,), (1,)),
                                [(2, 11, 3), (9, 9, 0)], lambda x, k: np.zeros((2, 9, 0))),
    "local_conv1d_empty_batch": (lambda x, k: K.local_conv1d(x, k, (3,), (1,)),
                                 [(0, 11, 3), (9, 9, 4)], lambda x, k: np.zeros((0, 9, 4))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty(name):
    f, shapes, ref = CASES[name]
    _run(f, shapes, ref)


@pytest.mark.parametrize("name,kw", [("max", {"axis": 1}), ("min", {"axis": None}),
                                     ("argmax", {"axis": 1}), ("argmin", {"axis": -2})])
def test_reduction_without_identity_over_a_static_empty_axis_is_a_shape_error(name, kw):
    """numpy and TensorFlow reject it; the cpu kernels returned -inf/inf/0 as a result."""
    x = K.placeholder((3, 0, 5))
    with pytest.raises(ShapeError, match="empty axis 1"):
        getattr(K, name)(x, **kw)


@pytest.mark.parametrize("device", ["cpu", "interp"])
@pytest.mark.parametrize("name", ["max", "min", "argmax", "argmin"])
def test_reduction_without_identity_over_a_fed_empty_axis_is_a_shape_error(device, name):
    """The native kernel checks the run-time extent of the reduced axis (it would return its
    start value, -inf/inf/0); fused with elementwise work, and again from the plan cache."""
    for _ in range(2):  # (the second function is built from the first one's plan)
        x = K.placeholder((3, None, 5))
        f = K.function([x], [getattr(K, name)(x * 2.0 + 1.0, axis=1)], device=device)
        with pytest.raises(ShapeError, match=f"K.{name}"):
            f([np.zeros((3, 0, 5), np.float32)])
        xv = np.arange(30, dtype=np.float32).reshape(3, 2, 5)
        want = getattr(np, name)(xv * 2 + 1, axis=1)
        np.testing.assert_array_equal(f([xv])[0], want)


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_with_an_empty_batch(unroll, masked):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3)).astype(np.float32)

    def step(xt, states):
        h = K.tanh(K.dot(xt, K.constant(w)) + states[0])
        return h, [h]
    x, h0 = K.placeholder((None, 5, 4)), K.placeholder((None, 3))
    m = K.placeholder((None, 5)) if masked else None
    last, outs, (h,) = K.rnn(step, x, [h0], mask=m, unroll=unroll)
    feeds = [np.zeros((0, 5, 4), np.float32), np.zeros((0, 3), np.float32)]
    feeds += [np.zeros((0, 5), np.float32)] if masked else []
    for dev in DEVICES:
        got = K.function([x, h0] + ([m] if masked else []), [last, outs, h], device=dev)(feeds)
        assert [g.shape for g in got] == [(0, 3), (0, 5, 3), (0, 3)], dev
