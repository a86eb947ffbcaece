"""Memory planning: values are dropped right after their last use (never before, roots never),
buffers are reused only between values whose lifetimes do not overlap (views share their base's
buffer), and variable updates stay atomic whatever the passes do."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.passes.pipeline import optimize
from symk.passes.schedule import Kernel, Schedule, View
from symk.runtime.interp import InterpPlan
from tests.passes.common import ph

RNG = np.random.default_rng(6)


def _io(step):
    if isinstance(step, Kernel):
        return list(step.inputs), list(step.outputs)
    return list(step.node.inputs), [step.node]


def _check_frees(s: Schedule) -> None:
    """Simulate the plan: inputs are live when read, frees happen at a read (or the producing
    step), nothing but the roots (and what their views keep alive) survives."""
    base: dict[int, int] = {}
    live: set[int] = set()
    produced: set[int] = set()
    for k, step in enumerate(s.steps):
        ins, outs = _io(step)
        for i in ins:
            if i.op.is_leaf:
                continue
            assert id(i) in live, f"step {k} reads {i} after it was freed"
        for o in outs:
            live.add(id(o))
            produced.add(id(o))
            base[id(o)] = (base.get(id(step.node.inputs[0]), id(step.node.inputs[0]))
                           if isinstance(step, View) else id(o))
        group = {base.get(id(i), id(i)) for i in ins} | {base[id(o)] for o in outs}
        for v in s.frees[k]:
            assert id(v) in live, f"step {k} frees {v} twice"
            assert base[id(v)] in group, f"step {k} frees {v}, which it neither reads nor writes"
            live.discard(id(v))
    root_bases = {base.get(id(r), id(r)) for r in s.roots}
    for r in s.roots:
        assert id(r) in live or r.op.is_leaf, f"root {r} was freed"
    leaked = [v for v in live if base[v] not in root_bases]
    assert not leaked, f"{len(leaked)} values are never freed"


def _check_buffers(s: Schedule) -> None:
    """Values sharing a buffer have disjoint lifetimes (a view lives in its base's buffer)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    base: dict[int, int] = {}
    for k, step in enumerate(s.steps):
        ins, outs = _io(step)
        for o in outs:
            b = (base.get(id(step.node.inputs[0]), id(step.node.inputs[0]))
                 if isinstance(step, View) else id(o))
            base[id(o)] = b
            first.setdefault(b, k)
            last[b] = max(last.get(b, k), k)
        for i in ins:
            b = base.get(id(i))
            if b is not None:
                last[b] = max(last[b], k)
    for r in s.roots:
        if id(r) in base:
            last[base[id(r)]] = len(s.steps)
    by_buffer: dict[int, list[int]] = {}
    for vid, b in base.items():
        if vid == b and vid in s.buffers:
            by_buffer.setdefault(s.buffers[vid], []).append(vid)
        elif vid != b and vid in s.buffers:
            assert s.buffers[vid] == s.buffers[b], "a view must use its base's buffer"
    for owners in by_buffer.values():
        spans = sorted((first[o], last[o]) for o in owners)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end < start, f"buffer shared by overlapping lifetimes {spans}"


def _long_chain(n: int):
    x = ph((32, 16))
    y = x
    for i in range(n):
        y = gb.tanh(y) if i % 2 else gb.mul(y, 1.5)
    return x, y


def test_buffers_are_reused_in_a_long_unfused_chain():
    x, y = _long_chain(100)
    s = optimize([y], level=2, exclude={"fusion"}).schedule
    assert len(s.kernels) == 100  # one kernel per op
    _check_frees(s)
    _check_buffers(s)
    assert s.n_buffers <= 3, s.n_buffers
    plan = InterpPlan(s, [x])
    xs = RNG.normal(size=(32, 16)).astype(np.float32)
    vals = plan.run([xs])
    live = [v for v in vals[len(s.leaves):] if v is not None]
    assert len(live) == 1 and live[0] is vals[plan.slot[id(y)]]  # intermediates dropped
    want = xs.astype(np.float64)
    for i in range(100):
        want = np.tanh(want) if i % 2 else want * 1.5
    np.testing.assert_allclose(vals[plan.slot[id(y)]], want, rtol=1e-5, atol=1e-6)


def test_views_keep_their_base_alive():
    x = ph((4, 6))
    a = gb.exp(x)
    v = gb.reshape(a, (6, 4))  # a view of a
    out1 = gb.add(gb.exp(v), 1.0)
    out2 = gb.mul(v, 2.0)  # reads the view after a's own last reader
    s = optimize([out1, out2], level=2, exclude={"fusion"}).schedule
    assert any(isinstance(st, View) for st in s.steps)
    _check_frees(s)
    _check_buffers(s)
    xs = RNG.normal(size=(4, 6)).astype(np.float32)
    plan = InterpPlan(s, [x])
    vals = plan.run([xs])
    e = np.exp(xs.astype(np.float64)).reshape(6, 4)
    np.testing.assert_allclose(vals[plan.slot[id(out1)]], np.exp(e) + 1, rtol=1e-5)
    np.testing.assert_allclose(vals[plan.slot[id(out2)]], e * 2, rtol=1e-5)


@pytest.mark.parametrize("exclude", [set(), {"fusion"}])
def test_roots_are_never_freed_and_plans_are_consistent(exclude):
    x, w = ph((8, 5)), ph((5, 3))
    h = gb.exp(gb.einsum("ab,bc->ac", [x, w]))
    r = gb.sum(h, [1], keepdims=True)
    outs = [gb.div(h, r), h, gb.reshape(r, (8,)), gb.sqrt(r)]
    s = optimize(outs, level=2, exclude=exclude).schedule
    _check_frees(s)
    _check_buffers(s)


def test_a_view_root_keeps_its_base():
    x = ph((3, 4))
    a = gb.exp(x)
    root = gb.reshape(a, (12,))
    other = gb.sum(a, [0])
    s = optimize([root, other], level=2, exclude={"fusion"}).schedule
    _check_frees(s)
    freed = {id(v) for fs in s.frees for v in fs}
    assert id(a) not in freed and id(root) not in freed


@pytest.mark.parametrize("env", [{}, {"SYMK_EXCLUDE": "fusion"}, {"SYMK_OPT": "0"}])
def test_updates_stay_atomic(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    a = K.variable(np.array([1.0, 2.0], np.float32))
    b = K.variable(np.array([3.0, 4.0], np.float32))
    c = K.variable(np.array([0.5, 0.25], np.float32))
    x = K.placeholder((2,))
    out = a * b + x
    # a and b swap; c reads both old values; the output reads the old ones too
    f = K.function([x], [out, K.exp(a)], updates=[(a, b), (b, a), (c, c + a * b)])
    got, e = f([np.array([10.0, 20.0], np.float32)])
    np.testing.assert_allclose(got, [13.0, 28.0])
    np.testing.assert_allclose(e, np.exp([1.0, 2.0]), rtol=1e-6)
    np.testing.assert_array_equal(K.get_value(a), [3.0, 4.0])
    np.testing.assert_array_equal(K.get_value(b), [1.0, 2.0])
    np.testing.assert_allclose(K.get_value(c), [3.5, 8.25])
    got, _ = f([np.zeros(2, np.float32)])
    np.testing.assert_allclose(got, [3.0, 8.0])
    np.testing.assert_array_equal(K.get_value(a), [1.0, 2.0])
    # the returned output is not aliased to a variable's new storage
    got[0] = 99.0
    np.testing.assert_array_equal(K.get_value(a), [1.0, 2.0])
