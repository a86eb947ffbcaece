"""Lowering of composite ops (softmax, log_softmax, logsumexp) to primitives, enabled per target
through ``target_lacks``: structure and numbers (against the composite references and numpy,
including rows of infinities)."""

from __future__ import annotations

import numpy as np
import pytest

from symk.graph import build as gb
from symk.graph.node import apply
from symk.passes import lower
from symk.passes.pipeline import optimize
from symk.passes.rewrite import rewrite
from tests.passes.common import assert_close, execute, ops, ph, run

ALL = frozenset({"softmax", "log_softmax", "logsumexp"})


def test_rules_are_enabled_per_target():
    assert len(lower.for_target(frozenset())) == 0
    assert [r.name for r in lower.for_target(frozenset({"softmax"})).rules] == ["lower_softmax"]
    assert len(lower.for_target(ALL)) == 3
    x = ph((2, 5))
    sm = apply("softmax", [x], axis=1)
    # nothing lowered for a target with every intrinsic, at any level
    assert optimize([sm], level=0, exclude=set()).roots == [sm]
    assert optimize([sm], level=2, exclude=set(), target_lacks=frozenset({"logsumexp"})
                    ).roots == [sm]


def test_lower_softmax_structure():
    x = ph((2, 5))
    (out,) = rewrite([apply("softmax", [x], axis=1)], lower.for_target(ALL))
    e = gb.exp(gb.sub(x, apply("max", [x], axes=(1,), keepdims=True)))
    assert out is gb.div(e, gb.sum(e, [1], keepdims=True))


def test_lower_log_softmax_structure():
    x = ph((4, 3))
    (out,) = rewrite([apply("log_softmax", [x], axis=0)], lower.for_target(ALL))
    z = gb.sub(x, apply("max", [x], axes=(0,), keepdims=True))
    assert out is gb.sub(z, gb.log(gb.sum(gb.exp(z), [0], keepdims=True)))


def test_lower_logsumexp_structure():
    x = ph((4, 3, 2))
    (out,) = rewrite([apply("logsumexp", [x], axes=(0, 2), keepdims=False)],
                     lower.for_target(ALL))
    assert out.shape == (3,) and out.op.name == "squeeze"
    assert "logsumexp" not in ops(out) and "max" in ops(out) and "where" in ops(out)
    (kept,) = rewrite([apply("logsumexp", [x], axes=(1,), keepdims=True)],
                      lower.for_target(ALL))
    assert kept.shape == (4, 1, 2) and kept.op.name == "add"


def _np_log_softmax(a, axis):
    a = a.astype(np.float64)
    m = a.max(axis=axis, keepdims=True)
    z = a - m
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _np_logsumexp(a, axes, keepdims):
    a = a.astype(np.float64)
    m = a.max(axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.exp(a - m).sum(axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


@pytest.mark.parametrize("level", [0, 2])
def test_lowered_numbers(level):
    x = ph((4, 5))
    nodes = [apply("softmax", [x], axis=1), apply("log_softmax", [x], axis=0),
             apply("logsumexp", [x], axes=(1,), keepdims=False),
             apply("logsumexp", [x], axes=(0, 1), keepdims=True)]
    xs = (np.random.default_rng(4).normal(size=(4, 5)) * 30).astype(np.float32)
    xs[2] = -np.inf  # a row of -inf: logsumexp -inf
    xs[3, 1] = np.inf  # +inf in a row: logsumexp +inf, softmax nan
    opt = optimize(nodes, level=level, exclude=set(), target_lacks=ALL)
    assert not {"softmax", "log_softmax", "logsumexp"} & set(ops(opt.roots))
    with np.errstate(all="ignore"):
        got = execute(opt, {x: xs})
        composite = run(nodes, {x: xs}, level=0)
        want = [np.exp(_np_log_softmax(xs, 1)), _np_log_softmax(xs, 0),
                _np_logsumexp(xs, (1,), False), _np_logsumexp(xs, (0, 1), True)]
    for k, (g, c, w) in enumerate(zip(got, composite, want)):
        assert_close(g, c, what=f"lowered vs composite {k}")
        assert_close(g, w.astype(np.float32), what=f"lowered vs numpy {k}")
    assert got[2][2] == -np.inf and got[2][3] == np.inf


def test_every_lowering_rule_is_tested_here():
    assert {r.name for r in lower.rules.rules} == {"lower_softmax", "lower_log_softmax",
                                                   "lower_logsumexp"}
