"""``K.function`` and friends: atomic updates (swaps, outputs see pre-update values), every
update form, K.eval, get/set values, the learning phase, name scopes, uids, print_tensor and the
``SYMK_DEBUG`` compile log.  Numbers are checked against numpy written here."""

from __future__ import annotations

import re

import numpy as np
import pytest

from symk import backend as K
from symk.backend import _variables


@pytest.fixture
def lp_reset(monkeypatch):
    """Run with a fresh, unfixed learning phase and restore the global state afterwards."""
    monkeypatch.setattr(_variables, "_learning_phase_value", None)
    monkeypatch.setattr(_variables, "_learning_phase_ph", None)


# ---------------------------------------------------------------- updates


def test_swap_two_variables_in_one_call():
    a = K.variable([1.0, 2.0])
    b = K.variable([3.0, 4.0])
    swap = K.function([], [], updates=[(a, b), (b, a)])
    assert swap([]) == []
    np.testing.assert_array_equal(K.get_value(a), [3.0, 4.0])
    np.testing.assert_array_equal(K.get_value(b), [1.0, 2.0])
    swap([])
    np.testing.assert_array_equal(K.get_value(a), [1.0, 2.0])
    np.testing.assert_array_equal(K.get_value(b), [3.0, 4.0])


def test_updates_all_read_pre_update_values():
    a = K.variable(2.0)
    b = K.variable(5.0)
    f = K.function([], [], updates=[K.update(a, a + b), K.update(b, a * b)])
    f([])
    assert K.get_value(a) == 7.0 and K.get_value(b) == 10.0  # b used the old a


