"""The device table (``symk.runtime.devices``): its names are the ones config accepts, every
entry builds a plan giving numpy's numbers (cuda: or its DeviceError naming what is missing),
plan-cache hits build the same plan class, ``function.py`` names no device, and a device
registered by a test (an InterpPlan counting its runs) is used by ``K.function(device=...)``
with nothing but its table entry."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import symk.runtime as runtime_pkg
from symk import backend as K
from symk import config
from symk.errors import ArgumentError, DeviceError
from symk.runtime import devices, plan_cache
from symk.runtime.devices import DEVICES, Device, register_device, unregister_device
from symk.runtime.interp import InterpPlan
from tests.fresh_python import fresh_python

RUNTIME = Path(runtime_pkg.__file__).parent


def _cuda_reason() -> str | None:
    try:
        DEVICES["cuda"].check()
    except DeviceError as e:
        return str(e)
    return None


def _small(device: str):
    """f(x) = [tanh(x * w + 1), sum over rows], with the update w <- w + mean(x): the fn, w and
    numpy's function of (x, w)."""
    w = K.variable(np.linspace(-1.0, 1.0, 3, dtype=np.float32))
    x = K.placeholder((None, 3), name="x")
    h = K.tanh(x * w + 1.0)
    f = K.function([x], [h, K.sum(h, axis=0)], updates=[(w, w + K.mean(x, axis=0))],
                   device=device)

    def ref(xv: np.ndarray, wv: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        hv = np.tanh(xv * wv + 1.0)
        return [hv, hv.sum(axis=0)], wv + xv.mean(axis=0)
    return f, w, ref


def _check_numbers(device: str) -> object:
    f, w, ref = _small(device)
    rng = np.random.default_rng(0)
    for _ in range(2):
        xv = rng.standard_normal((4, 3)).astype(np.float32)
        want, want_w = ref(xv, K.get_value(w))
        got = f([xv])
        for g, r in zip(got, want):
            assert isinstance(g, np.ndarray)
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(K.get_value(w), want_w, rtol=1e-6)
    return f


def test_table_names_are_configs_device_names() -> None:
    assert tuple(DEVICES) == config._DEVICES == config.device_names()
    assert devices.BUILTIN == frozenset(config._DEVICES)
    for name, dev in DEVICES.items():
        assert dev.name == name


@pytest.mark.parametrize("name", ["cpu", "interp"])
def test_host_devices_build_their_plan_class_and_give_numpys_numbers(name: str) -> None:
    f = _check_numbers(name)
    (plan,) = f.fn.plans
    assert type(plan.executor) is DEVICES[name].plan_class()


def test_cuda_builds_a_cuda_plan_or_says_what_is_missing() -> None:
    reason = _cuda_reason()
    if reason is not None:
        assert "device 'cuda' is not available" in reason
        x = K.placeholder((None, 3))
        with pytest.raises(DeviceError, match="device 'cuda' is not available: .*(CuPy|NVRTC|"
                                              "driver|device)"):
            K.function([x], [x * 2.0], device="cuda")
        return
    f = _check_numbers("cuda")  # pragma: no cover - needs a GPU
    assert type(f.fn.plans[0].executor) is DEVICES["cuda"].plan_class()


def test_unknown_device_is_an_argument_error() -> None:
    x = K.placeholder((None, 3))
    with pytest.raises(ArgumentError, match="unknown device 'banana'; expected one of 'cpu', "
                                            "'interp', 'cuda'"):
        K.function([x], [x * 2.0], device="banana")


@pytest.mark.parametrize("name", ["cpu", "interp"])
def test_plan_cache_hits_build_the_same_plan_class(name: str, fresh, optimize_calls) -> None:
    first = _check_numbers(name)
    second = _check_numbers(name)
    assert len(optimize_calls) == 1  # the second function was a plan-cache hit
    assert type(second.fn.plans[0].executor) is type(first.fn.plans[0].executor)
    if DEVICES[name].native_prep:
        assert second.fn.plans[0].executor.prep.key == first.fn.plans[0].executor.prep.key


def _device_literals(path: Path) -> list[str]:
    """``x == "cuda"``-style comparisons (and ``in`` tuples of names) with a device name."""
    names = set(config._DEVICES)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for c in [node.left, *node.comparators]:
            elts = c.elts if isinstance(c, (ast.Tuple, ast.List, ast.Set)) else [c]
            for e in elts:
                if isinstance(e, ast.Constant) and e.value in names:
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_runtime_never_switches_on_a_device_name() -> None:
    """Only the table knows the devices: no comparison of a device name in the runtime."""
    found = [hit for p in sorted(RUNTIME.glob("*.py")) if p.name != "devices.py"
             for hit in _device_literals(p)]
    assert found == []
    src = (RUNTIME / "function.py").read_text()
    assert "device ==" not in src and "device !=" not in src and "_finish_cuda" not in src
    assert "import cupy" not in src and "CpuPlan" not in src and "CudaPlan" not in src


# ---------------------------------------------------------------- a device added by a test


class CountingPlan(InterpPlan):
    """The reference executor, counting its runs."""

    runs = 0

    def run(self, feeds):
        type(self).runs += 1
        return super().run(feeds)


@pytest.fixture
def counting():
    """A registered ``counting`` device (removed afterwards), and what its hooks saw."""
    seen: dict[str, int] = {"finish": 0, "require": 0}

    def finish(fn, plan, vals):  # outputs only: this device stores no updates
        seen["finish"] += 1
        return [np.array(vals[s], copy=True) for s in plan.out_slots]

    def require():
        seen["require"] += 1

    CountingPlan.runs = 0
    register_device(Device("counting", CountingPlan, require=require, plan_cache=False,
                           finish=finish))
    try:
        yield seen
    finally:
        unregister_device("counting")


def test_a_registered_device_is_used_by_k_function(counting, monkeypatch) -> None:
    def no_key(*a, **k):
        raise AssertionError("a device without plan cache computed a plan-cache key")
    monkeypatch.setattr(plan_cache, "plan_key", no_key)
    x = K.placeholder((None, 3))
    f = K.function([x], [K.exp(x) * 2.0], device="counting")
    assert counting["require"] == 1
    xv = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    for k in range(3):
        (out,) = f([xv])
        np.testing.assert_allclose(out, np.exp(xv) * 2.0, rtol=1e-6)
        assert CountingPlan.runs == k + 1 and counting["finish"] == k + 1
    assert type(f.fn.plans[0].executor) is CountingPlan


def test_a_registered_device_can_be_the_default_and_goes_away(counting) -> None:
    saved = config.device()
    x = K.placeholder((None, 3))
    config.set_device("counting")
    try:
        f = K.function([x], [x + 1.0])
        f([np.zeros((1, 3), np.float32)])
        assert CountingPlan.runs == 1
    finally:
        config.set_device(saved)
    unregister_device("counting")
    assert "counting" not in DEVICES and "counting" not in config.device_names()
    with pytest.raises(ArgumentError, match="unknown device 'counting'"):
        K.function([x], [x + 1.0], device="counting")


def test_a_device_that_is_not_available_says_so(monkeypatch) -> None:
    def require():
        raise DeviceError("device 'nowhere' is not available: it is a test")
    register_device(Device("nowhere", InterpPlan, require=require))
    try:
        x = K.placeholder((None, 3))
        with pytest.raises(DeviceError, match="'nowhere' is not available: it is a test"):
            K.function([x], [x + 1.0], device="nowhere")
    finally:
        unregister_device("nowhere")


def test_built_in_devices_cannot_be_replaced() -> None:
    with pytest.raises(ArgumentError, match="built-in"):
        register_device(Device("cpu", InterpPlan))
    with pytest.raises(ArgumentError, match="built-in"):
        unregister_device("interp")
    assert DEVICES["cpu"].plan == "symk.runtime.cpu:CpuPlan"


def test_the_table_imports_no_device_code() -> None:
    """Importing symk and running cpu and interp functions imports neither the cuda runtime
    nor CuPy: the table names code by strings, imported on first use."""
    code = ("import sys, numpy as np\n"
            "from symk import backend as K\n"
            "x = K.placeholder((None, 3))\n"
            "for d in ('cpu', 'interp'):\n"
            "    K.function([x], [x * 2.0], device=d)([np.ones((2, 3), np.float32)])\n"
            "print(sorted(m for m in sys.modules if m == 'cupy' or m.startswith(('cupy.', "
            "'symk.runtime.cuda'))))\n")
    assert fresh_python(code).strip() == "[]"


def test_cuda_finish_returns_host_outputs_and_stores_updates(monkeypatch) -> None:
    """The cuda entry's ``finish`` (run here with a numpy stand-in for CuPy): outputs are host
    copies, updates are stored through ``cupy.array`` in the variable's dtype."""
    import types

    from symk.runtime import cuda

    stored: list[np.ndarray] = []

    def array(v, dtype=None, copy=True):
        stored.append(v)
        return np.array(v, dtype=dtype, copy=copy)
    stub = types.SimpleNamespace(asnumpy=np.asarray, asarray=np.asarray, array=array)
    monkeypatch.setitem(sys.modules, "cupy", stub)
    assert DEVICES["cuda"].finisher() is cuda.finish
    f, w, ref = _small("interp")
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    want, want_w = ref(xv, K.get_value(w))
    (plan,) = f.fn.plans
    outs = cuda.finish(f.fn, plan, plan.executor.run([xv]))
    for g, r in zip(outs, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(K.get_value(w), want_w, rtol=1e-6)
