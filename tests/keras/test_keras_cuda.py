"""The real Keras 2.3.1 training an MLP with symk's cuda device (needs a GPU; marked ``gpu``):
same weights and data on cuda and cpu must give the same losses and predictions."""

from __future__ import annotations

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
from keras import layers as L

from symk import config
from symk.errors import DeviceError


def _no_gpu() -> str | None:
    from symk.runtime.cuda import require_cuda

    try:
        require_cuda()
    except DeviceError as e:
        return str(e)
    return None


NO_GPU = _no_gpu()


def _train(device: str, x: np.ndarray, y: np.ndarray) -> tuple[list[float], np.ndarray]:
    old = config.device()
    config.set_device(device)
    try:
        np.random.seed(0)
        m = keras.models.Sequential([L.Dense(16, activation="relu", input_shape=(8,)),
                                     L.Dense(3, activation="softmax")])
        m.compile("sgd", "categorical_crossentropy")
        h = m.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False)
        return h.history["loss"], m.predict(x)
    finally:
        config.set_device(old)


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"no GPU: {NO_GPU}")
def test_keras_mlp_on_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]
    loss_gpu, pred_gpu = _train("cuda", x, y)
    loss_cpu, pred_cpu = _train("cpu", x, y)
    np.testing.assert_allclose(loss_gpu, loss_cpu, rtol=1e-4)
    np.testing.assert_allclose(pred_gpu, pred_cpu, rtol=1e-4, atol=1e-6)
