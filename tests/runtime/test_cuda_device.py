"""The cuda device: a clear DeviceError naming what is missing when there is no GPU (the cpu
device keeps working in the same process), ``symk.compile(..., build=False)`` giving CUDA code
and launch configurations without a device, and -- on a machine with a GPU (marked ``gpu``) --
functions, variables and a Keras-style MLP training step on the device against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import symk
from symk import backend as K
from symk.errors import DeviceError


def _cuda_reason() -> str | None:
    from symk.runtime.cuda import require_cuda

    try:
        require_cuda()
    except DeviceError as e:
        return str(e)
    return None


NO_GPU = _cuda_reason()


def test_missing_cuda_is_a_clear_error_and_cpu_still_works() -> None:
    if NO_GPU is None:
        pytest.skip("a GPU is present")
    x = K.placeholder((None, 3))
    with pytest.raises(DeviceError, match="device 'cuda' is not available: .*(CuPy|NVRTC|"
                                          "driver|device)"):
        K.function([x], [x * 2.0], device="cuda")
    out = K.function([x], [x * 2.0], device="cpu")([np.ones((2, 3), np.float32)])[0]
    np.testing.assert_array_equal(out, np.full((2, 3), 2.0, np.float32))


def test_missing_cupy_is_named(monkeypatch) -> None:
    import builtins

    from symk.runtime import cuda

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real(name, *a, **k)
    cuda._probe.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake)
    try:
        with pytest.raises(DeviceError, match="CuPy is not installed.*pip install"):
            cuda.require_cuda()
    finally:
        monkeypatch.undo()
        cuda._probe.cache_clear()


def test_compile_without_building_gives_cuda_code() -> None:
    x = K.placeholder((None, 16))
    y = K.placeholder((4, 5))
    plan = symk.compile([x, y], [K.softmax(x), K.exp(y) + 1.0, K.sum(y)], device="cuda",
                        build=False)
    assert len(plan.kernels) == 3
    for k in plan.kernels:
        assert f'extern "C" __global__ void {k.name}(' in k.source
        assert k.mode in ("thread", "row") and k.launch
    by_mode = {k.mode for k in plan.kernels}
    assert by_mode == {"thread", "row"}
    static = [k for k in plan.kernels if "d0" not in k.source]
    assert all(k.grid_block is not None for k in static)
    assert "symk_block_reduce" in plan.source and plan.source.count("__global__") == 3
    assert "kernel" in str(plan)


def test_compile_builds_like_k_function() -> None:
    x = K.placeholder((None, 3))
    f = symk.compile([x], [K.sum(x * x, axis=1)])
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(f([v])[0], (v * v).sum(1))
    with pytest.raises(symk.ArgumentError, match="unknown device"):
        symk.compile([x], [x], device="tpu")


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"no GPU: {NO_GPU}")
def test_function_on_gpu() -> None:
    rng = np.random.default_rng(0)
    x = K.placeholder((None, 8))
    w = K.variable(rng.standard_normal((8, 4)).astype(np.float32))
    f = K.function([x], [K.softmax(K.dot(x, w)), K.argmax(x, axis=1)],
                   updates=[(w, w * 0.5)], device="cuda")
    xv = rng.standard_normal((5, 8)).astype(np.float32)
    w0 = K.get_value(w)
    sm, am = f([xv])
    z = xv @ w0
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(am, xv.argmax(1))
    np.testing.assert_allclose(K.get_value(w), w0 * 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=f"no GPU: {NO_GPU}")
def test_mlp_training_step_on_gpu() -> None:
    """A Keras-style MLP step (dense + relu + softmax cross-entropy, SGD updates) on cuda
    against the same step written in numpy."""
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((16, 10)).astype(np.float32)
    yv = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    w1v = rng.standard_normal((10, 8)).astype(np.float32) * 0.3
    w2v = rng.standard_normal((8, 3)).astype(np.float32) * 0.3
    x, y = K.placeholder((None, 10)), K.placeholder((None, 3))
    w1, w2 = K.variable(w1v), K.variable(w2v)
    h = K.relu(K.dot(x, w1))
    p = K.softmax(K.dot(h, w2))
    loss = K.mean(K.categorical_crossentropy(y, p))
    g1, g2 = K.gradients(loss, [w1, w2])
    f = K.function([x, y], [loss], updates=[(w1, w1 - 0.1 * g1), (w2, w2 - 0.1 * g2)],
                   device="cuda")
    got = f([xv, yv])[0]
    hv = np.maximum(xv @ w1v, 0)
    z = hv @ w2v
    e = np.exp(z - z.max(1, keepdims=True))
    pv = e / e.sum(1, keepdims=True)
    want = np.mean(-(yv * np.log(pv)).sum(1))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    dz = (pv - yv) / 16
    np.testing.assert_allclose(K.get_value(w2), w2v - 0.1 * hv.T @ dz, rtol=1e-4, atol=1e-6)
