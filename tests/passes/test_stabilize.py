"""Stabilization rules, one by one (structure, and numbers against float64 numpy formulas with
passes on and off), then the stability the rules buy: Keras's categorical and binary
cross-entropies at huge logits, log(sigmoid(x)) at x = -1000, log(sum(exp(x))) at x ~ 1000,
log1p/expm1 at tiny x, and finite gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.passes import stabilize
from symk.passes.pipeline import optimize
from symk.passes.rewrite import rewrite
from tests.passes.common import assert_close, ops, ph, run, run_levels

EPS = np.float32(1e-7)
LO, HI = float(EPS), float(np.float32(1 - EPS))
RNG = np.random.default_rng(2)


def _sig(x):
    return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + exp(-x)) without overflow


def _log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _softmax(x, axis=-1):
    return np.exp(_log_softmax(x, axis))


@dataclass
class Case:
    rule: str
    shapes: list[tuple[int, ...]]
    build: Callable[..., Node]
    expect: Callable[..., Node]
    ref: Callable[..., np.ndarray]  # float64 numpy math of the original formula
    scale: float = 2.0


def _ls(x, a=1):
    return apply("log_softmax", [x], axis=a)


def _sm(x, a=1):
    return apply("softmax", [x], axis=a)


def _softplus(x):
    return apply("softplus", [x])


CASES = [
    Case("log_softmax", [(3, 5)], lambda x: gb.log(_sm(x)), lambda x: _ls(x),
         lambda a: np.log(_softmax(a))),
    Case("log_softmax", [(4, 2)], lambda x: gb.log(_sm(x, 0)), lambda x: _ls(x, 0),
         lambda a: np.log(_softmax(a, 0))),
    Case("softmax_renormalize", [(3, 5)],
         lambda x: gb.div(_sm(x), gb.sum(_sm(x), [1], keepdims=True)), lambda x: _sm(x),
         lambda a: _softmax(a) / _softmax(a).sum(1, keepdims=True)),
    Case("log_clip_softmax", [(3, 5)], lambda x: gb.log(gb.clip(_sm(x), LO, HI)),
         lambda x: gb.clip(_ls(x), math.log(LO), math.log(HI)),
         lambda a: np.log(np.clip(_softmax(a), LO, HI)), 8.0),
    Case("log_sigmoid", [(6,)], lambda x: gb.log(gb.sigmoid(x)),
         lambda x: gb.neg(_softplus(gb.neg(x))), lambda a: np.log(_sig(a))),
    Case("log_one_minus_sigmoid", [(6,)], lambda x: gb.log(gb.sub(1.0, gb.sigmoid(x))),
         lambda x: gb.neg(_softplus(x)), lambda a: np.log(1 - _sig(a))),
    Case("log_clip_sigmoid", [(6,)], lambda x: gb.log(gb.clip(gb.sigmoid(x), LO, HI)),
         lambda x: gb.clip(gb.neg(_softplus(gb.neg(x))), math.log(LO), math.log(HI)),
         lambda a: np.log(np.clip(_sig(a), LO, HI)), 20.0),
    Case("log_one_minus_clip_sigmoid", [(6,)],
         lambda x: gb.log(gb.sub(1.0, gb.clip(gb.sigmoid(x), LO, HI))),
         lambda x: gb.clip(gb.neg(_softplus(x)), math.log(1 - HI), math.log(1 - LO)),
         lambda a: np.log(1 - np.clip(_sig(a), LO, HI)), 20.0),
    Case("logsumexp", [(3, 4)], lambda x: gb.log(gb.sum(gb.exp(x), [1])),
         lambda x: apply("logsumexp", [x], axes=(1,), keepdims=False),
         lambda a: np.log(np.exp(a).sum(1))),
    Case("logsumexp", [(3, 4)], lambda x: gb.log(gb.sum(gb.exp(x), None, keepdims=True)),
         lambda x: apply("logsumexp", [x], axes=(0, 1), keepdims=True),
         lambda a: np.log(np.exp(a).sum(keepdims=True))),
    Case("log1p", [(5,)], lambda x: gb.log(gb.add(1.0, x)), lambda x: apply("log1p", [x]),
         lambda a: np.log1p(a), 0.5),
    Case("expm1", [(5,)], lambda x: gb.sub(gb.exp(x), 1.0), lambda x: apply("expm1", [x]),
         lambda a: np.expm1(a)),
    Case("grad_log_sigmoid", [(6,), (6,)],
         lambda x, g: gb.mul(gb.div(g, gb.sigmoid(x)),
                             gb.mul(gb.sigmoid(x), gb.sub(1.0, gb.sigmoid(x)))),
         lambda x, g: gb.mul(g, gb.sigmoid(gb.neg(x))),
         lambda a, g: g / _sig(a) * (_sig(a) * (1 - _sig(a)))),
    Case("grad_log_one_minus_sigmoid", [(6,), (6,)],
         lambda x, g: gb.mul(gb.neg(gb.div(g, gb.sub(1.0, gb.sigmoid(x)))),
                             gb.mul(gb.sigmoid(x), gb.sub(1.0, gb.sigmoid(x)))),
         lambda x, g: gb.neg(gb.mul(g, gb.sigmoid(x))),
         lambda a, g: -(g / (1 - _sig(a))) * (_sig(a) * (1 - _sig(a)))),
    Case("broadcast_like_inputs", [(4, 1), (4, 5), (1, 5)],
         lambda g, a, c: apply("broadcast_like", [g, gb.add(gb.mul(a, 2.0), gb.exp(c))]),
         lambda g, a, c: apply("broadcast_to", [g], shape=(4, 5)),
         lambda g, a, c: np.broadcast_to(g, (4, 5))),
    Case("shape_of_elementwise", [(3, 4)],
         lambda x: gb.cast(apply("shape_of", [gb.neg(gb.mul(gb.exp(x), 2.0))]), "float32"),
         lambda x: gb.cast(apply("shape_of", [x]), "float32"),
         lambda a: np.asarray(a.shape, np.float64)),
    Case("count_elementwise", [(3, 4)],
         lambda x: apply("count", [gb.neg(gb.mul(gb.exp(x), 2.0))], axes=(0,), dtype="float32"),
         lambda x: apply("count", [x], axes=(0,), dtype="float32"),
         lambda a: np.asarray(a.shape[0], np.float64)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_rule_structure(case):
    leaves = [ph(s) for s in case.shapes]
    stats: dict[str, int] = {}
    (out,) = rewrite([case.build(*leaves)], stabilize.rules, stats)
    want = case.expect(*leaves)
    assert out is want, f"got {ops(out)}, expected {ops(want)}"
    assert stats.get(case.rule, 0) >= 1, stats


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_rule_numbers(case):
    """Where the original formula is accurate, the rewrite gives the same numbers."""
    leaves = [ph(s) for s in case.shapes]
    vals = [(RNG.normal(size=s) * case.scale).astype(np.float32) for s in case.shapes]
    node = case.build(*leaves)
    on, off = run_levels([node], dict(zip(leaves, vals)))
    with np.errstate(all="ignore"):
        want = case.ref(*[v.astype(np.float64) for v in vals]).astype(np.float32)
    assert np.isfinite(want).all()
    assert_close(off[0], want, rtol=1e-4, atol=1e-6, what="level 0 vs numpy")
    assert_close(on[0], want, rtol=1e-5, atol=1e-6, what="passes vs numpy")


def test_rules_decline_outside_their_algebra():
    x = ph((3, 5))
    sm = _sm(x)
    cases = [
        gb.div(sm, gb.sum(sm, [0], keepdims=True)),  # renormalized along another axis
        gb.log(gb.clip(sm, -1.0, HI)),  # a negative lower bound has no log
        gb.log(gb.clip(sm, ph(()), HI)),  # bounds must be constants
        gb.log(gb.sub(1.0, gb.clip(gb.sigmoid(x), LO, 1.0))),  # log(1 - 1) = -inf bound
        gb.log(gb.add(x, 2.0)),  # not 1 + x
        gb.sub(gb.exp(x), 2.0),
        gb.log(gb.add(gb.sum(gb.exp(x), [1]), 2.0)),  # not log(sum(exp(x)))
    ]
    assert rewrite(cases, stabilize.rules) == cases


# ---------------------------------------------------------------- stability


def _keras_cce_ref(t: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Keras's clipped categorical cross-entropy in float64: the true log-softmax, clipped to
    [log eps, log(1 - eps)] (clipping is monotonic, so this is log(clip(softmax)))."""
    ls = np.clip(_log_softmax(logits.astype(np.float64)), math.log(LO), math.log(HI))
    return -(t * ls).sum(-1)


