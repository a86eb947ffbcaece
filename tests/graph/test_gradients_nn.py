"""K.gradients of the neural-network functions (softmax, l2_normalize, bias_add, losses,
batch normalization) against finite differences, and dropout's exact gradient."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.gradcheck import case, check_grad, devices, floatx64

_rng = np.random.default_rng(2)
PROB = {"low": 0.05, "high": 0.95}


def _onehot(idx, n):
    return np.eye(n)[idx]


TARGET = _rng.uniform(0, 1, (3, 4))
SPARSE_T = np.array([0, 3, 1], np.int32)
SPARSE_T3 = np.array([[0, 2, 1], [3, 3, 0]], np.int64)
BIN_T = (_rng.uniform(size=(3, 4)) > 0.5).astype(np.float64)

NN = [
    *case("softmax", "softmax", [(3, 5)], low=-3, high=3),
    *case("softmax-axis0", "softmax", [(3, 5)], axis=0),
    *case("softmax-3d-axis1", "softmax", [(2, 3, 4)], axis=1),
    *case("l2_normalize-all", "l2_normalize", [(3, 4)]),
    *case("l2_normalize-last", "l2_normalize", [(3, 4)], axis=-1),
    *case("l2_normalize-0", "l2_normalize", [(3, 4)], axis=0),
    # K.bias_add needs a bias of static shape
    *case("bias_add-2d", "bias_add", [(2, 3), (3,)], dynamic_ok=[True, False]),
    *case("bias_add-3d", "bias_add", [(2, 3, 4), (4,)], dynamic_ok=[True, False]),
    *case("bias_add-3d-cf", "bias_add", [(2, 3, 4), (3,)], data_format="channels_first",
          dynamic_ok=[True, False]),
    *case("bias_add-4d-cf", "bias_add", [(2, 3, 2, 2), (3,)], data_format="channels_first",
          dynamic_ok=[True, False]),
    *case("bias_add-full-bias", "bias_add", [(2, 3, 4), (3, 4)], dynamic_ok=[True, False]),
    *case("bias_add-full-bias-cf", "bias_add", [(2, 3, 4, 2), (4, 2, 3)],
          data_format="channels_first", dynamic_ok=[True, False]),
    *case("cce", "categorical_crossentropy", [TARGET, (3, 4)], **PROB),
    *case("cce-onehot", "categorical_crossentropy", [_onehot(SPARSE_T, 4), (3, 4)], **PROB),
    *case("cce-axis0", "categorical_crossentropy", [TARGET, (3, 4)], axis=0, **PROB),
    *case("cce-logits", "categorical_crossentropy", [TARGET, (3, 4)], from_logits=True,
          low=-3, high=3),
    *case("scce", "sparse_categorical_crossentropy", [SPARSE_T, (3, 4)], dynamic_ok=False,
          **PROB),
    *case("scce-logits", "sparse_categorical_crossentropy", [SPARSE_T, (3, 4)],
          dynamic_ok=False, from_logits=True, low=-3, high=3),
    *case("scce-3d", "sparse_categorical_crossentropy", [SPARSE_T3, (2, 3, 4)],
          dynamic_ok=False, from_logits=True),
    *case("bce", "binary_crossentropy", [BIN_T, (3, 4)], **PROB),
    *case("bce-soft-target", "binary_crossentropy", [TARGET, (3, 4)], **PROB),
    *case("bce-logits", "binary_crossentropy", [TARGET, (3, 4)], from_logits=True,
          low=-3, high=3, kinks=(0,)),
    *case("batch_normalization", "batch_normalization",
          [(4, 3), (3,), np.array([0.5, 1.0, 2.0]), (3,), (3,)]),
    *case("batch_normalization-axis1", "batch_normalization",
          [(2, 3, 4), (3,), np.array([0.5, 1.0, 2.0]), (3,), (3,)], axis=1),
    *case("batch_normalization-no-affine",
          lambda x, m, v: K.batch_normalization(x, m, v, None, None, epsilon=0.01),
          [(4, 3), (3,), np.array([0.5, 1.0, 2.0])]),
    *case("normalize_batch_in_training", "normalize_batch_in_training",
          [(4, 3), (3,), (3,)], reduction_axes=[0]),
    *case("normalize_batch_in_training-3d", "normalize_batch_in_training",
          [(2, 3, 4), (3,), (3,)], reduction_axes=[0, 2]),
    *case("normalize_batch_in_training-no-affine",
          lambda x: K.normalize_batch_in_training(x, None, None, [0, 1]), [(2, 3, 4)]),
]


@pytest.mark.parametrize("fn,inputs,opts", NN)
def test_gradient_matches_finite_differences(fn, inputs, opts):
    check_grad(fn, inputs, **opts)


def test_sparse_cce_with_column_target_and_dynamic_batch():
    check_grad(lambda t, o: K.sparse_categorical_crossentropy(t, o, from_logits=True),
               [SPARSE_T.reshape(3, 1), (3, 4)], dynamic=[True, False])
    check_grad(lambda t, o: K.sparse_categorical_crossentropy(t, o),
               [SPARSE_T, (3, 4)], dynamic=[True, False], **PROB)


def test_losses_as_variables():
    check_grad(lambda o: K.categorical_crossentropy(K.constant(TARGET, dtype="float64"),
                                                    K.softmax(o)), [(3, 4)], variables=True)


@pytest.mark.parametrize("level", [0.25, 0.6])
@pytest.mark.parametrize("dynamic", [False, True])
def test_dropout_gradient_is_the_scaled_mask(level, dynamic):
    with floatx64():
        x = K.placeholder((None, 50) if dynamic else (4, 50))
        y = K.dropout(x, level, seed=7)
        (g,) = K.gradients(K.sum(y), [x])
        out, grad = K.function([x], [y, g], device=devices()[0])([np.ones((4, 50))])
    keep = 1 - level
    mask = out * keep  # x = 1: out = mask / keep
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert 0 < mask.sum() < mask.size
    np.testing.assert_allclose(grad, mask / keep, rtol=0, atol=0)


def test_dropout_gradient_with_noise_shape():
    with floatx64():
        x = K.placeholder((4, 6))
        y = K.dropout(x, 0.5, noise_shape=(4, 1), seed=3)
        (g,) = K.gradients(K.sum(y * 3.0), [x])
        xv = np.arange(24.0).reshape(4, 6) + 1
        out, grad = K.function([x], [y, g], device=devices()[0])([xv])
    mask = out / xv * 0.5
    assert np.all(mask == mask[:, :1])
    np.testing.assert_allclose(grad, 3.0 * mask / 0.5)


def test_normalize_batch_in_training_dynamic_input_static_parameters():
    check_grad("normalize_batch_in_training", [(2, 3, 4), (3,), (3,)], reduction_axes=[0, 2],
               dynamic=[True, False, False])
    check_grad("batch_normalization", [(2, 3, 4), (3,), np.array([0.5, 1.0, 2.0]), (3,), (3,)],
               axis=1, dynamic=[True, False, False, False, False])


def test_dense_softmax_cross_entropy_layer():
    """A Dense + softmax + cross-entropy step as Keras builds it, w.r.t. its variables."""
    def layer(x, kernel, bias):
        probs = K.softmax(K.bias_add(K.dot(x, kernel), bias))
        return K.mean(K.categorical_crossentropy(K.constant(_onehot(SPARSE_T, 4)), probs))
    check_grad(layer, [(3, 5), (5, 4), (4,)], variables=True, dynamic=[True, False, False])


def test_binary_crossentropy_logits_gradient_at_zero():
    """d/dx = sigmoid(x) - t everywhere, including x = 0 (a zero-initialized last layer)."""
    with floatx64():
        t = K.placeholder((4,))
        x = K.placeholder((4,))
        (g,) = K.gradients(K.sum(K.binary_crossentropy(t, x, from_logits=True)), [x])
        tv = np.array([0.0, 1.0, 0.3, 1.0])
        xv = np.array([0.0, 0.0, 0.0, 2.0])
        out = K.function([t, x], [g], device=devices()[0])([tv, xv])[0]
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-xv)) - tv, rtol=1e-12)