def test_outputs_see_pre_update_values():
    v = K.variable(np.array([1.0, 2.0, 3.0]))
    f = K.function([], [v, v * 10.0, K.sum(v)], updates=[(v, v + 1.0)])
    out_v, out_v10, out_sum = f([])
    np.testing.assert_array_equal(out_v, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out_v10, [10.0, 20.0, 30.0])
    assert out_sum == 6.0
    np.testing.assert_array_equal(K.get_value(v), [2.0, 3.0, 4.0])
    out_v2, _, _ = f([])
    np.testing.assert_array_equal(out_v2, [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(out_v, [1.0, 2.0, 3.0])  # earlier results are not aliased


def test_every_update_form():
    rng = np.random.default_rng(0)
    x0, y0, z0, m0, r0 = (rng.normal(size=3) for _ in range(5))
    xv = rng.normal(size=3)
    x = K.placeholder((3,), dtype="float64", name="xin")
    vs = [K.variable(v, dtype="float64") for v in (x0, y0, z0, m0, r0)]
    vx, vy, vz, vm, vr = vs
    updates = [
        K.update(vx, x * 2.0),
        K.update_add(vy, x),
        K.update_sub(vz, x),
        K.moving_average_update(vm, x, 0.9),
        (vr, vr * x),  # a raw tuple
    ]
    f = K.function([x], [], updates=updates)
    f([xv])
    np.testing.assert_allclose(K.get_value(vx), 2.0 * xv, rtol=1e-12)
    np.testing.assert_allclose(K.get_value(vy), y0 + xv, rtol=1e-12)
    np.testing.assert_allclose(K.get_value(vz), z0 - xv, rtol=1e-12)
    np.testing.assert_allclose(K.get_value(vm), m0 * 0.9 + xv * 0.1, rtol=1e-12)
    np.testing.assert_allclose(K.get_value(vr), r0 * xv, rtol=1e-12)


def test_updates_given_as_nested_lists_and_list_pairs():
    a = K.variable(1.0)
    b = K.variable(1.0)
    f = K.function([], [], updates=[[K.update_add(a, 1.0)], [b, b * 3.0]])
    f([])
    f([])
    assert K.get_value(a) == 3.0 and K.get_value(b) == 9.0


def test_update_keeps_the_variable_dtype():
    c = K.variable(0, dtype="int32")
    f = K.function([], [], updates=[K.update_add(c, 1)])
    for _ in range(3):
        f([])
    v = K.get_value(c)
    assert v.dtype == np.int32 and v == 3
    h = K.variable(np.zeros(2), dtype="float16")
    K.function([], [], updates=[(h, K.constant([0.5, 1.5], dtype="float64"))])([])
    assert K.get_value(h).dtype == np.float16
    np.testing.assert_array_equal(K.get_value(h), [0.5, 1.5])


def test_sgd_step_matches_numpy():
    rng = np.random.default_rng(3)
    w0, xv, yv = rng.normal(size=(3, 2)), rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    w = K.variable(w0, dtype="float64")
    x = K.placeholder((None, 3), dtype="float64")
    y = K.placeholder((None, 2), dtype="float64")
    loss = K.mean(K.square(K.dot(x, w) - y))
    (g,) = K.gradients(loss, [w])
    step = K.function([x, y], [loss], updates=[K.update_sub(w, 0.1 * g)])
    (lv,) = step([xv, yv])
    err = xv @ w0 - yv
    np.testing.assert_allclose(lv, np.mean(err ** 2), rtol=1e-12)
    np.testing.assert_allclose(K.get_value(w), w0 - 0.1 * (2.0 / err.size) * xv.T @ err,
                               rtol=1e-10)


# ---------------------------------------------------------------- calling


def test_single_output_and_batch_sizes():
    x = K.placeholder((None, 2))
    f = K.function([x], K.sum(x, axis=1))  # not a list: returns one array
    for n in (1, 4, 7):
        xv = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
        out = f([xv])
        assert isinstance(out, np.ndarray) and out.shape == (n,)
        np.testing.assert_array_equal(out, xv.sum(axis=1))


def test_feeding_an_intermediate_tensor():
    x = K.placeholder((3,))
    h = x + 1.0
    f = K.function([h], [h * 2.0])  # Keras sometimes feeds non-placeholders
    np.testing.assert_array_equal(f([np.array([1.0, 2.0, 3.0])])[0], [2.0, 4.0, 6.0])


def test_inputs_are_cast_to_the_placeholder_dtype():
    x = K.placeholder((2,), dtype="float32")
    (out,) = K.function([x], [x])([np.array([1.0, 2.0], np.float64)])
    assert out.dtype == np.float32
    i = K.placeholder((2,), dtype="int64")
    (out,) = K.function([i], [i + 1])([[3, 4]])
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [4, 5])


# ---------------------------------------------------------------- eval and values


def test_eval():
    v = K.variable(np.array([[1.0, -2.0]]))
    np.testing.assert_allclose(K.eval(K.exp(v) * 2.0), np.exp([[1.0, -2.0]]) * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(K.eval(v), [[1.0, -2.0]])
    np.testing.assert_array_equal(K.eval(K.constant([1, 2], dtype="int32")), [1, 2])
    np.testing.assert_array_equal(K.eval(K.zeros((2, 3))), np.zeros((2, 3)))
    np.testing.assert_array_equal(K.eval(K.eye(3)), np.eye(3))
    np.testing.assert_array_equal(v.eval(), [[1.0, -2.0]])


def test_get_value_returns_a_copy():
    v = K.variable(np.zeros(3))
    got = K.get_value(v)
    got[0] = 5.0
    assert K.get_value(v)[0] == 0.0


def test_set_value_and_batches():
    a = K.variable(np.zeros((2, 2)))
    b = K.variable(np.zeros(3), dtype="int32")
    src = np.array([[1.5, 2.5], [3.5, 4.5]], np.float64)
    K.set_value(a, src)
    src[0, 0] = 99.0  # the variable does not alias the caller's array
    np.testing.assert_array_equal(K.get_value(a), [[1.5, 2.5], [3.5, 4.5]])
    assert K.get_value(a).dtype == np.float32
    K.batch_set_value([(a, np.ones((2, 2))), (b, [7, 8, 9])])
    va, vb = K.batch_get_value([a, b])
    np.testing.assert_array_equal(va, np.ones((2, 2)))
    np.testing.assert_array_equal(vb, [7, 8, 9])
    assert vb.dtype == np.int32
    # a compiled function sees the new value
    f = K.function([], [K.sum(a)])
    K.set_value(a, np.full((2, 2), 2.0))
    assert f([])[0] == 8.0


def test_variable_from_a_symbolic_tensor():
    src = K.variable(np.array([1.0, 2.0]))
    v = K.variable(src * 3.0)
    np.testing.assert_array_equal(K.get_value(v), [3.0, 6.0])
    K.set_value(src, [0.0, 0.0])
    np.testing.assert_array_equal(K.get_value(v), [3.0, 6.0])  # a copy, not a view


# ---------------------------------------------------------------- learning phase


def test_learning_phase_placeholder_defaults_to_zero(lp_reset):
    lp = K.learning_phase()
    assert K.is_placeholder(lp) and lp.shape == () and lp is K.learning_phase()
    x = K.placeholder((3,))
    out = K.in_train_phase(x * 2.0, x * 3.0)
    assert out._uses_learning_phase is True
    xv = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(K.function([x], [out])([xv])[0], xv * 3.0)
    fed = K.function([x, lp], [out])
    np.testing.assert_array_equal(fed([xv, 1])[0], xv * 2.0)
    np.testing.assert_array_equal(fed([xv, 0])[0], xv * 3.0)
    test_out = K.in_test_phase(x * 2.0, x * 3.0)
    np.testing.assert_array_equal(K.function([x, lp], [test_out])([xv, 1])[0], xv * 3.0)
    np.testing.assert_array_equal(K.function([x, lp], [test_out])([xv, 0])[0], xv * 2.0)


def test_in_train_phase_with_explicit_training_and_callables(lp_reset):
    x = K.placeholder((2,))
    xv = np.array([1.0, 2.0], np.float32)
    assert K.in_train_phase(x, x * 2.0, training=1) is x
    alt = K.in_train_phase(lambda: x, lambda: x * 2.0, training=0)
    np.testing.assert_array_equal(K.function([x], [alt])([xv])[0], xv * 2.0)
    t = K.placeholder((), dtype="bool")
    out = K.in_train_phase(x, x * 2.0, training=t)
    np.testing.assert_array_equal(K.function([x, t], [out])([xv, True])[0], xv)


def test_set_learning_phase_fixes_an_int(lp_reset):
    K.set_learning_phase(1)
    assert K.learning_phase() == 1 and isinstance(K.learning_phase(), int)
    x = K.placeholder((2,))
    assert K.in_train_phase(x, x * 2.0) is x
    K.set_learning_phase(0)
    assert K.learning_phase() == 0
    assert K.in_test_phase(x, x * 2.0) is x
    with pytest.raises(ValueError):
        K.set_learning_phase(2)


# ---------------------------------------------------------------- names and uids


def test_name_scope_prefixes_variable_names():
    with K.name_scope("scope_fn_outer"):
        a = K.variable(0.0, name="kernel")
        with K.name_scope("inner"):
            b = K.variable(0.0, name="kernel")
    c = K.variable(0.0, name="kernel_fn_unscoped")
    assert a.name == "scope_fn_outer/kernel"
    assert b.name == "scope_fn_outer/inner/kernel"
    assert c.name == "kernel_fn_unscoped"
    with K.name_scope("scope_fn_outer"):
        again = K.variable(0.0, name="kernel")
    assert again.name.startswith("scope_fn_outer/kernel") and again.name != a.name


def test_get_uid_and_reset_uids():
    K.reset_uids()
    assert [K.get_uid("dense_fn"), K.get_uid("dense_fn"), K.get_uid("conv_fn")] == [1, 2, 1]
    assert K.get_uid() == 1 and K.get_uid() == 2
    K.reset_uids()
    assert K.get_uid("dense_fn") == 1


# ---------------------------------------------------------------- print_tensor and debug log


def test_print_tensor_prints_when_run(capfd):
    x = K.placeholder((3,))
    p = K.print_tensor(x, message="x is: ")
    y = p * 2.0
    assert capfd.readouterr().out == ""  # nothing at graph-building time
    f = K.function([x], [y])
    (out,) = f([np.array([1.0, 2.0, 3.0])])
    np.testing.assert_array_equal(out, [2.0, 4.0, 6.0])
    printed = capfd.readouterr().out
    assert "x is: " in printed and re.search(r"1\.?\s+2\.?\s+3\.?", printed)
    f([np.array([4.0, 5.0, 6.0])])
    assert "x is: " in capfd.readouterr().out  # every run prints


def test_symk_debug_logs_each_compilation(monkeypatch, capfd):
    x = K.placeholder((None, 3), name="x")
    y = K.exp(x) + 1.0  # 4 nodes: placeholder, exp, constant, add
    monkeypatch.setenv("SYMK_DEBUG", "1")
    K.function([x], [y], name="logged_fn")
    err = capfd.readouterr().err
    m = re.search(r"compiled function 'logged_fn': (\d+) nodes.* ([0-9.]+) ms", err)
    assert m, err
    assert int(m.group(1)) == 4
    monkeypatch.setenv("SYMK_DEBUG", "0")
    K.function([x], [y], name="quiet_fn")
    assert "quiet_fn" not in capfd.readouterr().err
    monkeypatch.delenv("SYMK_DEBUG")
    K.function([x], [y], name="quiet_fn2")
    assert capfd.readouterr().err == ""
