"""The cpu device's native driver (``symk.runtime.driver``): runs of kernels, products, views
and ``shape_of`` executed by one native call per run.

Every test compares a function run by drivers with the same function compiled with
``SYMK_NATIVE_DRIVER=0`` (one Python step per kernel: must agree bit for bit) and with numpy or
the reference executor, and checks that the driver really ran (segments exist, the driver was
called once per call)."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ShapeError
from tests.compare import assert_match

RNG = np.random.default_rng(5)


def _arr(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


def _plan(f):
    fn = f.fn if hasattr(f, "fn") else f
    return fn._plans[fn._default_key()].executor


def _counted(f) -> list[int]:
    """Count the driver calls of ``f``'s default plan (the list's length)."""
    calls: list[int] = []
    for seg in _plan(f).segments:
        inner = seg.fn

        def wrapped(ptr, start, inner=inner):
            calls.append(start)
            return inner(ptr, start)
        seg.fn = wrapped
    return calls


def _twins(monkeypatch, inputs, outputs, updates_of=None):
    """The same function compiled with drivers and without (``updates_of(...)`` builds fresh
    updates for each, so the two own different variables)."""
    ups = updates_of() if updates_of else ([], [])
    f = K.function(inputs, outputs + ups[1], updates=ups[0])
    monkeypatch.setenv("SYMK_NATIVE_DRIVER", "0")
    ups2 = updates_of() if updates_of else ([], [])
    g = K.function(inputs, outputs + ups2[1], updates=ups2[0])
    monkeypatch.delenv("SYMK_NATIVE_DRIVER")
    assert _plan(f).segments and not _plan(g).segments
    return f, g


def test_mlp_training_step_is_one_driver_call_and_matches_the_step_path(monkeypatch):
    x, t = K.placeholder((None, 6)), K.placeholder((None, 3))
    w1v, w2v = _arr(6, 8), _arr(8, 3)

    def ups():
        w1, w2 = K.variable(w1v), K.variable(w2v)
        h = K.relu(K.dot(x, w1))
        p = K.softmax(K.dot(h, w2))
        loss = K.mean(K.categorical_crossentropy(t, p))
        g1, g2 = K.gradients(loss, [w1, w2])
        return [(w1, w1 - 0.1 * g1), (w2, w2 - 0.1 * g2)], [loss, w1, w2]

    f, g = _twins(monkeypatch, [x, t], [], ups)
    plan = _plan(f)
    assert len(plan.segments) == 1 and plan.segments[0].hi - plan.segments[0].lo == \
        len(plan.schedule.steps)
    ups_i = ups()
    i = K.function([x, t], ups_i[1], updates=ups_i[0], device="interp")
    calls = _counted(f)
    for batch in (5, 1, 7, 5):
        xv, tv = _arr(batch, 6), np.eye(3, dtype="float32")[RNG.integers(0, 3, batch)]
        a, b, c = f([xv, tv]), g([xv, tv]), i([xv, tv])
        for u, v, w in zip(a, b, c):
            np.testing.assert_array_equal(u, v)
            assert_match(u, w, rtol=1e-4, atol=1e-5)  # and the reference executor's numbers
    assert len(calls) == 4  # one native call per function call


def test_sgd_gemm_update_in_place_matches_numpy(monkeypatch):
    x, gr = K.placeholder((None, 4)), K.placeholder((None, 3))
    wv = _arr(4, 3)

    def ups():
        w = K.variable(wv)
        return [(w, w - 0.1 * K.dot(K.transpose(x), gr))], []

    f, g = _twins(monkeypatch, [x, gr], [], ups)
    ops = [s.node.op.name for s in _plan(f).schedule.steps if hasattr(s, "node")]
    w_f = f.fn.updates[0][0] if hasattr(f, "fn") else f.updates[0][0]
    w_g = g.fn.updates[0][0] if hasattr(g, "fn") else g.updates[0][0]
    want = wv.copy()
    for batch in (6, 2, 6):
        xv, gv = _arr(batch, 4), _arr(batch, 3)
        f([xv, gv])
        g([xv, gv])
        want = want - 0.1 * xv.T @ gv
        np.testing.assert_array_equal(K.get_value(w_f), K.get_value(w_g))
        assert_match(K.get_value(w_f), want)
    assert "gemm" in ops or "einsum" in ops


def test_views_and_shape_of_that_escape_are_the_callers_own(monkeypatch):
    x = K.placeholder((None, 3))
    h = K.exp(x) + 1.0
    r = K.reshape(h, (-1,))
    e = K.expand_dims(K.sum(h, axis=1), 1)
    f, g = _twins(monkeypatch, [x], [r, e, K.shape(h), h * 2.0])
    seg = _plan(f).segments[0]
    assert {"view", "shape"} <= set(seg.kind.values())
    x1, x2 = _arr(4, 3), _arr(2, 3)
    first = f([x1])
    keep = [a.copy() for a in first]
    second = f([x2])
    for a, b in zip(first, keep):  # the second call wrote nothing the caller holds
        np.testing.assert_array_equal(a, b)
    for a, b in zip(second, g([x2])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second[2], [2, 3])
    assert_match(second[0], (np.exp(x2) + 1).reshape(-1))


def test_disagreeing_sizes_raise_the_step_paths_error(monkeypatch):
    x, y = K.placeholder((None, 4)), K.placeholder((None, 4))
    f, g = _twins(monkeypatch, [x, y], [x * y + 1.0])
    f([_arr(3, 4), _arr(3, 4)])
    with pytest.raises(ShapeError) as ef:
        f([_arr(5, 4), _arr(1, 4)])
    with pytest.raises(ShapeError) as eg:
        g([_arr(5, 4), _arr(1, 4)])
    assert str(ef.value).split("(in the call at")[0] == str(eg.value).split("(in the call at")[0]
    # and a good call after the failed one still works
    xv, yv = _arr(2, 4), _arr(2, 4)
    np.testing.assert_array_equal(f([xv, yv])[0], g([xv, yv])[0])


def test_a_product_with_disagreeing_sizes_raises(monkeypatch):
    a, b = K.placeholder((None, None)), K.placeholder((None, None))
    f, g = _twins(monkeypatch, [a, b], [K.relu(K.dot(a, b))])
    av, bv = _arr(2, 3), _arr(3, 4)
    np.testing.assert_array_equal(f([av, bv])[0], g([av, bv])[0])
    with pytest.raises(ShapeError):
        f([_arr(2, 3), _arr(5, 4)])


def test_large_kernels_return_to_python_and_split(monkeypatch):
    from symk.runtime import driver

    monkeypatch.setattr(driver, "PARALLEL_MIN_ELEMENTS", 64)
    monkeypatch.setenv("SYMK_NUM_THREADS", "2")
    split: list[int] = []
    real = driver.run_split

    def spy(plan, fn, args, n):
        split.append(n)
        real(plan, fn, args, n)
    monkeypatch.setattr(driver, "run_split", spy)
    x = K.placeholder((None, 50))
    w = K.variable(_arr(50, 50))
    f, g = _twins(monkeypatch, [x], [K.tanh(K.dot(x, w)) * 3.0 + 1.0, K.sum(x, axis=1)])
    xv = _arr(40, 50)
    got = f([xv])
    assert split, "no kernel was handed back to Python to split"
    for a, b in zip(got, g([xv])):
        np.testing.assert_array_equal(a, b)


def test_dropout_stream_is_the_step_paths(monkeypatch):
    x = K.placeholder((None, 16))
    f, g = _twins(monkeypatch, [x], [K.dropout(x * 2.0, 0.5, seed=3)])
    xv = _arr(8, 16)
    for _ in range(3):  # the call counter advances alike
        np.testing.assert_array_equal(f([xv])[0], g([xv])[0])


def test_non_contiguous_and_other_dtype_feeds(monkeypatch):
    x = K.placeholder((None, 5))
    f, g = _twins(monkeypatch, [x], [K.exp(x) * 2.0])
    xv = _arr(5, 10)[:, ::2]  # a strided view
    np.testing.assert_array_equal(f([xv])[0], g([xv])[0])
    np.testing.assert_array_equal(f([xv.T.T.astype("float64")])[0], g([xv])[0])


def test_plan_cache_hit_builds_the_same_driver(fresh, monkeypatch):
    def make():
        x = K.placeholder((None, 4))
        w = K.variable(np.ones((4, 2)))
        return K.function([x], [K.softmax(K.dot(x, w) * 0.5)])
    f1, f2 = make(), make()
    xv = _arr(3, 4)
    np.testing.assert_array_equal(f1([xv])[0], f2([xv])[0])
    assert _plan(f2).segments and _plan(f1).segments[0].name == _plan(f2).segments[0].name


def test_driver_ir_names_only_frame_positions():
    """The driver's code holds no addresses: the same layout is the same code (cacheable)."""
    from symk.codegen.driver_render import CallKernel, CopyAddress, render_driver

    steps = [CopyAddress(3, 4), CallKernel(5, 9, 6, 7, ((3, 0), (4, 1)))]
    name, ir = render_driver(steps)
    assert render_driver(list(steps)) == (name, ir)
    assert "inttoptr" not in ir.split("switch")[0] and "0x" not in ir


