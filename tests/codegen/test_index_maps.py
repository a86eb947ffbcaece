"""Static slices and their gradients inside fused kernels (``Op.index_map``): a slice is a
load of its input at the mapped index, its gradient a guarded load (zero outside the slice),
so an LSTM's gate slices and their gradients cost no extern step.  Kernel counts are checked
on the schedule, numbers against numpy on the cpu device and the reference executor."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.passes.common import check_schedule

RNG = np.random.default_rng(11)


def _ops(f) -> tuple[list[str], list[list[str]]]:
    s = f.fn.schedule
    check_schedule(s)
    return [e.node.op.name for e in s.externs], [[n.op.name for n in k.nodes]
                                                 for k in s.kernels]


def _gates(z):
    u = 4
    i = K.sigmoid(z[:, :u])
    f = K.sigmoid(z[:, u:2 * u])
    g = K.tanh(z[:, 2 * u:3 * u])
    o = K.sigmoid(z[:, 3 * u:])
    return i, f, g, o


def _np_gates(z):
    u = 4
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    return sig(z[:, :u]), sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), sig(z[:, 3 * u:])


@pytest.mark.parametrize("device", ["cpu", "interp"])
def test_lstm_gate_slices_fuse_into_the_cell_kernel(device):
    z = K.placeholder((None, 16))
    c0 = K.placeholder((None, 4))
    i, f, g, o = _gates(z)
    c = f * c0 + i * g
    h = o * K.tanh(c)
    fn = K.function([z, c0], [h, c], device=device)
    zv = RNG.standard_normal((5, 16)).astype("f4")
    cv = RNG.standard_normal((5, 4)).astype("f4")
    got_h, got_c = fn([zv, cv])
    ni, nf, ng, no = _np_gates(zv.astype("f8"))
    want_c = nf * cv + ni * ng
    np.testing.assert_allclose(got_c, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_h, no * np.tanh(want_c), rtol=1e-5, atol=1e-6)
    if device == "cpu":
        externs, kernels = _ops(fn)
        assert "getitem" not in externs
        assert len(kernels) == 1 and kernels[0].count("getitem") == 4


def test_gate_gradients_are_one_kernel_without_scatter_steps():
    z = K.placeholder((None, 16))
    c0 = K.placeholder((None, 4))
    dh = K.placeholder((None, 4))
    i, f, g, o = _gates(z)
    c = f * c0 + i * g
    h = o * K.tanh(c)
    (dz,) = K.gradients(K.sum(h * dh), [z])
    fn = K.function([z, c0, dh], [dz], device="cpu")
    externs, kernels = _ops(fn)
    assert "getitem" not in externs and "slice_grad" not in externs
    assert sum(k.count("slice_grad") for k in kernels) == 4
    zv = RNG.standard_normal((3, 16))
    cv = RNG.standard_normal((3, 4))
    dv = RNG.standard_normal((3, 4))
    # central differences of sum(h * dh) in float64 (the graph runs in float32)
    want = np.zeros_like(zv)
    for idx in np.ndindex(zv.shape):
        e = np.zeros_like(zv)
        e[idx] = 1e-5

        def hv(zz):
            ni, nf, ng, no = _np_gates(zz)
            return np.sum(no * np.tanh(nf * cv + ni * ng) * dv)
        want[idx] = (hv(zv + e) - hv(zv - e)) / 2e-5
    (got,) = fn([zv.astype("f4"), cv.astype("f4"), dv.astype("f4")])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


KEYS = [
    (slice(None), slice(1, 3)), (slice(1, None), 2), (slice(None), slice(None, None, -1)),
    (slice(None, None, 2), slice(3, 0, -2)), (1,), (slice(None), None, slice(0, 1)),
    (Ellipsis, -1), (slice(None), slice(2, 2)), (slice(None), slice(0, 4)),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
@pytest.mark.parametrize("batch", [None, 6])
def test_slices_and_their_gradients_match_numpy(key, batch):
    """Forward: x[key] * 2 + 1 fused with its consumer.  Backward: the gradient of
    sum(x[key] * w), numpy's zeros with w written at key (as a kernel where the slice's
    steps are 1, else by the reference)."""
    if batch is None and key[0] != slice(None):
        pytest.skip("only whole slices of a run-time axis are kernel loads")
    x = K.placeholder((batch, 5))
    xv = RNG.standard_normal((6, 5)).astype("f4")
    y = x[key]
    wv = RNG.standard_normal(np.empty((6, 5))[key].shape).astype("f4")
    w = K.constant(wv)
    (gx,) = K.gradients(K.sum(y * w), [x])
    fn = K.function([x], [y * 2 + 1, gx], device="cpu")
    got_y, got_g = fn([xv])
    np.testing.assert_allclose(got_y, xv[key] * 2 + 1, rtol=1e-6)
    want_g = np.zeros_like(xv)
    want_g[key] = wv
    np.testing.assert_array_equal(got_g, want_g)
    externs, _ = _ops(fn)
    assert "getitem" not in externs


def test_slice_of_a_run_time_axis_stays_an_extern_step():
    x = K.placeholder((None, 5))
    fn = K.function([x], [x[1:] * 2], device="cpu")
    xv = RNG.standard_normal((4, 5)).astype("f4")
    np.testing.assert_allclose(fn([xv])[0], xv[1:] * 2)
    externs, _ = _ops(fn)
    assert externs == ["getitem"]


def test_slice_in_a_reduction_prologue_and_as_a_broadcast_operand():
    x = K.placeholder((None, 6))
    s = K.sum(K.exp(x[:, 1:4]), axis=1)
    b = x * x[:, 2:3]  # a (None, 1) slice broadcast against x
    fn = K.function([x], [s, b], device="cpu")
    xv = RNG.standard_normal((7, 6)).astype("f4")
    got_s, got_b = fn([xv])
    np.testing.assert_allclose(got_s, np.exp(xv[:, 1:4]).sum(1), rtol=1e-5)
    np.testing.assert_allclose(got_b, xv * xv[:, 2:3], rtol=1e-6)
    externs, _ = _ops(fn)
    assert "getitem" not in externs


def test_a_producer_is_never_computed_inside_its_slice_s_kernel():
    x = K.placeholder((8,))
    y = K.exp(x)
    r = y[::-1] + y  # same shape, other indices: exp(x) must be a kernel input of the add
    fn = K.function([x], [r], device="cpu")
    xv = RNG.standard_normal(8).astype("f4")
    np.testing.assert_allclose(fn([xv])[0], np.exp(xv)[::-1] + np.exp(xv), rtol=1e-6)


def test_transposes_are_loads_in_the_kernels_that_read_them():
    y = K.placeholder((3, None, 4))
    t = K.permute_dimensions(y, (1, 0, 2))
    s = K.sum(t, axis=(0, 1))
    e = K.exp(t) * 2.0
    fn = K.function([y], [s, e], device="cpu")
    yv = RNG.standard_normal((3, 5, 4)).astype("f4")
    got_s, got_e = fn([yv])
    np.testing.assert_allclose(got_s, yv.astype("f8").sum((0, 1)), rtol=1e-5)
    np.testing.assert_allclose(got_e, np.exp(yv.transpose(1, 0, 2)) * 2, rtol=1e-6)
    externs, kernels = _ops(fn)
    assert "transpose" not in externs
    assert sum(k.count("transpose") for k in kernels) == 1  # one kernel computes it


def test_gradients_of_gate_slices_cut_the_inner_loop_at_the_slice_bounds():
    """The sum of four column-slice gradients is one kernel whose inner loop is cut at 64,
    128 and 192 (four plain loads, no guards), with the values of a concatenation."""
    z = K.placeholder((None, 256))
    gs = [K.placeholder((None, 64)) for _ in range(4)]
    parts = [z[:, 64 * k:64 * (k + 1)] for k in range(4)]
    (dz,) = K.gradients(sum(K.sum(p * g) for p, g in zip(parts, gs)), [z])
    fn = K.function([z] + gs, [dz], device="cpu")
    vals = [RNG.standard_normal((6, 256)).astype("f4")] + [
        RNG.standard_normal((6, 64)).astype("f4") for _ in range(4)]
    np.testing.assert_array_equal(fn(vals)[0], np.concatenate(vals[1:], axis=1))
    (k,) = [k for k in fn.fn.schedule.kernels if any(n.op.name == "slice_grad" for n in k.nodes)]
    from symk.codegen.lowering import lower_kernel

    prog = lower_kernel(k).program
    bounds = [(prog.ins[r.args[0]].arg, prog.ins[r.args[1]].arg) for r in prog.ins
              if r.op == "range" and r.arg["axis"] == 1]
    assert bounds == [(0, 64), (64, 128), (128, 192), (192, 256)]
    assert not any(i.op == "alu" and i.arg == "where" for i in prog.ins)


def test_cut_loops_with_partial_and_strided_slices():
    x = K.placeholder((None, 10))
    g1 = K.placeholder((None, 3))
    g2 = K.placeholder((None, 4))
    (gx,) = K.gradients(K.sum(x[:, 2:5] * g1) + K.sum(x[:, 6:10] * g2) + K.sum(x), [x])
    fn = K.function([x, g1, g2], [gx], device="cpu")
    vals = [RNG.standard_normal((4, 10)).astype("f4"), RNG.standard_normal((4, 3)).astype("f4"),
            RNG.standard_normal((4, 4)).astype("f4")]
    want = np.ones((4, 10), "f4")
    want[:, 2:5] += vals[1]
    want[:, 6:10] += vals[2]
    np.testing.assert_allclose(fn(vals)[0], want, rtol=1e-6)
