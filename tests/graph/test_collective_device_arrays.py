"""The collective ops' references on arrays of another array module (as CuPy's device arrays):
single allreduces and broadcasts, and groups, hand the communicator arrays of that module
(NCCL reduces them on device pointers) and return arrays of it, never numpy copies.  A
stand-in module wraps numpy; a stand-in communicator of two identical ranks records what it
is given."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from symk.graph.ops import collective

MODULE = "symk_test_device_arrays"


class DevArray:
    """A 'device' array: numpy underneath, its own module for ``_array_module``."""

    def __init__(self, host: np.ndarray) -> None:
        self.host = host

    shape = property(lambda self: self.host.shape)
    size = property(lambda self: self.host.size)
    dtype = property(lambda self: self.host.dtype)

    def reshape(self, *shape):
        return DevArray(self.host.reshape(*shape))

    def __getitem__(self, key):
        return DevArray(self.host[key])

    def __setitem__(self, key, value):
        self.host[key] = value.host if isinstance(value, DevArray) else value


DevArray.__module__ = MODULE


def _module() -> types.ModuleType:
    m = types.ModuleType(MODULE)

    def unwrap(a):
        return a.host if isinstance(a, DevArray) else a

    m.empty = lambda n, dt: DevArray(np.empty(n, dt))
    m.array = lambda a, copy=True: DevArray(np.array(unwrap(a), copy=copy))
    m.asarray = lambda a: a if isinstance(a, DevArray) else DevArray(np.asarray(a))
    m.ascontiguousarray = lambda a: DevArray(np.ascontiguousarray(unwrap(a)))
    return m


class TwoSameRanks:
    rank, size = 0, 2

    def __init__(self) -> None:
        self.given: list[str] = []

    def allreduce(self, src, dst, what):
        self.given.append(type(src).__name__)
        dst.host[...] = 2 * src.host

    def broadcast_(self, flat, root, what):
        self.given.append(type(flat).__name__)


@pytest.fixture
def comm(monkeypatch):
    monkeypatch.setitem(sys.modules, MODULE, _module())
    c = TwoSameRanks()
    collective.set_communicator(c)
    yield c
    collective.set_communicator(None)


def test_device_arrays_stay_on_the_device(comm):
    x = DevArray(np.arange(6, dtype="float32").reshape(2, 3))
    y = collective.Allreduce().ref(x)
    assert isinstance(y, DevArray) and y.shape == (2, 3)
    np.testing.assert_array_equal(y.host, 2 * x.host)
    np.testing.assert_array_equal(x.host, np.arange(6).reshape(2, 3))  # kept
    b = collective.Broadcast().ref(x, root=1)
    assert isinstance(b, DevArray) and b.host is not x.host
    np.testing.assert_array_equal(b.host, x.host)
    outs = collective.reduce_group([x, DevArray(np.ones(4, "float32"))])
    assert all(isinstance(o, DevArray) for o in outs)
    np.testing.assert_array_equal(outs[1].host, np.full(4, 2.0))
    assert comm.given == ["DevArray"] * 3


def test_without_a_communicator_a_device_array_is_copied_on_the_device(monkeypatch):
    monkeypatch.setitem(sys.modules, MODULE, _module())
    x = DevArray(np.ones(3, "float64"))
    for y in (collective.Allreduce().ref(x), collective.Broadcast().ref(x, root=0)):
        assert isinstance(y, DevArray) and y.host is not x.host
        np.testing.assert_array_equal(y.host, x.host)


def test_numbers_and_lists_take_numpy():
    assert collective._array_module(3.0) is np
    assert collective._array_module([1, 2]) is np
    assert collective._array_module(np.float32(1)) is np
    np.testing.assert_array_equal(collective.Allreduce().ref([1.0, 2.0]), [1.0, 2.0])
