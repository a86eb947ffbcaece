"""Loops split by rows across threads (``scan_cpu._run_rows``): forward loops and the loops of
their gradients give the numbers of the whole loop and of a numpy loop, with uneven shares,
masks, ``go_backwards``, several states and float64; loops whose step mixes rows run whole;
the split-or-whole choice is timed per signature."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.runtime import scan_cpu, threads
from symk.runtime.tuning import AlgoTuner

B, T, F, U = 7, 6, 4, 5


@pytest.fixture
def split(monkeypatch):
    """Every separable loop split into 3 shares (7 rows: 2, 2, 3); yields the count of
    loops that ran split."""
    ran = [0]
    run_rows = scan_cpu._run_rows

    def counted(*a, **k):
        r = run_rows(*a, **k)
        ran[0] += r is not None
        return r

    def rows_tuner(*a, **k):
        t = AlgoTuner(["rows", "whole"])
        t.best = "rows"
        return t
    monkeypatch.setattr(scan_cpu, "_run_rows", counted)
    monkeypatch.setattr(scan_cpu, "_tuner", rows_tuner)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(threads, "kernel_threads", lambda cap: 3)
    return ran


def _data(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, F)).astype(dtype)
    h0 = rng.standard_normal((B, U)).astype(dtype)
    w = (rng.standard_normal((F, U)) * 0.5).astype(dtype)
    u = (rng.standard_normal((U, U)) * 0.4).astype(dtype)
    b = (rng.standard_normal((U,)) * 0.1).astype(dtype)
    return x, h0, w, u, b


def _reference(x, h0, w, u, b, mask=None, back=False):
    x, h, w, u, b = (a.astype(np.float64) for a in (x, h0, w, u, b))
    outs = []
    prev = np.zeros_like(h)
    order = range(T - 1, -1, -1) if back else range(T)
    for t in order:
        new = np.tanh(x[:, t] @ w + b + h @ u)
        if mask is not None:
            keep = mask[:, t:t + 1] > 0
            new, h = np.where(keep, new, prev), np.where(keep, new, h)
        else:
            h = new
        prev = new
        outs.append(new)
    return np.stack(outs, 1), h


def _simple_fn(dtype, mask=None, back=False, grads=False, bias=True):
    x = K.placeholder((B, T, F), dtype=dtype)
    h0 = K.placeholder((B, U), dtype=dtype)
    xv, hv, wv, uv, bv = _data(dtype)
    if not bias:
        bv = np.zeros_like(bv)
    w, u, b = (K.variable(v, dtype=dtype) for v in (wv, uv, bv))

    def step(xt, states):
        z = K.dot(xt, w) + K.dot(states[0], u)
        h = K.tanh(K.bias_add(z, b) if bias else z)
        return h, [h]
    m = None if mask is None else K.constant(mask)
    _, outs, states = K.rnn(step, x, [h0], mask=m, go_backwards=back)
    res = [outs, states[0]]
    if grads:
        r = K.constant(np.random.default_rng(1).standard_normal((B, T, U)).astype(dtype))
        res = K.gradients(K.sum(outs * r) + K.sum(states[0]), [x, h0, w, u])
    return K.function([x, h0], res), [xv, hv], (xv, hv, wv, uv, bv)


MASK = (np.random.default_rng(2).random((B, T)) > 0.3).astype("float32")


@pytest.mark.parametrize("mask,back", [(None, False), (None, True), (MASK, False),
                                       (MASK, True)])
def test_split_forward_matches_numpy_and_the_whole_loop(split, monkeypatch, mask, back):
    f, feed, data = _simple_fn("float32", mask, back)
    outs, last = f(feed)
    assert split[0] == 1
    want_outs, want_last = _reference(*data, mask=mask, back=back)
    np.testing.assert_allclose(outs, want_outs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, want_last, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT", False)
    whole = f(feed)
    assert split[0] == 1
    np.testing.assert_allclose(outs, whole[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(last, whole[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mask,back", [(None, False), (MASK, True)])
def test_split_gradient_loops_match_the_whole_loops(split, monkeypatch, mask, back):
    """(Without a bias: its gradient is accumulated over the rows in the backward loop, which
    then runs whole.)"""
    f, feed, _ = _simple_fn("float64", mask, back, grads=True, bias=False)
    got = f(feed)
    loops = split[0]
    assert loops >= 2  # the forward loop and the backward loops
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT", False)
    want = f(feed)
    assert split[0] == loops
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_split_lstm_like_step_with_two_states(split, monkeypatch):
    rng = np.random.default_rng(4)
    x = K.placeholder((B, T, F))
    w = K.variable(rng.standard_normal((F, 4 * U)).astype("f4") * 0.3)
    u = K.variable(rng.standard_normal((U, 4 * U)).astype("f4") * 0.3)

    def step(xt, states):
        h, c = states
        z = K.dot(xt, w) + K.dot(h, u)
        i, f_, g, o = (z[:, k * U:(k + 1) * U] for k in range(4))
        c2 = K.sigmoid(f_) * c + K.sigmoid(i) * K.tanh(g)
        h2 = K.sigmoid(o) * K.tanh(c2)
        return h2, [h2, c2]
    zeros = K.zeros_like(x[:, 0, :1]) * K.zeros((1, U))
    _, outs, states = K.rnn(step, x, [zeros, zeros], mask=K.constant(MASK))
    f = K.function([x], [outs, states[1]] + K.gradients(K.sum(outs), [w, u]))
    xv = rng.standard_normal((B, T, F)).astype("f4")
    got = f([xv])
    assert split[0] >= 1
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT", False)
    for g, w_ in zip(got, f([xv])):
        np.testing.assert_allclose(g, w_, rtol=1e-5, atol=1e-6)


def test_a_bias_gradient_keeps_the_backward_loop_whole(split):
    f, feed, _ = _simple_fn("float64", grads=True)
    f(feed)
    assert split[0] == 1  # the forward loop only


def test_a_step_mixing_rows_runs_whole(split):
    x = K.placeholder((B, T, F))
    w = K.variable(np.full((F, U), 0.1, "f4"))

    def step(xt, states):
        h = K.tanh(K.dot(xt, w) + K.mean(states[0], axis=0, keepdims=True))
        return h, [h]
    _, outs, _ = K.rnn(step, x, [K.zeros((B, U))])
    xv = np.random.default_rng(0).standard_normal((B, T, F)).astype("f4")
    got = K.function([x], [outs])([xv])[0]
    assert split[0] == 0
    h = np.zeros((B, U))
    for t in range(T):
        h = np.tanh(xv[:, t] @ np.full((F, U), 0.1) + h.mean(0, keepdims=True))
        np.testing.assert_allclose(got[:, t], h, rtol=1e-5, atol=1e-6)


def test_split_or_whole_is_timed_then_kept(monkeypatch):
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_SETTLE_S", 0.0)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(threads, "kernel_threads", lambda cap: 2)
    made: list[AlgoTuner] = []
    tuner = scan_cpu._tuner

    def spy(*a, **k):
        t = tuner(*a, **k)
        if t is not None and t not in made:
            made.append(t)
        return t
    monkeypatch.setattr(scan_cpu, "_tuner", spy)
    f, feed, data = _simple_fn("float32")
    want = _reference(*data)
    for _ in range(1 + 2 * scan_cpu.ROW_SPLIT_TRIES + 2):
        outs, last = f(feed)
        np.testing.assert_allclose(outs, want[0], rtol=1e-5, atol=1e-5)
    assert len(made) == 1
    t = made[0]
    assert t.best in ("rows", "whole")
    assert all(len(v) == scan_cpu.ROW_SPLIT_TRIES for v in t.times.values())


def test_loops_split_before_they_are_timed(monkeypatch):
    """Until BLAS's threads have settled (ROW_SPLIT_SETTLE_S after the plan's products moved
    to symk's threads) a loop runs split, untimed."""
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_SETTLE_S", 3600.0)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_WORK", 0)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(threads, "kernel_threads", lambda cap: 2)
    ran = []
    run_rows = scan_cpu._run_rows
    monkeypatch.setattr(scan_cpu, "_run_rows", lambda *a: ran.append(1) or run_rows(*a))
    monkeypatch.setattr(scan_cpu, "_tuner", lambda *a: pytest.fail("timed too early"))
    f, feed, data = _simple_fn("float32")
    want = _reference(*data)
    for _ in range(3):
        np.testing.assert_allclose(f(feed)[0], want[0], rtol=1e-5, atol=1e-5)
    assert len(ran) == 3
