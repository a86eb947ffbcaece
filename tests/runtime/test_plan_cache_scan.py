"""Functions holding a scan (``K.rnn``: every recurrent Keras model) are cached like the others:
the scan's body is part of the key and of the cached plan, the body's own compiled plan is
cached too, so a rebuilt LSTM, or the same LSTM in a second process, runs no pass pipeline and
no LLVM and computes the same numbers; different bodies get different entries."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import symk.graph.ops.scan as scan_mod
import symk.runtime.scan_cpu as scan_cpu
from symk import backend as K
from symk.graph.node import toposort
from symk.graph.serialize import decode_attr, encode_attr, structure_key
from symk.runtime import plan_cache

ROOT = Path(__file__).resolve().parents[2]
B, T, F, U = 4, 6, 3, 5

LSTM = r"""
import numpy as np
from symk import backend as K


def build_lstm(device="cpu", gate=K.sigmoid):
    '''An LSTM-like K.rnn training step: four gates from two products, sigmoid/tanh, a loss
    on the last output and the sequence, gradients of all weights and SGD updates.'''
    B, T, F, U = 4, 6, 3, 5
    rng = np.random.default_rng(3)
    x = K.placeholder((B, T, F))
    y = K.placeholder((B, U))
    W = K.variable(rng.normal(size=(F, 4 * U)).astype(np.float32) * 0.5)
    R = K.variable(rng.normal(size=(U, 4 * U)).astype(np.float32) * 0.5)
    b = K.variable(np.zeros(4 * U, np.float32))

    def step(xt, states):
        h, c = states
        z = K.dot(xt, W) + K.dot(h, R) + b
        i, f, g, o = (z[:, k * U:(k + 1) * U] for k in range(4))
        c2 = gate(f) * c + gate(i) * K.tanh(g)
        h2 = gate(o) * K.tanh(c2)
        return h2, [h2, c2]

    zeros = np.zeros((B, U), np.float32)
    last, outs, _ = K.rnn(step, x, [K.variable(zeros), K.variable(zeros)])
    loss = K.mean(K.square(last - y)) + 0.1 * K.mean(outs)
    params = [W, R, b]
    grads = K.gradients(loss, params)
    f = K.function([x, y], [loss, outs],
                   updates=[K.update_sub(p, 0.1 * g) for p, g in zip(params, grads)],
                   device=device)
    return f, params


def train(f, params, steps=3):
    rng = np.random.default_rng(7)
    xv = rng.normal(size=(4, 6, 3)).astype(np.float32)
    yv = rng.normal(size=(4, 5)).astype(np.float32)
    losses, outs = [], None
    for _ in range(steps):
        loss, outs = f([xv, yv])
        losses.append(float(loss))
    return losses, outs, [K.get_value(p) for p in params]
"""

SCRIPT = LSTM + r"""
import symk.codegen.llvm_compile as lc
import symk.passes.pipeline as pipeline

runs = []
orig = pipeline.optimize
pipeline.optimize = lambda *a, **k: runs.append(1) or orig(*a, **k)
f, params = build_lstm()
losses, outs, values = train(f, params)
nums = losses + outs.ravel().tolist() + [v for p in values for v in p.ravel().tolist()]
print("STATS", lc.COMPILE_COUNT, len(runs), repr(nums))
"""

_ns: dict = {}
exec(compile(LSTM, "<lstm>", "exec"), _ns)
build_lstm, train = _ns["build_lstm"], _ns["train"]


def _forget_bodies(monkeypatch) -> None:
    """As in a new process: no compiled, encoded or decoded scan body is known."""
    monkeypatch.setattr(scan_cpu, "_compiled", weakref.WeakKeyDictionary())
    monkeypatch.setattr(scan_mod, "_encoded", weakref.WeakKeyDictionary())
    monkeypatch.setattr(scan_mod, "_decoded", weakref.WeakValueDictionary())


def _bodies(f) -> list:
    """The distinct ScanBody objects of the scan steps of ``f``'s plan."""
    (plan,) = f.fn.plans
    seen: dict[int, object] = {}
    for s in plan.schedule.externs:
        if s.node.op.name == "scan":
            seen.setdefault(id(s.node.attrs["body"]), s.node.attrs["body"])
    return list(seen.values())


