"""The ``blas`` pass: products accumulated into a variable become ``gemm`` nodes (structure),
with the same numbers as numpy on every device (values).  The gemm gradient is checked with
the other ops' in ``tests/graph/test_gradients_ops.py``."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.tensor import Tensor
from symk.passes.pipeline import optimize
from tests.compare import assert_match
from tests.harness import available_devices
from tests.passes.common import execute, ops

RNG = np.random.default_rng(7)


def _arr(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# (how the product is written, numpy of it): every stored-transposed layout and both orders
LAYOUTS = {
    "ab": (lambda a, b: K.dot(a, b), lambda a, b: a @ b, (5, 4), (4, 3)),
    "aTb": (lambda a, b: K.dot(K.transpose(a), b), lambda a, b: a.T @ b, (4, 5), (4, 3)),
    "abT": (lambda a, b: K.dot(a, K.transpose(b)), lambda a, b: a @ b.T, (5, 4), (3, 4)),
    "aTbT": (lambda a, b: K.dot(K.transpose(a), K.transpose(b)), lambda a, b: a.T @ b.T,
             (4, 5), (3, 4)),
    "(ab)T": (lambda a, b: Tensor(gb.einsum("ik,kj->ji", [a.node, b.node])),
              lambda a, b: (a @ b).T, (3, 4), (4, 5)),
}
# (update expression, numpy of it)
FORMS = {
    "w-s*p": (lambda w, p: w - 0.25 * p, lambda w, p: w - 0.25 * p),
    "w-p*s": (lambda w, p: w - p * 0.25, lambda w, p: w - p * 0.25),
    "w+p": (lambda w, p: w + p, lambda w, p: w + p),
    "p+w": (lambda w, p: p + w, lambda w, p: p + w),
    "w-p": (lambda w, p: w - p, lambda w, p: w - p),
    "w+s*p": (lambda w, p: w + 3.0 * p, lambda w, p: w + 3.0 * p),
    # Keras 2.3.1 SGD's velocity, learning rate and momentum being 0-d variables
    "r*w-s*p": (lambda w, p: K.variable(0.9) * w - K.variable(0.25) * p,
                lambda w, p: np.float32(0.9) * w - np.float32(0.25) * p),
    "w*r+p*s": (lambda w, p: w * K.variable(0.5) + p * K.variable(2.0),
                lambda w, p: w * 0.5 + p * 2.0),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", FORMS)
def test_product_into_variable_becomes_one_gemm(layout, form):
    prod, prod_np, sa, sb = LAYOUTS[layout]
    upd, upd_np = FORMS[form]
    a, b = K.placeholder(sa), K.placeholder(sb)
    av, bv = _arr(*sa), _arr(*sb)
    wv = _arr(*(prod_np(av, bv).shape))
    w = K.variable(wv)
    out = upd(w, prod(a, b))
    opt = optimize([out.node])
    names = ops(opt.roots)
    assert names.count("gemm") == 1 and "einsum" not in names, names
    assert not [n for n in names if n in ("add", "sub", "mul")], names
    want = upd_np(wv, prod_np(av, bv))
    assert_match(execute(opt, {a.node: av, b.node: bv})[0], want, rtol=1e-5, atol=1e-5)
    # every device, through K.function with the update (in place on cpu)
    for dev in available_devices():
        K.set_value(w, wv)
        K.function([a, b], [], updates=[(w, out)], device=dev)([av, bv])
        assert_match(K.get_value(w), want, rtol=1e-5, atol=1e-5, what=dev)


def test_no_gemm_when_the_product_is_used_elsewhere():
    a, b = K.placeholder((5, 4)), K.placeholder((4, 3))
    w = K.variable(_arr(5, 3))
    p = K.dot(a, b)
    opt = optimize([(w - 0.5 * p).node, K.sum(p).node])
    assert "gemm" not in ops(opt.roots) and "einsum" in ops(opt.roots)


def test_a_fed_accumulator_is_copied_never_written():
    """Any value shaped like the product accumulates it (a recurrent step's x_t + h @ U), but
    only a variable's own update is written in place: a fed array stays as it was."""
    a, b, w = K.placeholder((5, 4)), K.placeholder((4, 3)), K.placeholder((5, 3))
    out = w - K.dot(a, b)
    assert "gemm" in ops(optimize([out.node]).roots)
    av, bv, wv = _arr(5, 4), _arr(4, 3), _arr(5, 3)
    keep = wv.copy()
    for dev in ("cpu", "interp"):
        (got,) = K.function([a, b, w], [out], device=dev)([av, bv, wv])
        np.testing.assert_allclose(got, keep - av.astype(np.float64) @ bv, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_array_equal(wv, keep)


@pytest.mark.parametrize("case", ["broadcast", "float16", "batched", "constant"])
def test_no_gemm_outside_the_plain_pattern(case):
    if case == "constant":  # a constant accumulator stays a (foldable) add
        a, b = K.placeholder((5, 4)), K.placeholder((4, 3))
        out = K.constant(_arr(5, 3)) - K.dot(a, b)
    elif case == "broadcast":  # the accumulator must have the product's full shape
        a, b, w = K.placeholder((5, 4)), K.placeholder((4, 3)), K.variable(_arr(3))
        out = w - K.dot(a, b)
    elif case == "float16":
        a, b = K.placeholder((5, 4), dtype="float16"), K.placeholder((4, 3), dtype="float16")
        w = K.variable(_arr(5, 3), dtype="float16")
        out = w - K.dot(a, b)
    else:  # a batched product is not a 2-D GEMM
        a, b, w = K.placeholder((2, 5, 4)), K.placeholder((2, 4, 3)), K.variable(_arr(2, 5, 3))
        out = w - K.batch_dot(a, b)
    assert "gemm" not in ops(optimize([out.node]).roots)


def test_blas_pass_can_be_excluded():
    a, b = K.placeholder((5, 4)), K.placeholder((4, 3))
    w = K.variable(_arr(5, 3))
    opt = optimize([(w - K.dot(a, b)).node], exclude={"blas"})
    assert "gemm" not in ops(opt.roots)



def test_zero_beta_still_propagates_inf_and_nan_of_the_accumulator():
    # Keras SGD with momentum 0: 0 * m - lr * g; BLAS with beta = 0 would not read m
    a, b = K.placeholder((5, 4)), K.placeholder((4, 3))
    mv = _arr(5, 3)
    mv[0, 0], mv[2, 1], mv[4, 2] = np.nan, np.inf, -np.inf
    m, mom, lr = K.variable(mv), K.variable(0.0), K.variable(0.1)
    new = mom * m - lr * K.dot(a, b)
    assert "gemm" in ops(optimize([new.node]).roots)
    av, bv = _arr(5, 4), _arr(4, 3)
    with np.errstate(invalid="ignore"):
        want = np.float32(0.0) * mv - np.float32(0.1) * (av @ bv)
    for dev in available_devices():
        K.set_value(m, mv)
        K.function([a, b], [], updates=[(m, new)], device=dev)([av, bv])
        assert_match(K.get_value(m), want, rtol=1e-5, atol=1e-6, what=dev)
    mv2 = _arr(5, 3)  # all finite: BLAS's own beta = 0 path
    for dev in available_devices():
        K.set_value(m, mv2)
        K.function([a, b], [], updates=[(m, new)], device=dev)([av, bv])
        assert_match(K.get_value(m), -np.float32(0.1) * (av @ bv), rtol=1e-5, atol=1e-6,
                     what=dev)
