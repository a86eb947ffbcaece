"""Finite-difference gradient checks of the CTC and sparse ops (``OP_CASES``, collected by
``test_gradients_ops.test_registry``) and of ``K.ctc_batch_cost`` / sparse ``K.dot``."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import SymkError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.tensor import Tensor
from tests.gradcheck import check_grad, devices, floatx64, op, op_case_params

IDX = np.array([[0, 1], [2, 3], [1, 0], [2, 3], [0, 0]], np.int64)  # (2, 3) repeats
SHAPE = np.array([3, 4], np.int64)
LABELS = np.array([[0, 1, 1], [2, 0, 0], [1, 2, 0]], np.int32)
LAB_LEN = np.array([3, 1, 2], np.int32)
IN_LEN = np.array([5, 3, 4], np.int32)


OP_CASES: dict[str, list[tuple]] = {
    "ctc_loss": [(op("ctc_loss"), [(3, 5, 4), LABELS, LAB_LEN, IN_LEN], {"low": -2, "high": 2})],
    "sparse_to_dense": [(op("sparse_to_dense", shape=(3, 4), default=0),
                         [IDX, (5,), SHAPE], {})],
    "sparse_gather": [(op("sparse_gather"), [(3, 4), IDX], {})],
    "sparse_matmul": [(op("sparse_matmul", transpose_a=False, rows=3),
                       [IDX, (5,), SHAPE, (4, 2)], {}),
                      (op("sparse_matmul", transpose_a=True, rows=4),
                       [IDX, (5,), SHAPE, (3, 2)], {})],
    "sparse_sddmm": [(op("sparse_sddmm", transpose_a=False), [IDX, SHAPE, (3, 2), (4, 2)], {}),
                     (op("sparse_sddmm", transpose_a=True), [IDX, SHAPE, (4, 2), (3, 2)], {})],
}


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient(fn, shapes, opts):
    check_grad(fn, shapes, **opts)


@pytest.mark.parametrize("dynamic", [False, True])
def test_ctc_batch_cost_gradient(dynamic):
    """d loss / d y_pred through log(y + eps), the loss op and its alpha-beta gradient, with
    per-element input and label lengths (and a (batch, 1) length layout as Keras feeds)."""
    def f(y_true, y_pred, il, ll):
        return K.ctc_batch_cost(y_true, y_pred, il, ll)
    check_grad(f, [LABELS, (3, 5, 4), IN_LEN.reshape(3, 1), LAB_LEN.reshape(3, 1)],
               low=0.05, high=0.95, dynamic=[dynamic, dynamic, False, False], rtol=1e-5)


def test_ctc_loss_gradient_zero_past_input_length_and_when_infeasible():
    """Frames past input_length get no gradient; an element with no alignment has an
    infinite loss and a zero gradient (it does not poison the batch)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 3))
    labels = np.array([[0, 0], [1, 0]], np.int32)
    with floatx64():
        lg = K.placeholder((2, 4, 3))
        loss = Tensor(apply("ctc_loss", [lg.node, gb.const(labels),
                                         gb.const(np.array([2, 1], np.int32)),
                                         gb.const(np.array([2, 3], np.int32))]))
        (g,) = K.gradients(K.sum(loss), [lg])
        for dev in devices():
            lv, gv = K.function([lg], [loss, g], device=dev)([x])
            assert np.isinf(lv[0]) and lv[0] > 0  # "0 0" needs 3 frames, only 2 given
            assert np.all(gv[0] == 0)
            assert np.all(gv[1, 3] == 0) and np.any(gv[1, :3] != 0)
            # rows of d loss / d logits sum to zero (softmax minus a distribution)
            np.testing.assert_allclose(gv[1, :3].sum(-1), 0, atol=1e-12)


def test_no_second_derivative():
    with floatx64():
        lg = K.placeholder((1, 3, 3))
        loss = Tensor(apply("ctc_loss", [lg.node, gb.const(np.zeros((1, 1), np.int32)),
                                         gb.const(np.ones(1, np.int32)),
                                         gb.const(np.full(1, 3, np.int32))]))
        (g,) = K.gradients(K.sum(loss), [lg])
        with pytest.raises(SymkError, match="second derivatives"):
            K.gradients(K.sum(g * g), [lg])


@pytest.mark.parametrize("dynamic", [False, True])
def test_sparse_dot_gradient_wrt_dense_operand(dynamic):
    """d(sum(W2 * (A @ W)))/dW by finite differences, A a sparse placeholder fed a triple."""
    import scipy.sparse as sp

    a = sp.random(4, 5, density=0.5, random_state=1, format="coo")
    with floatx64():
        x = K.placeholder((None if dynamic else 4, 5), sparse=True)
        wv = np.random.default_rng(0).normal(size=(5, 3))
        wgt = np.random.default_rng(1).normal(size=(4, 3))
        w = K.placeholder((5, 3))
        loss = K.sum(K.dot(x, w) * K.constant(wgt))
        (g,) = K.gradients(loss, [w])
        for dev in devices():
            f = K.function([x, w], [loss])
            got = K.function([x, w], [g], device=dev)([a, wv])[0]
            num = np.zeros_like(wv)
            for i in np.ndindex(*wv.shape):
                d = np.zeros_like(wv)
                d[i] = 1e-6
                num[i] = (f([a, wv + d])[0] - f([a, wv - d])[0]) / 2e-6
            np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-8)