def test_second_process_compiles_nothing_for_an_lstm(fresh, tmp_path):
    script = tmp_path / "lstm.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYMK_")}
    env.update(PYTHONPATH=str(ROOT), SYMK_CACHE_DIR=str(fresh), SYMK_DEBUG="1")

    def run() -> tuple[int, int, list[float], str]:
        p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                           text=True, timeout=180, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        (line,) = [s for s in p.stdout.splitlines() if s.startswith("STATS")]
        _, compiles, passes, nums = line.split(" ", 3)
        return int(compiles), int(passes), eval(nums), p.stderr

    compiles, passes, first, log1 = run()
    assert compiles >= 2 and passes == 3, log1  # the function and its two scan bodies
    assert "not cached" not in log1
    compiles, passes, second, log2 = run()
    assert (compiles, passes) == (0, 0), log2
    assert "plan cache hit" in log2
    assert first == second  # bit for bit
    # and both are right: the reference executor, compiled in this process
    f, params = build_lstm("interp")
    losses, outs, values = train(f, params)
    want = losses + outs.ravel().tolist() + [v for p in values for v in p.ravel().tolist()]
    np.testing.assert_allclose(first, want, rtol=2e-4, atol=1e-5)


def test_rebuilt_lstm_runs_no_passes(fresh, optimize_calls, monkeypatch):
    f1, p1 = build_lstm()
    assert sorted(optimize_calls) == ["function", "scan body", "scan body"]
    want = train(f1, p1)
    f2, p2 = build_lstm()  # new variables, placeholders and body placeholders
    assert len(optimize_calls) == 3
    got = train(f2, p2)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    for a, b in zip(got[2], want[2]):
        np.testing.assert_array_equal(a, b)
    # from disk, with no body known in memory: still no passes, and the results of one loop
    # (its stacked outputs, last carries and trajectories) still share one body
    plan_cache.clear_memory()
    _forget_bodies(monkeypatch)
    f3, p3 = build_lstm()
    assert len(optimize_calls) == 3
    assert len(_bodies(f3)) == 2  # the forward loop and the backward (gradient) loop
    got = train(f3, p3)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    # 1 function + 2 bodies
    assert len(list(fresh.glob("*.plan.json"))) == 3


def test_other_bodies_are_other_entries(fresh, optimize_calls):
    def hard_sigmoid_like(v):
        return K.clip(v * 0.2 + 0.5, 0.0, 1.0)

    f1, p1 = build_lstm()
    n = len(optimize_calls)
    f2, p2 = build_lstm(gate=hard_sigmoid_like)  # same outer graph, other step
    assert len(optimize_calls) == n + 3  # the function and both bodies are new entries
    got = train(f2, p2)
    assert got[0] != train(f1, p1)[0]
    ref = train(*build_lstm("interp", gate=hard_sigmoid_like))
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4, atol=1e-6)


def test_interp_device_caches_scans_too(fresh, optimize_calls, monkeypatch):
    f1, p1 = build_lstm("interp")
    want = train(f1, p1)
    plan_cache.clear_memory()
    _forget_bodies(monkeypatch)
    f2, p2 = build_lstm("interp")
    assert optimize_calls == ["function"]  # interp runs bodies with their numpy references
    got = train(f2, p2)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_body_round_trip(monkeypatch):
    f, _ = build_lstm("interp")
    body = _bodies(f)[0]
    j = encode_attr(body)
    _forget_bodies(monkeypatch)
    back = decode_attr(j)
    assert back is not body and back == back  # fresh placeholders, hashable
    assert decode_attr(j) is back  # one object per encoding
    assert encode_attr(back) == j
    # same structure key, and the same values for the same inputs
    ins = body.seqs + body.carries + body.consts

    def key(b) -> str:
        return structure_key(list(b.outs) + list(b.new_carries),
                             lambda leaf: [list(b.seqs + b.carries + b.consts).index(leaf)])[0]
    assert key(body) == key(back)
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(T,) + tuple(p.shape)).astype(p.dtype) for p in body.seqs]
    args += [rng.normal(size=p.shape).astype(p.dtype) for p in ins[len(body.seqs):]]
    results = [("seq", 0), ("last", 0), ("carries", 1)][:1 + len(body.carries)]
    for a, b in zip(scan_mod.run_scan(body, False, args, results),
                    scan_mod.run_scan(back, False, args, results)):
        np.testing.assert_array_equal(a, b)


def test_unencodable_leaf_in_a_body_is_not_cached():
    """A body reading a leaf that is not one of its placeholders (never made by build_scan)
    has no encoding: the function is simply not cached."""
    from symk.graph.node import apply, fresh_uid
    from symk.graph.serialize import Unencodable

    p = apply("placeholder", [], dtype="float32", shape=(2,), uid=fresh_uid())
    stray = apply("placeholder", [], dtype="float32", shape=(2,), uid=fresh_uid())
    c = apply("placeholder", [], dtype="float32", shape=(2,), uid=fresh_uid())
    new = apply("add", [apply("add", [p, c]), stray])
    body = scan_mod.ScanBody([p], [c], [], [new], [new])
    assert stray in toposort([new])
    with pytest.raises(Unencodable):
        encode_attr(body)
