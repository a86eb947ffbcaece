"""A scan whose body is one native segment runs its whole time loop in one native call
(``symk.runtime.scan_loop``): results equal the Python loop's bit for bit and the reference
executor's to float tolerance (forward and gradients, go_backwards, masks, an LSTM cell with
gate slices, map_fn and foldl), one loop call per scan, and bodies it cannot run (random
draws, carries that change shape) keep the Python loop."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.runtime import scan_loop

RNG = np.random.default_rng(3)


@pytest.fixture
def loops(monkeypatch):
    """Counts calls of the native loop function."""
    calls = []
    real = scan_loop.loop_function()

    def counting():
        def call(*args):
            calls.append(args)
            return real(*args)
        return call
    monkeypatch.setattr(scan_loop, "loop_function", counting)
    return calls


def _lstm_step(units, W, U, b):
    def step(xt, states):
        h_tm1, c_tm1 = states
        z = K.dot(xt, W) + K.dot(h_tm1, U) + b
        i = K.sigmoid(z[:, :units])
        f = K.sigmoid(z[:, units:2 * units])
        g = K.tanh(z[:, 2 * units:3 * units])
        o = K.sigmoid(z[:, 3 * units:])
        c = f * c_tm1 + i * g
        h = o * K.tanh(c)
        return h, [h, c]
    return step


def _graph(go_backwards: bool, masked: bool):
    units, feat, steps = 3, 4, 6
    x = K.placeholder((None, steps, feat))
    m = K.placeholder((None, steps)) if masked else None
    W = K.variable(RNG.standard_normal((feat, 4 * units)).astype("f4") * 0.5)
    U = K.variable(RNG.standard_normal((units, 4 * units)).astype("f4") * 0.5)
    b = K.variable(RNG.standard_normal(4 * units).astype("f4") * 0.1)
    h0 = K.zeros_like(x[:, 0, :units])
    last, outs, states = K.rnn(_lstm_step(units, W, U, b), x, [h0, h0],
                               go_backwards=go_backwards, mask=m)
    loss = K.sum(outs * outs) + K.sum(last) + K.sum(states[1])
    grads = K.gradients(loss, [W, U, b, x])
    feeds = [x] + ([m] if masked else [])
    xv = RNG.standard_normal((5, steps, feat)).astype("f4")
    vals = [xv]
    if masked:
        mv = np.ones((5, steps), "f4")
        mv[1, 4:] = 0
        mv[3, :2] = 0
        vals.append(mv)
    return feeds, [last, outs, states[0], states[1]] + grads, vals


def _scans(f) -> int:
    """The number of loops in a function's schedule (one per scan, whatever its results)."""
    return len({id(e.node.attrs["body"]) for e in f.fn.schedule.externs
                if e.node.op.name == "scan"})


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_lstm_forward_and_gradients_in_native_loops(go_backwards, masked, loops, monkeypatch):
    feeds, outs, vals = _graph(go_backwards, masked)
    f = K.function(feeds, outs, device="cpu")
    got = f(vals)
    # every loop (forward, and backward through time) is one native call
    assert len(loops) == _scans(f) >= 2
    want = K.function(feeds, outs, device="interp")(vals)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=3e-4, atol=3e-5)
    monkeypatch.setenv("SYMK_NATIVE_SCAN_LOOP", "0")  # read at every loop
    loops.clear()
    slow = f(vals)
    assert loops == []
    for g, s in zip(got, slow):
        np.testing.assert_array_equal(g, s)


def test_map_fn_and_foldl_run_native(loops):
    x = K.placeholder((7, 3))
    sq = K.map_fn(lambda r: K.exp(r) * 2.0, x)
    tot = K.foldl(lambda acc, r: acc + K.sum(r * r), x, initializer=K.constant(0.0))
    f = K.function([x], [sq, tot], device="cpu")
    xv = RNG.standard_normal((7, 3)).astype("f4")
    got_sq, got_tot = f([xv])
    np.testing.assert_allclose(got_sq, np.exp(xv) * 2, rtol=1e-6)
    np.testing.assert_allclose(got_tot, (xv.astype("f8") ** 2).sum(), rtol=1e-5)
    assert len(loops) == _scans(f) == 2


