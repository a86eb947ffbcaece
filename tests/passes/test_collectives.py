"""The ``collectives`` pass and the collective ops in one process, with a stand-in
communicator for a job of two identical ranks (a sum over ranks doubles, a broadcast keeps):
independent allreduces become one ``allreduce_group`` (one collective per call) per dtype and
wave, the numbers match numpy, the ops are never folded, and without a communicator every
collective is the identity."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph.node import apply
from symk.graph.ops import collective
from symk.graph.tensor import Tensor
from symk.passes.collectives import group_allreduces
from tests.collective_standin import comm_fixture  # noqa: F401  (the fixture `comm`)
from tests.harness import available_devices


def _ops(f) -> list[str]:
    return [e.node.op.name for e in f.fn.schedule.externs]


@pytest.mark.parametrize("device", available_devices())
def test_independent_allreduces_travel_in_one_buffer(comm, device):
    x = K.placeholder((None, 3))
    w = K.variable(np.arange(6, dtype="float32").reshape(3, 2))
    y = K.dot(x, w)
    parts = [apply("allreduce", [n.node]) for n in (y, K.sum(x, axis=0), x * 2.0)]
    wide = apply("allreduce", [K.cast(x, "float64").node])
    later = apply("allreduce", [K.sum(Tensor(parts[0])).node])  # depends on the first
    f = K.function([x], [Tensor(n) for n in (*parts, wide, later)], device=device)
    ops = _ops(f)
    # wave 0: one float32 group of three, one float64 allreduce; wave 1: one allreduce
    assert ops.count("allreduce_group") == 3 and ops.count("allreduce") == 2, ops
    xv = np.arange(12, dtype="float32").reshape(4, 3)
    got = f([xv])
    want = [2 * xv @ np.arange(6).reshape(3, 2), 2 * xv.sum(0), 4 * xv, 2 * xv.astype("f8"),
            4 * (xv @ np.arange(6).reshape(3, 2)).sum()]
    for g, wv in zip(got, want):
        np.testing.assert_allclose(g, wv, rtol=1e-6)
    assert got[3].dtype == np.float64
    assert sorted(comm.calls) == sorted([("allreduce", 8 + 3 + 12), ("allreduce", 12),
                                         ("allreduce", 1)]), comm.calls


def test_pass_structure_and_order():
    a, b = K.placeholder((2,)), K.placeholder((3,))
    r1, r2 = apply("allreduce", [a.node]), apply("allreduce", [b.node])
    out = group_allreduces([r1, r2])
    assert [n.op.name for n in out] == ["allreduce_group"] * 2
    assert [n.attrs["result"] for n in out] == [0, 1]
    assert out[0].inputs == out[1].inputs == (a.node, b.node)
    single = apply("allreduce", [a.node])
    assert group_allreduces([single]) == [single]  # alone: unchanged


def test_collectives_are_not_folded_and_broadcast_reaches_every_rank(comm):
    c = K.constant(np.ones(3, "float32"))
    s = Tensor(apply("allreduce", [c.node]))
    b = Tensor(apply("broadcast", [c.node], root=0))
    f = K.function([], [s, b])
    assert sorted(_ops(f)) == ["allreduce", "broadcast"]
    for _ in range(2):  # run at every call, never at compile time
        got_s, got_b = f([])
        np.testing.assert_allclose(got_s, 2.0)
        np.testing.assert_allclose(got_b, 1.0)
    assert comm.calls == [("allreduce", 3), ("broadcast", 3)] * 2


def test_identity_without_a_communicator():
    x = K.placeholder((None, 2))
    outs = [Tensor(apply(op, [x.node], **kw)) for op, kw in
            (("allreduce", {}), ("broadcast", {"root": 0}))]
    xv = np.arange(6, dtype="float32").reshape(3, 2)
    for got in K.function([x], outs)([xv]):
        np.testing.assert_array_equal(got, xv)


def test_group_of_several_dtypes_is_refused():
    from symk.errors import SymkError

    a, b = K.placeholder((2,)), K.placeholder((2,), dtype="float64")
    with pytest.raises(SymkError, match="several dtypes"):
        apply("allreduce_group", [a.node, b.node], result=0)


def test_the_average_scaling_lands_in_the_update_kernels(comm):
    """A training step's averaged gradients: one collective between the gradient kernels and
    the update kernels, and the 1/size scaling costs no kernel of its own (the same kernel
    count as the plain sum)."""
    from symk.graph import build as gb

    def step(scaled: bool):
        x = K.placeholder((None, 4))
        w = K.variable(np.ones((4, 3), "float32") * 0.1)
        b = K.variable(np.zeros(3, "float32"))
        m = K.variable(np.zeros((4, 3), "float32"))
        loss = K.mean(K.square(K.tanh(K.dot(x, w) + b)))
        grads = []
        for g in K.gradients(loss, [w, b]):
            s = apply("allreduce", [g.node])
            grads.append(Tensor(gb.mul(s, gb.const(np.float32(0.5))) if scaled else s))
        new_m = 0.9 * m - 0.1 * grads[0]
        f = K.function([x], [loss], updates=[(m, new_m), (w, w + new_m),
                                             (b, b - 0.1 * grads[1])])
        return f, (w, b)

    plain, _ = step(False)
    avg, (w, b) = step(True)
    assert _ops(avg).count("allreduce_group") == 2 and "allreduce" not in _ops(avg)
    assert len(avg.fn.schedule.kernels) == len(plain.fn.schedule.kernels)
    xv = np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)
    w0 = K.get_value(w)
    avg([xv])
    assert comm.calls == [("allreduce", 12 + 3)]
    # doubled by the two "ranks", halved by the average: the plain step's update
    ref_w = K.variable(w0)
    loss = K.mean(K.square(K.tanh(K.dot(K.constant(xv), ref_w) + K.zeros(3))))
    (gw,) = K.gradients(loss, [ref_w])
    np.testing.assert_allclose(K.get_value(w), w0 + (-0.1 * K.eval(gw)), rtol=1e-5, atol=1e-7)


def test_result_buffers_are_reused_only_once_free():
    """A collective's result buffer (kept to spare page faults) is handed out again only when
    neither it nor a view of it is held."""
    dt = np.dtype("float32")
    a = collective.result_buffer(1000, dt)
    view = a.reshape(10, 100)
    del a
    b = collective.result_buffer(1000, dt)
    assert not np.shares_memory(b, view)  # the view still holds the first one
    addr_b = b.ctypes.data
    del b
    c = collective.result_buffer(1000, dt)
    assert c.ctypes.data == addr_b  # free again: reused
    assert collective.result_buffer(1000, np.dtype("float64")).dtype == np.float64