def _one_hot(n: int, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[RNG.integers(0, k, n)]


def test_categorical_crossentropy_of_softmax_at_huge_logits():
    t, x = K.placeholder((None, 6)), K.placeholder((None, 6))
    ce = K.categorical_crossentropy(t, K.softmax(x))
    f = K.function([t, x], [ce])
    opt_ops = ops(optimize([ce.node], level=2, exclude=set()).roots)
    assert "softmax" not in opt_ops and "log" not in opt_ops and "log_softmax" in opt_ops
    logits = (RNG.normal(size=(16, 6)) * 1e4).astype(np.float32)
    logits[0] = [1e4, 1e4, -1e4, 0, 3, 1e4 - 5]  # ties and near-ties at the top
    ts = _one_hot(16, 6)
    ts[1] = [0.2, 0.3, 0.5, 0, 0, 0]  # soft targets
    got = f([ts, logits])[0]
    assert np.isfinite(got).all()
    assert_close(got, _keras_cce_ref(ts, logits).astype(np.float32), rtol=1e-5, atol=1e-6)
    # moderate logits: the clip is inactive and the result is the exact cross-entropy
    mod = RNG.normal(size=(16, 6)).astype(np.float32)
    assert_close(f([ts, mod])[0], _keras_cce_ref(ts, mod).astype(np.float32), rtol=1e-5,
                 atol=1e-6)


def test_categorical_crossentropy_gradient_is_finite():
    t = K.placeholder((8, 5))
    x = K.placeholder((8, 5))
    ce = K.sum(K.categorical_crossentropy(t, K.softmax(x)))
    g = K.gradients(ce, [x])[0]
    f = K.function([t, x], [ce, g])
    ts = _one_hot(8, 5)
    big = (RNG.normal(size=(8, 5)) * 1e4).astype(np.float32)
    val, grad = f([ts, big])
    assert np.isfinite(val) and np.isfinite(grad).all()
    mod = RNG.normal(size=(8, 5)).astype(np.float32)
    _, grad = f([ts, mod])
    np.testing.assert_allclose(grad, _softmax(mod) - ts, rtol=1e-4, atol=1e-6)


def test_log_sigmoid_at_minus_1000_and_its_gradient():
    x = K.placeholder((5,))
    y = K.log(K.sigmoid(x))
    g = K.gradients(K.sum(y), [x])[0]
    f = K.function([x], [y, g])
    xs = np.array([-1000.0, -50.0, 0.0, 30.0, 1000.0], np.float32)
    val, grad = f([xs])
    assert np.isfinite(val).all() and np.isfinite(grad).all()
    assert val[0] == -1000.0
    x64 = xs.astype(np.float64)
    want = -np.logaddexp(0.0, -x64)  # log sigmoid(x)
    np.testing.assert_allclose(val, want, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, _sig(-x64), rtol=1e-6, atol=1e-30)  # 1 - sigmoid(x)
    # without the passes: log(0) = -inf and the gradient 0/0
    with np.errstate(all="ignore"):
        off = run([y.node, g.node], {x.node: xs}, level=0)
    assert off[0][0] == -np.inf and np.isnan(off[1][0])


def test_log_one_minus_sigmoid_at_plus_1000_and_its_gradient():
    x = K.placeholder((4,))
    y = K.log(1.0 - K.sigmoid(x))
    g = K.gradients(K.sum(y), [x])[0]
    val, grad = K.function([x], [y, g])([np.array([1000.0, 40.0, 0.0, -1000.0], np.float32)])
    np.testing.assert_allclose(val, [-1000.0, -40.0, -math.log(2.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [-1.0, -1.0, -0.5, 0.0], rtol=1e-6)


def test_binary_crossentropy_of_sigmoid_at_huge_logits():
    t, x = K.placeholder((None, 3)), K.placeholder((None, 3))
    bce = K.binary_crossentropy(t, K.sigmoid(x))
    g = K.gradients(K.sum(bce), [x])[0]
    f = K.function([t, x], [bce, g])
    opt_ops = ops(optimize([bce.node], level=2, exclude=set()).roots)
    assert "sigmoid" not in opt_ops and "log" not in opt_ops
    xs = np.array([[1e4, -1e4, 0.0], [-3e4, 5.0, 2e4], [0.5, -0.5, 12.0]], np.float32)
    ts = np.array([[1, 0, 1], [1, 1, 0], [0.3, 1, 0]], np.float32)
    val, grad = f([ts, xs])
    assert np.isfinite(val).all() and np.isfinite(grad).all()
    x64 = xs.astype(np.float64)
    # Keras: p = clip(sigmoid(x), eps, 1-eps); -(t log p + (1-t) log(1-p)), in float64 with
    # log p and log(1-p) computed without cancellation, then clipped (log is monotonic)
    logp = np.clip(-np.logaddexp(0, -x64), math.log(LO), math.log(HI))
    log1mp = np.clip(-np.logaddexp(0, x64), math.log(1 - HI), math.log(1 - LO))
    want = -(ts * logp + (1 - ts) * log1mp)
    np.testing.assert_allclose(val, want, rtol=1e-5, atol=1e-6)
    # inside the clip range the gradient is sigmoid(x) - t; outside it is 0 (Keras clips)
    inside = (_sig(x64) > LO) & (_sig(x64) < HI)
    np.testing.assert_allclose(grad[inside], (_sig(x64) - ts)[inside], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(grad[~inside], 0.0)


def test_log_sum_exp_of_large_values():
    x = K.placeholder((2, 3))
    y = K.log(K.sum(K.exp(x), axis=1))
    xs = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1000.5]], np.float32)
    got = K.function([x], [y])([xs])[0]
    x64 = xs.astype(np.float64)
    m = x64.max(1)
    want = m + np.log(np.exp(x64 - m[:, None]).sum(1))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with np.errstate(all="ignore"):
        off = run([y.node], {x.node: xs}, level=0)[0]
    assert off[0] == np.inf and off[1] == -np.inf  # exp overflows / underflows


def test_log1p_and_expm1_rewrites_keep_tiny_values():
    x = K.placeholder((4,))
    a, b = K.log(1.0 + x), K.exp(x) - 1.0
    f = K.function([x], [a, b])
    xs = np.array([1e-10, -3e-9, 2e-7, 1e-3], np.float32)
    got_a, got_b = f([xs])
    x64 = xs.astype(np.float64)
    np.testing.assert_allclose(got_a, np.log1p(x64), rtol=1e-6)
    np.testing.assert_allclose(got_b, np.expm1(x64), rtol=1e-6)
    off_a, off_b = run([a.node, b.node], {x.node: xs}, level=0)
    assert off_a[0] == 0.0 and off_b[0] == 0.0  # 1 + 1e-10 == 1 in float32


def test_every_stabilization_rule_has_cases():
    assert {c.rule for c in CASES} == {r.name for r in stabilize.rules.rules}
