"""``gemm`` updates on the cpu device: accumulated into the variable itself when nothing else
reads it (the array object stays the same), and computed into a fresh buffer whenever an
output, another update or a later step still needs the old value; CBLAS or numpy alike."""

from __future__ import annotations

import numpy as np
import pytest

import symk.passes.pipeline as pipeline
from symk import backend as K
from symk.runtime import blas
from tests.compare import assert_match

RNG = np.random.default_rng(11)


def _arr(*shape, dtype="float32"):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.fixture(params=["cblas", "numpy"])
def gemm_impl(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_cache", {"s": None, "d": None})
    elif blas.gemm_fn(np.float32) is None:
        pytest.skip("numpy's BLAS exports no 64-bit CBLAS gemm here")
    return request.param


def _sgd(dtype="float32"):
    x, g = K.placeholder((6, 4), dtype=dtype), K.placeholder((6, 3), dtype=dtype)
    wv = _arr(4, 3, dtype=dtype)
    w = K.variable(wv, dtype=dtype)
    return x, g, w, wv, w - 0.1 * K.dot(K.transpose(x), g)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_update_accumulates_into_the_variable(gemm_impl, dtype):
    x, g, w, wv, new = _sgd(dtype)
    f = K.function([x, g], [], updates=[(w, new)])
    assert "gemm" in [s.node.op.name for s in f.fn.schedule.externs]
    before, kept, first = w.value, K.get_value(w), wv
    xv, gv = _arr(6, 4, dtype=dtype), _arr(6, 3, dtype=dtype)
    for _ in range(3):
        f([xv, gv])
        wv = wv - 0.1 * (xv.T @ gv)
    assert_match(K.get_value(w), wv, rtol=1e-5, atol=1e-5)
    if gemm_impl == "cblas":
        assert w.value is before  # the same array, updated in place
    assert_match(kept, first)  # a copy taken earlier is untouched


def test_variable_also_returned_keeps_its_old_value_in_the_output(gemm_impl):
    x, g, w, wv, new = _sgd()
    f = K.function([x, g], [w, K.sum(w)], updates=[(w, new)])
    xv, gv = _arr(6, 4), _arr(6, 3)
    out, total = f([xv, gv])
    assert_match(out, wv)
    assert_match(total, np.sum(wv, dtype=np.float32), rtol=1e-5, atol=1e-5)
    assert_match(K.get_value(w), wv - 0.1 * (xv.T @ gv), rtol=1e-5, atol=1e-5)


def test_another_update_reading_the_old_value(gemm_impl):
    x, g, w, wv, new = _sgd()
    u = K.variable(np.zeros((4, 3), np.float32))
    f = K.function([x, g], [], updates=[(w, new), (u, w * 2.0)])
    xv, gv = _arr(6, 4), _arr(6, 3)
    f([xv, gv])
    assert_match(K.get_value(u), wv * 2.0)
    assert_match(K.get_value(w), wv - 0.1 * (xv.T @ gv), rtol=1e-5, atol=1e-5)


def test_update_returned_as_an_output_is_a_copy(gemm_impl):
    x, g, w, wv, new = _sgd()
    f = K.function([x, g], [new], updates=[(w, new)])
    xv, gv = _arr(6, 4), _arr(6, 3)
    (out,) = f([xv, gv])
    want = wv - 0.1 * (xv.T @ gv)
    assert_match(out, want, rtol=1e-5, atol=1e-5)
    f([xv, gv])  # the second update must not change the array returned by the first call
    assert_match(out, want, rtol=1e-5, atol=1e-5)


def test_product_reading_the_variable_itself(gemm_impl):
    # w - 0.5 * w @ a: the accumulator is also an operand, so it cannot be written in place
    a = K.placeholder((4, 4))
    wv = _arr(4, 4)
    w = K.variable(wv)
    f = K.function([a], [], updates=[(w, w - 0.5 * K.dot(w, a))])
    av = _arr(4, 4)
    f([av])
    assert_match(K.get_value(w), wv - 0.5 * (wv @ av), rtol=1e-5, atol=1e-5)


def test_two_variables_sharing_one_update_value(gemm_impl):
    x, g, w, wv, new = _sgd()
    v = K.variable(np.zeros((4, 3), np.float32))
    K.function([x, g], [], updates=[(w, new), (v, new)])([xv := _arr(6, 4), gv := _arr(6, 3)])
    want = wv - 0.1 * (xv.T @ gv)
    assert_match(K.get_value(v), want, rtol=1e-5, atol=1e-5)
    # updating w alone (in place) must leave v alone: the two never share one array
    K.function([x, g], [], updates=[(w, new)])([xv, gv])
    assert_match(K.get_value(v), want, rtol=1e-5, atol=1e-5)
    assert_match(K.get_value(w), want - 0.1 * (xv.T @ gv), rtol=1e-5, atol=1e-5)


def test_rebuilt_model_from_the_plan_cache_updates_its_own_variable_in_place(gemm_impl,
                                                                             monkeypatch):
    calls = []
    orig = pipeline.optimize
    monkeypatch.setattr(pipeline, "optimize", lambda *a, **k: calls.append(1) or orig(*a, **k))
    xv, gv = _arr(6, 4), _arr(6, 3)
    for k in range(2):  # the second build is a plan-cache hit with other variables
        x, g, w, wv, new = _sgd()
        w.value = w.value * (k + 1.0)  # another value, the same plan
        wv = w.value.copy()
        f = K.function([x, g], [], updates=[(w, new)])
        before = w.value
        f([xv, gv])
        assert_match(K.get_value(w), wv - 0.1 * (xv.T @ gv), rtol=1e-5, atol=1e-5)
        assert (w.value is before) == (gemm_impl == "cblas")
    assert len(calls) <= 1
