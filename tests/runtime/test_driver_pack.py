"""Values that only one collective reads are written by their kernels straight into its flat
buffer (``driver.Pack``), which the collective then reduces in place: the numbers match the
packing path, the buffer is reused only once free, and values anything else reads (a returned
gradient) are never overwritten.  One process, with a stand-in communicator for two identical
ranks (a sum over ranks doubles)."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph.node import apply
from symk.graph.ops import collective
from symk.graph.tensor import Tensor
from tests.collective_standin import comm_fixture  # noqa: F401  (the fixture `comm`)


def _step(return_grads: bool):
    """An SGD step whose gradients are summed over the ranks; its fed and starting values."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 4)).astype("float32")
    b0 = rng.standard_normal(4).astype("float32")
    w, b = K.variable(w0), K.variable(b0)
    x = K.placeholder((None, 5))
    loss = K.mean(K.square(K.tanh(K.dot(x, w) + b)))
    gw, gb = K.gradients(loss, [w, b])
    sw, sb = (Tensor(apply("allreduce", [g.node])) for g in (gw, gb))
    outs = [loss, gw, gb] if return_grads else [loss]
    f = K.function([x], outs, updates=[(w, w - 0.1 * sw), (b, b - 0.1 * sb)], device="cpu")
    xv = rng.standard_normal((8, 5)).astype("float32")
    return f, xv, (w, b), (w0, b0)


def _numpy_grads(xv, w, b):
    z = xv @ w + b
    t = np.tanh(z)
    dz = 2 * t * (1 - t * t) / t.size
    return xv.T @ dz, dz.sum(0)


@pytest.mark.parametrize("return_grads", [False, True])
def test_gradients_are_written_into_the_collectives_buffer(comm, return_grads):
    f, xv, (w, b), (wv, bv) = _step(return_grads)
    for _ in range(4):  # the flat buffers ping-pong: each step must still be right
        gw, gb = _numpy_grads(xv, wv, bv)
        got = f([xv])
        if return_grads:  # read by the caller too: summed from a packed copy
            np.testing.assert_allclose(got[1], gw, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[2], gb, rtol=1e-5, atol=1e-6)
        wv, bv = wv - 0.1 * 2 * gw, bv - 0.1 * 2 * gb
        np.testing.assert_allclose(K.get_value(w), wv, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(K.get_value(b), bv, rtol=1e-5, atol=1e-6)
    assert comm.calls == [("allreduce", 5 * 4 + 4)] * 4, comm.calls
    assert comm.in_place == [not return_grads] * 4


def test_packed_recognizes_only_a_donated_buffer_tiled_in_order():
    flat = np.arange(10, dtype="float32")
    a, b = flat[:6].reshape(2, 3), flat[6:]
    assert collective.packed([a, b]) is None  # not donated
    collective.donate(flat)
    assert collective.packed([a, b]) is flat
    assert collective.packed([b, a]) is None  # out of order
    assert collective.packed([a]) is None  # does not reach the end
    assert collective.packed([flat[:6:2], flat[6:]]) is None  # not contiguous
    assert collective.packed([a, flat[6:].astype("float64")]) is None  # a copy
    assert collective.packed([]) is None
    out = collective.reduce_group([a, b])  # no communicator: the views themselves
    assert all(np.shares_memory(o, flat) for o in out)


def test_a_computed_tensor_is_summed_where_its_kernel_wrote_it(comm):
    x = K.placeholder((None, 3))
    f = K.function([x], [Tensor(apply("allreduce", [(x + 1.0).node]))], device="cpu")
    xv = np.arange(6, dtype="float32").reshape(2, 3)
    first = f([xv])[0]
    second = f([xv + 1])[0]  # the first result is held: a fresh buffer
    np.testing.assert_array_equal(first, 2 * (xv + 1))
    np.testing.assert_array_equal(second, 2 * (xv + 2))
    assert comm.calls == [("allreduce", 6)] * 2 and comm.in_place == [True, True]
    fed = K.function([x], [Tensor(apply("allreduce", [x.node]))], device="cpu")
    np.testing.assert_array_equal(fed([xv])[0], 2 * xv)
    np.testing.assert_array_equal(xv, np.arange(6).reshape(2, 3))  # the input is kept
    assert comm.in_place[-1] is False
