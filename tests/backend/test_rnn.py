"""K.rnn, K.map_fn, K.foldl, K.foldr and K.switch with a lower-rank condition against numpy
loops written here, on every device: scanned and unrolled, masks, go_backwards, constants,
several states, unknown batch size; and the errors of bad calls."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import SymkError
from tests.harness import available_devices

DEVICES = available_devices()
B, T, F, U = 3, 5, 4, 6
_rng = np.random.default_rng(11)
W = (_rng.standard_normal((F, U)) * 0.5).astype(np.float32)
R = (_rng.standard_normal((U, U)) * 0.5).astype(np.float32)
BIAS = _rng.standard_normal(U).astype(np.float32)
X = _rng.standard_normal((B, T, F)).astype(np.float32)
H0 = _rng.standard_normal((B, U)).astype(np.float32)
C0 = _rng.standard_normal((B, U)).astype(np.float32)
MASK = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 1]], np.float32)


def np_rnn(step, x, states, mask=None, go_backwards=False):
    """Keras 2.3.1 (TensorFlow backend) semantics, written as a plain loop."""
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    outs, prev = [], None
    for t in steps:
        o, new = step(x[:, t], states)
        if mask is not None:
            m = mask[:, t].astype(bool)[:, None]
            prev = np.zeros_like(o) if prev is None else prev
            o = np.where(m, o, prev)
            new = [np.where(m, a, b) for a, b in zip(new, states)]
        prev = o
        outs.append(o)
        states = new
    return outs[-1], np.stack(outs, 1), states


def sig(v):
    return 1 / (1 + np.exp(-v))


def np_simple(xt, states):
    h = np.tanh(xt @ W + states[0] @ R + BIAS)
    return h, [h]


def np_lstmish(xt, states):
    h, c = states
    z = xt @ W + h @ R
    c2 = sig(z) * c + np.tanh(z + BIAS)
    h2 = np.tanh(c2) * sig(z)
    return h2 * 2.0, [h2, c2]


def k_simple(w, r, b):
    def step(xt, states):
        h = K.tanh(K.bias_add(K.dot(xt, w) + K.dot(states[0], r), b))
        return h, [h]
    return step


def k_lstmish(w, r, b):
    def step(xt, states):
        h, c = states
        z = K.dot(xt, w) + K.dot(h, r)
        c2 = K.sigmoid(z) * c + K.tanh(z + b)
        h2 = K.tanh(c2) * K.sigmoid(z)
        return h2 * 2.0, [h2, c2]
    return step


def _check(outs, expected, feeds, phs, rtol=2e-5, atol=2e-5):
    for dev in DEVICES:
        got = K.function(phs, outs, device=dev)(feeds)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g.shape == e.shape, f"{dev} output {i}: shape {g.shape} != {e.shape}"
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"{dev} output {i}")


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch_none", [False, True])
def test_rnn_simple(unroll, go_backwards, masked, batch_none):
    bdim = None if batch_none else B
    x = K.placeholder((bdim, T, F))
    h0 = K.placeholder((bdim, U))
    m = K.placeholder((bdim, T)) if masked else None
    w, r, b = K.variable(W), K.variable(R), K.variable(BIAS)
    last, outs, states = K.rnn(k_simple(w, r, b), x, [h0], go_backwards=go_backwards, mask=m,
                               unroll=unroll)
    assert K.int_shape(outs) == (bdim, T, U)
    assert K.int_shape(last) == (bdim, U)
    e_last, e_outs, e_states = np_rnn(np_simple, X, [H0], MASK if masked else None,
                                      go_backwards)
    phs = [x, h0] + ([m] if masked else [])
    feeds = [X, H0] + ([MASK] if masked else [])
    _check([last, outs, states[0]], [e_last, e_outs, e_states[0]], feeds, phs)


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_two_states_output_differs_from_state(unroll, masked):
    x, h0, c0 = K.placeholder((None, T, F)), K.placeholder((None, U)), K.placeholder((None, U))
    m = K.placeholder((None, T, 1)) if masked else None  # (samples, time, 1) masks too
    last, outs, (h, c) = K.rnn(k_lstmish(K.variable(W), K.variable(R), K.variable(BIAS)), x,
                               [h0, c0], mask=m, unroll=unroll)
    e_last, e_outs, (eh, ec) = np_rnn(np_lstmish, X, [H0, C0], MASK if masked else None)
    phs = [x, h0, c0] + ([m] if masked else [])
    feeds = [X, H0, C0] + ([MASK[:, :, None]] if masked else [])
    _check([last, outs, h, c], [e_last, e_outs, eh, ec], feeds, phs)


@pytest.mark.parametrize("unroll", [False, True])
def test_rnn_constants(unroll):
    x, h0 = K.placeholder((None, T, F)), K.placeholder((None, U))
    k = K.placeholder((None, U))
    w = K.variable(W)

    def step(xt, states):
        h, const = states  # Keras appends the constants to the states
        h2 = K.tanh(K.dot(xt, w) * const + h)
        return h2, [h2]

    kv = _rng.standard_normal((B, U)).astype(np.float32)
    last, outs, _ = K.rnn(step, x, [h0], constants=[k], unroll=unroll)

    def np_step(xt, states):
        h2 = np.tanh((xt @ W) * kv + states[0])
        return h2, [h2]
    e_last, e_outs, _ = np_rnn(np_step, X, [H0])
    _check([last, outs], [e_last, e_outs], [X, H0, kv], [x, h0, k])


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_rnn_mask_constants_backwards_together(unroll, go_backwards):
    """A boolean mask, a Keras constant and go_backwards in one loop, with an output narrower
    than the state (the masked output keeps its own previous value); scanned over an unknown
    time dimension (input_length given, as Keras passes it), unrolled over input_length."""
    p_w = _rng.standard_normal((U, 2)).astype(np.float32)
    kv = _rng.standard_normal((B, U)).astype(np.float32)
    x = K.placeholder((None, T if unroll else None, F))
    h0, k = K.placeholder((None, U)), K.placeholder((None, U))
    m = K.placeholder((None, T if unroll else None), dtype="bool")
    w, r, pw = K.variable(W), K.variable(R), K.variable(p_w)

    def step(xt, states):
        h, const = states
        h2 = K.tanh(K.dot(xt, w) * const + K.dot(h, r))
        return K.dot(h2, pw), [h2]

    def np_step(xt, states):
        h2 = np.tanh((xt @ W) * kv + states[0] @ R)
        return h2 @ p_w, [h2]
    last, outs, (h,) = K.rnn(step, x, [h0], go_backwards=go_backwards, mask=m, constants=[k],
                             unroll=unroll, input_length=T)
    e_last, e_outs, (eh,) = np_rnn(np_step, X, [H0], MASK, go_backwards)
    _check([last, outs, h], [e_last, e_outs, eh], [X, H0, kv, MASK.astype(bool)],
           [x, h0, k, m])


def test_rnn_unroll_with_input_length_and_unknown_time():
    x, h0 = K.placeholder((None, None, F)), K.placeholder((None, U))
    step = k_simple(K.variable(W), K.variable(R), K.variable(BIAS))
    last, outs, _ = K.rnn(step, x, [h0], unroll=True, input_length=T)
    e_last, e_outs, _ = np_rnn(np_simple, X, [H0])
    _check([last, outs], [e_last, e_outs], [X, H0], [x, h0])
    # scanned with an unknown time dimension: the length comes from the data
    last, outs, _ = K.rnn(step, x, [h0])
    assert K.int_shape(outs) == (None, None, U)
    _check([last, outs], [e_last, e_outs], [X, H0], [x, h0])


def test_rnn_loop_runs_once_for_all_results(monkeypatch):
    """last_output, outputs and the states are results of one loop, run once per call."""
    from symk.graph.ops import scan

    calls = []
    real = scan.run_scan
    monkeypatch.setattr(scan, "run_scan", lambda *a: calls.append(1) or real(*a))
    x, h0 = K.placeholder((B, T, F)), K.placeholder((B, U))
    last, outs, states = K.rnn(k_lstmish(K.variable(W), K.variable(R), K.variable(BIAS)), x,
                               [h0, h0])
    f = K.function([x, h0], [last, outs, states[0], states[1]], device="interp")
    f([X, H0])
    assert len(calls) == 1


def test_scan_body_compiled_once_on_cpu(monkeypatch):
    """Scanned (not unrolled), the step body is compiled to native code once: not per time
    step, not per call, not per batch size."""
    if "cpu" not in DEVICES:
        pytest.skip("no cpu device")
    from symk.runtime import scan_cpu

    built = []

    class Counting(scan_cpu.BodyPlan):
        def __init__(self, body):
            built.append(body)
            super().__init__(body)
    monkeypatch.setattr(scan_cpu, "BodyPlan", Counting)
    monkeypatch.setattr(scan_cpu, "_compiled", {})
    x, h0 = K.placeholder((None, 7, F)), K.placeholder((None, U))
    w = K.variable(W)

    def step(xt, states):  # a step no other test builds (no shared plan)
        h = K.tanh(K.dot(xt, w) * 0.731 + states[0] * 0.5)
        return h, [h]

    def np_step(xt, states):
        h = np.tanh((xt @ W) * np.float32(0.731) + states[0] * 0.5)
        return h, [h]
    last, outs, _ = K.rnn(step, x, [h0])
    f = K.function([x, h0], [last, outs], device="cpu")
    for b in (3, 5):
        xv = _rng.standard_normal((b, 7, F)).astype(np.float32)
        hv = _rng.standard_normal((b, U)).astype(np.float32)
        e_last, e_outs, _ = np_rnn(np_step, xv, [hv])
        got = f([xv, hv])
        np.testing.assert_allclose(got[0], e_last, rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(got[1], e_outs, rtol=2e-5, atol=2e-5)
    assert len(built) == 1


def test_rnn_step_with_higher_rank_inputs():
    """Per-step inputs of rank 3 (samples, a, b) and a state of rank 2."""
    x, h0 = K.placeholder((None, T, 2, F)), K.placeholder((None, U))
    w = K.variable(W)
    xv = _rng.standard_normal((B, T, 2, F)).astype(np.float32)

    def step(xt, states):
        h = K.tanh(K.sum(K.dot(xt, w), axis=1) + states[0])
        return h, [h]

    def np_step(xt, states):
        h = np.tanh((xt @ W).sum(1) + states[0])
        return h, [h]
    last, outs, _ = K.rnn(step, x, [h0])
    e_last, e_outs, _ = np_rnn(np_step, xv, [H0])
    _check([last, outs], [e_last, e_outs], [xv, H0], [x, h0])


def test_map_fn():
    x = K.placeholder((None, 3))
    y = K.map_fn(lambda e: K.sum(e * e) + K.max(e), x)
    xv = _rng.standard_normal((7, 3)).astype(np.float32)
    _check([y], [(xv * xv).sum(1) + xv.max(1)], [xv], [x])
    y64 = K.map_fn(lambda e: e * 2, x, dtype="float64")
    assert K.dtype(y64) == "float64"
    _check([y64], [(xv * 2).astype(np.float64)], [xv], [x])


def test_foldl_foldr():
    x = K.placeholder((6, 3))
    xv = _rng.uniform(0.5, 1.5, (6, 3)).astype(np.float32)
    fl = K.foldl(lambda acc, e: acc * e + 1.0, x)
    fr = K.foldr(lambda acc, e: acc * e + 1.0, x)
    init = K.zeros((3,))
    fl0 = K.foldl(lambda acc, e: acc * 0.5 + e, x, initializer=init)
    fr0 = K.foldr(lambda acc, e: acc * 0.5 + e, x, initializer=init)
    el, er = xv[0], xv[-1]
    for e in xv[1:]:
        el = el * e + 1.0
    for e in xv[-2::-1]:
        er = er * e + 1.0
    el0, er0 = np.zeros(3, np.float32), np.zeros(3, np.float32)
    for e in xv:
        el0 = el0 * 0.5 + e
    for e in xv[::-1]:
        er0 = er0 * 0.5 + e
    _check([fl, fr, fl0, fr0], [el, er, el0, er0], [xv], [x])


def test_foldl_scalar_accumulator():
    x = K.placeholder((None,))
    s = K.foldl(lambda acc, e: acc + e * e, x, initializer=K.constant(0.0))
    xv = np.arange(5, dtype=np.float32)
    _check([s], [np.float32((xv * xv).sum())], [xv], [x])


def test_switch_lower_rank_condition():
    c = K.placeholder((None,), dtype="bool")
    a, b = K.placeholder((None, 3, 2)), K.placeholder((None, 3, 2))
    av, bv = _rng.standard_normal((4, 3, 2)), _rng.standard_normal((4, 3, 2))
    cv = np.array([True, False, False, True])
    out = K.switch(c, a, b)
    _check([out], [np.where(cv[:, None, None], av, bv).astype(np.float32)],
           [cv, av, bv], [c, a, b])
    c2 = K.placeholder((None, 3))  # a float 0/1 condition of rank 2
    c2v = (_rng.uniform(size=(4, 3)) > 0.5).astype(np.float32)
    out2 = K.switch(c2, a, b)
    _check([out2], [np.where(c2v[:, :, None] > 0, av, bv).astype(np.float32)],
           [c2v, av, bv], [c2, a, b])


def test_rnn_errors():
    h0 = K.placeholder((None, U))
    step = k_simple(K.variable(W), K.variable(R), K.variable(BIAS))
    with pytest.raises(SymkError, match="at least 3D"):
        K.rnn(step, K.placeholder((None, F)), [h0])
    with pytest.raises(SymkError, match="unroll=True needs a known number of time steps"):
        K.rnn(step, K.placeholder((None, None, F)), [h0], unroll=True)
    with pytest.raises(SymkError, match="returned 1 new state"):
        K.rnn(step, K.placeholder((None, T, F)), [h0, h0])
    with pytest.raises(SymkError, match="must keep their type"):
        K.rnn(lambda xt, s: (xt, [K.concatenate([s[0], s[0]])]),
              K.placeholder((None, T, U)), [h0])
    with pytest.raises(SymkError, match="mask must have shape"):
        K.rnn(step, K.placeholder((None, T, F)), [h0], mask=K.placeholder((None, T, 2)))
    with pytest.raises(SymkError, match="initializer"):
        K.foldl(lambda a, e: a + e, K.placeholder((0, 3)))
    with pytest.raises(SymkError, match="step_function must be callable"):
        K.rnn(None, K.placeholder((None, T, F)), [h0])
    with pytest.raises(SymkError, match="fn must be callable"):
        K.foldr(3, K.placeholder((4, 3)))
    with pytest.raises(SymkError, match="elems must have at least one dimension"):
        K.map_fn(lambda e: e, K.placeholder(()))


def _scan_nodes(t):
    from symk.graph.node import toposort

    return [n for n in toposort([t.node]) if n.op.name == "scan"]


def test_input_projection_is_hoisted_out_of_the_loop():
    """x_t @ W (depends on the inputs only) becomes one product over all steps; the body keeps
    the recurrent product only, and the results do not change."""
    x, h0 = K.placeholder((None, T, F)), K.placeholder((None, U))
    last, outs, _ = K.rnn(k_simple(K.variable(W), K.variable(R), K.variable(BIAS)), x, [h0])
    (scan,) = {id(n): n for n in _scan_nodes(outs)}.values()
    body = scan.attrs["body"]
    assert [n.op.name for n in body.order].count("einsum") == 1
    assert len(body.seqs) == 1 and body.seqs[0].shape == (None, U)  # the projected inputs
    assert scan.inputs[0].op.name == "einsum" and scan.inputs[0].shape == (T, None, U)
    e_last, e_outs, _ = np_rnn(np_simple, X, [H0])
    _check([last, outs], [e_last, e_outs], [X, H0], [x, h0])


def test_scan_blas_threads_setting(monkeypatch):
    if "cpu" not in DEVICES:
        pytest.skip("no cpu device")
    x, h0 = K.placeholder((None, T, F)), K.placeholder((None, U))
    last, _, _ = K.rnn(k_simple(K.variable(W), K.variable(R), K.variable(BIAS)), x, [h0])
    e_last, _, _ = np_rnn(np_simple, X, [H0])
    for setting in ("0", "2"):
        monkeypatch.setenv("SYMK_SCAN_BLAS_THREADS", setting)
        got = K.function([x, h0], [last], device="cpu")([X, H0])[0]
        np.testing.assert_allclose(got, e_last, rtol=2e-5, atol=2e-5)
    monkeypatch.setenv("SYMK_SCAN_BLAS_THREADS", "many")
    with pytest.raises(SymkError, match="SYMK_SCAN_BLAS_THREADS must be an integer"):
        K.function([x, h0], [last], device="cpu")([X, H0])


def test_nested_loops():
    """A step function that itself loops (map_fn inside rnn), forward and gradient."""
    x, h0 = K.placeholder((None, T, F)), K.placeholder((None, U))
    w = K.variable(W)

    def step(xt, states):
        rows = K.map_fn(lambda r: K.tanh(r * 2.0), K.dot(xt, w))
        h = rows + 0.5 * states[0]
        return h, [h]

    def np_step(xt, states):
        h = np.tanh((xt @ W) * 2.0) + 0.5 * states[0]
        return h, [h]
    last, outs, _ = K.rnn(step, x, [h0])
    e_last, e_outs, _ = np_rnn(np_step, X, [H0])
    _check([last, outs], [e_last, e_outs], [X, H0], [x, h0])
    (gw,) = K.gradients(K.sum(last), [w])
    eps, num = 1e-3, np.zeros_like(W, dtype=np.float64)
    for i in range(F):
        for j in range(U):
            for sgn in (1, -1):
                w2 = W.astype(np.float64).copy()
                w2[i, j] += sgn * eps

                def st(xt, states, w2=w2):
                    h = np.tanh((xt @ w2) * 2.0) + 0.5 * states[0]
                    return h, [h]
                num[i, j] += sgn * np_rnn(st, X.astype(np.float64), [H0])[0].sum() / (2 * eps)
    for dev in DEVICES:
        got = K.function([x, h0], [gw], device=dev)([X, H0])[0]
        np.testing.assert_allclose(got, num, rtol=2e-3, atol=2e-3, err_msg=dev)
