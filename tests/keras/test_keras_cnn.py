"""Keras 2.3.1 convolution layers on symk: every conv layer's output against the naive numpy
loops of tests/backend/test_conv.py (with the layer's own weights), and a Conv2D +
MaxPooling2D + Flatten + Dense network that trains on the 8x8 digits."""

from __future__ import annotations

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
from keras import layers as L
from keras import optimizers as O

from tests.backend.test_conv import (
    naive_conv,
    ref_depthwise,
    ref_local1d,
    ref_local2d,
    ref_separable,
    ref_transpose,
)
from tests.keras.test_keras_client import digits, np_accuracy, one_hot

pytestmark = pytest.mark.keras


def _predict(layer, x):
    model = keras.Sequential([layer])
    model.build((None,) + x.shape[1:])
    return model.predict(x, batch_size=len(x)), layer.get_weights()


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv_layers_match_numpy(fmt):
    rng = np.random.default_rng(0)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    x = rng.standard_normal((2, 7, 6, 3) if fmt == "channels_last" else (2, 3, 7, 6))
    x = x.astype("float32")
    got, (k, b) = _predict(L.Conv2D(4, (3, 2), strides=(2, 1), padding="same",
                                    data_format=fmt), x)
    want = naive_conv(x, k, (2, 1), "same", fmt, (1, 1))
    want += b.reshape((1, 1, 1, -1) if fmt == "channels_last" else (1, -1, 1, 1))
    np.testing.assert_allclose(got, want, **tol)

    got, (k,) = _predict(L.Conv2DTranspose(2, (3, 3), strides=(2, 2), padding="same",
                                             data_format=fmt, use_bias=False), x)
    out_shape = got.shape
    np.testing.assert_allclose(got, ref_transpose(2)(x, k, out_shape, (2, 2), "same", fmt),
                               **tol)
    assert out_shape == ((2, 14, 12, 2) if fmt == "channels_last" else (2, 2, 14, 12))

    got, (dk,) = _predict(L.DepthwiseConv2D((2, 2), depth_multiplier=2, data_format=fmt,
                                            use_bias=False), x)
    np.testing.assert_allclose(got, ref_depthwise(x, dk, data_format=fmt), **tol)

    got, (dk, pk) = _predict(L.SeparableConv2D(5, (3, 3), padding="same", data_format=fmt,
                                               use_bias=False), x)
    np.testing.assert_allclose(got, ref_separable(2)(x, dk, pk, (1, 1), "same", fmt), **tol)

    got, (k,) = _predict(L.LocallyConnected2D(3, (2, 3), strides=(2, 1), data_format=fmt,
                                              use_bias=False), x)
    out_sp = (3, 4)
    np.testing.assert_allclose(got, ref_local2d(x, k, (2, 3), (2, 1), out_sp, fmt), **tol)


def test_conv1d_3d_layers_match_numpy():
    rng = np.random.default_rng(1)
    tol = {"rtol": 1e-4, "atol": 1e-4}
    s = rng.standard_normal((2, 9, 3)).astype("float32")
    got, (k,) = _predict(L.Conv1D(4, 3, padding="causal", dilation_rate=2, use_bias=False), s)
    np.testing.assert_allclose(got, naive_conv(s, k, (1,), "causal", "channels_last", (2,)),
                               **tol)
    got, (dk, pk) = _predict(L.SeparableConv1D(4, 3, strides=2, use_bias=False), s)
    np.testing.assert_allclose(got, ref_separable(1)(s, dk, pk, 2), **tol)
    got, (k,) = _predict(L.LocallyConnected1D(2, 3, strides=2, use_bias=False), s)
    np.testing.assert_allclose(got, ref_local1d(s, k, (3,), (2,)), **tol)
    v = rng.standard_normal((2, 4, 5, 3, 2)).astype("float32")
    got, (k,) = _predict(L.Conv3D(3, (2, 3, 2), padding="same", use_bias=False), v)
    np.testing.assert_allclose(got, naive_conv(v, k, (1, 1, 1), "same", "channels_last",
                                               (1, 1, 1)), **tol)
    got, (k,) = _predict(L.Conv3DTranspose(2, (2, 2, 2), strides=(2, 1, 2), use_bias=False), v)
    np.testing.assert_allclose(got, ref_transpose(3)(v, k, got.shape, (2, 1, 2)), **tol)


def test_cnn_trains_on_digits():
    xtr, ytr, xte, yte = digits()
    xtr, xte = xtr.reshape(-1, 8, 8, 1), xte.reshape(-1, 8, 8, 1)
    np.random.seed(0)
    model = keras.Sequential([
        L.Conv2D(16, (3, 3), padding="same", activation="relu", input_shape=(8, 8, 1)),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(32, (3, 3), activation="relu"),
        L.Flatten(),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=O.Adam(0.01), loss="categorical_crossentropy", metrics=["acc"])
    hist = model.fit(xtr, one_hot(ytr), batch_size=64, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    acc = np_accuracy(model.predict(xte), yte)
    assert acc >= 0.90, acc
    loss, keras_acc = model.evaluate(xte, one_hot(yte), verbose=0)
    assert abs(keras_acc - acc) < 1e-6
