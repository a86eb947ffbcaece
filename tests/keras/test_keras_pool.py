"""Keras 2.3.1 pooling, upsampling and 4-D batch-normalization layers on symk, against the
naive numpy loops of tests/backend/test_pool.py and numpy statistics; a small pooling model
trains on the digits."""

from __future__ import annotations

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
from keras import backend as K
from keras import layers as L
from keras import optimizers as O

from tests.backend.test_pool import naive_pool, naive_resize
from tests.keras.test_keras_client import digits, np_accuracy

pytestmark = pytest.mark.keras


def _predict(layer, x):
    model = keras.Sequential([layer])
    model.build((None,) + x.shape[1:])
    return model.predict(x, batch_size=len(x))


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_pooling_layers_match_numpy(fmt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 6, 2) if fmt == "channels_last" else (3, 2, 7, 6))
    x = x.astype("float32")
    for cls, mode in ((L.MaxPooling2D, "max"), (L.AveragePooling2D, "avg")):
        for padding in ("valid", "same"):
            got = _predict(cls((3, 2), strides=(2, 2), padding=padding, data_format=fmt), x)
            want = naive_pool(x, (3, 2), (2, 2), padding, fmt, mode)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    v = rng.standard_normal((2, 4, 5, 3, 2)).astype("float32")
    if fmt == "channels_first":
        v = np.moveaxis(v, -1, 1)
    got = _predict(L.AveragePooling3D((2, 2, 2), padding="same", data_format=fmt), v)
    np.testing.assert_allclose(got, naive_pool(v, (2, 2, 2), (2, 2, 2), "same", fmt, "avg"),
                               rtol=1e-6, atol=1e-6)
    s = rng.standard_normal((3, 9, 2)).astype("float32")  # MaxPooling1D goes through pool2d
    got = _predict(L.MaxPooling1D(3, strides=2, padding="same"), s)
    want = naive_pool(s[:, :, None, :], (3, 1), (2, 1), "same", "channels_last", "max")
    np.testing.assert_allclose(got, want[:, :, 0, :])


def test_upsampling_layers_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 2)).astype("float32")
    for interp in ("nearest", "bilinear"):
        got = _predict(L.UpSampling2D((2, 3), interpolation=interp), x)
        want = naive_resize(x, (2, 3), "channels_last", interp)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    v = rng.standard_normal((2, 2, 3, 2, 2)).astype("float32")
    got = _predict(L.UpSampling3D((2, 1, 3), data_format="channels_first"), v)
    np.testing.assert_allclose(got, naive_resize(v, (2, 1, 3), "channels_first"))


def test_batchnorm_4d_channels_first_statistics():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3, 4, 5)).astype("float32") * 2 + 1
    model = keras.Sequential([L.BatchNormalization(axis=1, momentum=0.5,
                                                   input_shape=(3, 4, 5)),
                              L.Flatten(), L.Dense(2)])
    model.compile(O.SGD(learning_rate=0.0), "mse")
    model.fit(x, np.zeros((8, 2), "float32"), batch_size=8, epochs=1, verbose=0)
    bn = model.layers[0]
    xd = x.astype(np.float64)
    mean, var = xd.mean(axis=(0, 2, 3)), xd.var(axis=(0, 2, 3))
    n = 8 * 4 * 5
    np.testing.assert_allclose(K.get_value(bn.moving_mean), 0.5 * mean, rtol=1e-5)
    np.testing.assert_allclose(K.get_value(bn.moving_variance),
                               0.5 + 0.5 * var * n / (n - (1.0 + bn.epsilon)), rtol=1e-5)
    # inference: normalized with the moving statistics along axis 1
    mm = K.get_value(bn.moving_mean).reshape(1, 3, 1, 1)
    mv = K.get_value(bn.moving_variance).reshape(1, 3, 1, 1)
    gamma, beta = (K.get_value(p).reshape(1, 3, 1, 1) for p in (bn.gamma, bn.beta))
    h = (xd - mm) / np.sqrt(mv + bn.epsilon) * gamma + beta
    wgt, b = model.layers[2].get_weights()
    np.testing.assert_allclose(model.predict(x), h.reshape(8, -1) @ wgt + b, rtol=1e-4,
                               atol=1e-5)


def test_pooling_model_trains_on_digits():
    xtr, ytr, xte, yte = digits()
    model = keras.Sequential([
        L.Reshape((8, 8, 1), input_shape=(64,)),
        L.UpSampling2D(2, interpolation="bilinear"),
        L.BatchNormalization(),
        L.MaxPooling2D(2, strides=1, padding="same"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(32, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(O.Adam(learning_rate=0.01), "sparse_categorical_crossentropy")
    model.fit(xtr, ytr, batch_size=64, epochs=8, verbose=0)
    assert np_accuracy(model.predict(xte), yte) >= 0.9
