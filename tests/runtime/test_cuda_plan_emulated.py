"""The ``cuda`` device end to end without a GPU: its compile function (``compile_cuda``) and
its plan (``CudaPlan``) run with a stand-in CuPy whose arrays are numpy arrays and whose
``RawModule`` compiles the CUDA C with the CPU emulator (``tests/cuda_emulator``) and launches
its kernels there.  It checks what the emulator tests of single kernels cannot: the plan's
steps, launch arguments, cuBLAS stand-ins and host round trips, against numpy."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from symk import backend as K
from symk.codegen.cuda_launch import DeviceProps
from symk.runtime import cuda
from tests.cuda_emulator.cpu_emulate import compile_kernels, launch


class _Module:
    """``cupy.RawModule``: the source compiled for the CPU emulator."""

    def __init__(self, code: str, options: tuple = ()) -> None:
        self.code = code
        self.lib = compile_kernels(code)
        self.launches: list[str] = []

    def get_function(self, name: str):
        def run(grid, block, args):
            self.launches.append(name)
            launch(self.lib, name, grid, block, list(args))
        return run


def _standin() -> types.ModuleType:
    cp = types.ModuleType("cupy")
    cp.asarray = np.asarray
    cp.ascontiguousarray = np.ascontiguousarray
    cp.empty = np.empty
    cp.matmul = np.matmul
    cp.asnumpy = np.asarray
    cp.array = np.array
    cp.RawModule = _Module
    return cp


@pytest.fixture
def emulated_cuda(monkeypatch):
    cp = _standin()
    props = DeviceProps(name="emulator", sm_count=2, max_threads=1024, compute_capability="80")
    monkeypatch.setattr(cuda, "require_cuda", lambda: (cp, props))
    monkeypatch.setitem(sys.modules, "cupy", cp)  # (``cuda.finish`` imports it)
    return cp


def test_a_dense_softmax_layer_runs_on_the_cuda_plan(emulated_cuda):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((8, 5)).astype(np.float32)
    b0 = rng.standard_normal(5).astype(np.float32)
    x = K.placeholder((None, 8))
    w, b = K.variable(w0), K.variable(b0)
    h = K.relu(K.dot(x, w) + b)
    y = K.softmax(h)
    s = K.sum(K.exp(h) * 0.5, axis=1)
    f = K.function([x], [y, s], device="cuda")
    xv = rng.standard_normal((6, 8)).astype(np.float32)
    got_y, got_s = f([xv])
    hv = np.maximum(xv @ w0 + b0, 0)
    e = np.exp(hv - hv.max(1, keepdims=True))
    np.testing.assert_allclose(got_y, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_s, (np.exp(hv) * 0.5).sum(1), rtol=1e-5)
    plan = f.fn.plans[0].executor
    assert isinstance(plan, cuda.CudaPlan)
    assert plan.module is not None and plan.module.launches  # kernels ran on the emulator
    assert set(plan.module.launches) <= set(plan.rendered)


def test_updates_are_stored_and_a_float16_kernel_runs_on_the_host(emulated_cuda):
    """An SGD-like update goes through ``cuda.finish``; a kernel the renderer rejects (float16)
    takes the host round trip."""
    v = K.variable(np.ones(4, np.float32))
    x = K.placeholder((4,))
    f = K.function([x], [K.sum(x * 2.0)], updates=[(v, v - 0.5 * x)], device="cuda")
    xv = np.arange(4, dtype=np.float32)
    (out,) = f([xv])
    np.testing.assert_allclose(out, 12.0)
    np.testing.assert_allclose(K.get_value(v), 1 - 0.5 * xv)
    h = K.placeholder((3,), dtype="float16")
    g = K.function([h], [K.exp(h) + 1.0], device="cuda")
    hv = np.array([0, 1, 2], np.float16)
    np.testing.assert_allclose(g([hv])[0], np.exp(hv) + 1, rtol=1e-3)
    assert not g.fn.plans[0].executor.lowered  # nothing was rendered for float16