def test_a_body_drawing_random_numbers_keeps_the_python_loop(loops):
    x = K.placeholder((None, 4, 3))

    def step(xt, states):
        h = K.dropout(xt, 0.5, seed=1) + states[0]
        return h, [h]
    last, outs, _ = K.rnn(step, x, [K.zeros_like(x[:, 0, :])])
    f = K.function([x], [outs], device="cpu")
    (got,) = f([np.ones((2, 4, 3), "f4")])
    assert got.shape == (2, 4, 3) and loops == []


def test_empty_and_single_step_sequences(loops):
    x = K.placeholder((None, None, 2))
    w = K.variable(np.eye(2, dtype="f4") * 0.5)

    def step(xt, states):
        h = K.tanh(K.dot(xt, w) + states[0])
        return h, [h]
    last, outs, _ = K.rnn(step, x, [K.zeros_like(x[:, 0, :])])
    f = K.function([x], [last, outs], device="cpu")
    x1 = RNG.standard_normal((3, 1, 2)).astype("f4")
    got_last, got_outs = f([x1])
    np.testing.assert_allclose(got_last, np.tanh(x1[:, 0] @ (np.eye(2) * 0.5)), rtol=1e-6)
    assert got_outs.shape == (3, 1, 2)
    assert len(loops) == 1
    # a longer sequence in the same function: the same body, another signature
    x9 = RNG.standard_normal((4, 9, 2)).astype("f4")
    got9 = f([x9])
    want9 = K.function([x], [last, outs], device="interp")([x9])
    for g, w_ in zip(got9, want9):
        np.testing.assert_allclose(g, w_, rtol=1e-5, atol=1e-6)


def test_python_loop_reuses_stacked_outputs_only_once_dropped(monkeypatch):
    """The Python loop's stacked outputs come from rings of buffers: after the first calls no
    new buffer is made, a result the caller still holds is never written by a later call, and
    every call's numbers are the reference executor's.  (Stacks above the plan's small-input
    size: the plan itself keeps smaller arrays alive for a while.)"""
    from symk.runtime import driver, scan_cpu

    handed: list[int] = []

    class Spy(scan_cpu.Ring):
        def get(self, shape):
            ent = super().get(shape)
            handed.append(ent[1])
            return ent

    monkeypatch.setattr(scan_cpu, "Ring", Spy)
    monkeypatch.setenv("SYMK_NATIVE_SCAN_LOOP", "0")
    shape = (64, 20, 16)
    assert np.prod(shape) * 4 > driver.SMALL_INPUT_BYTES
    x = K.placeholder(shape)
    w = K.variable(RNG.standard_normal((16, 16)).astype("f4") * 0.2)

    def step(xt, states):
        h = K.tanh(K.dot(xt, w) + states[0])
        return h, [h]
    _, outs, _ = K.rnn(step, x, [K.zeros_like(x[:, 0, :])])
    (gw,) = K.gradients(K.sum(outs * outs), [w])
    f = K.function([x], [outs, gw], device="cpu")
    ref = K.function([x], [outs, gw], device="interp")
    a, b = (RNG.standard_normal(shape).astype("f4") for _ in range(2))
    want_a, want_b = ref([a]), ref([b])
    first = f([a])
    kept = [r.copy() for r in first]
    for _ in range(4):
        got = f([b])
        for g, wv in zip(got, want_b):
            np.testing.assert_allclose(g, wv, rtol=1e-4, atol=1e-5)
    for r, k, wv in zip(first, kept, want_a):
        np.testing.assert_array_equal(r, k)  # held results were never written again
        np.testing.assert_allclose(r, wv, rtol=1e-4, atol=1e-5)
    per_call = len(handed) // 5
    assert per_call >= 2  # the forward loop's outputs and the backward loop's
    later = handed[per_call:]  # calls 2-5 reuse buffers (a fresh one per output each: 4x)
    assert len(set(later)) <= len(later) // 2, (len(set(later)), len(later))