def test_scan_body_steps_run_through_its_drivers(monkeypatch):
    """A K.rnn step body of native steps runs by its drivers, once per time step, with the
    numbers of a numpy loop (the Python loop: without SYMK_NATIVE_SCAN_LOOP=0 the whole loop
    is one native call, tests/runtime/test_scan_loop.py)."""
    from symk.runtime.cpu import CpuPlan

    monkeypatch.setenv("SYMK_NATIVE_SCAN_LOOP", "0")

    calls: list[int] = []
    real = CpuPlan.execute

    def counted(self, vals):
        calls.append(1)
        real(self, vals)
    monkeypatch.setattr(CpuPlan, "execute", counted)
    xv, wv, uv = _arr(3, 7, 4), _arr(4, 5) * 0.5, _arr(5, 5) * 0.5
    x = K.placeholder((None, 7, 4))
    w, u = K.constant(wv), K.constant(uv)

    def step(inp, states):
        h = K.tanh(K.dot(inp, w) + K.dot(states[0], u))
        return h, [h]
    last, outs, _ = K.rnn(step, x, [K.zeros_like(K.dot(x[:, 0, :], w))])
    f = K.function([x], [last, outs])
    got_last, got_outs = f([xv])
    h = np.zeros((3, 5), np.float32)
    for t in range(7):
        h = np.tanh(xv[:, t] @ wv + h @ uv)
        assert_match(got_outs[:, t], h, rtol=1e-4, atol=1e-5)
    assert_match(got_last, h, rtol=1e-4, atol=1e-5)
    assert len(calls) >= 7  # the body's drivers ran every time step
