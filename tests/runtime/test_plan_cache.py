"""The plan cache: a rebuilt model (new placeholders, variables and names) or a second process
skips passes, lowering and LLVM, and still computes with its own leaves; anything structural
(an op, a constant, the input order, the learning phase, the pass settings) gives another
entry; a broken entry is discarded with a warning and the function compiled again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symk.runtime.native as native
from symk import backend as K
from symk.runtime import cache, plan_cache

ROOT = Path(__file__).resolve().parents[2]


def _model(scale: float, wv: np.ndarray, tag: str):
    x = K.placeholder((None, 4), name=f"x{tag}")
    t = K.placeholder((None, 3), name=f"t{tag}")
    w = K.variable(wv, name=f"w{tag}")
    b = K.variable(np.zeros(3, np.float32), name=f"b{tag}")
    p = K.softmax(K.dot(x, w) * scale + b)
    loss = K.mean(K.categorical_crossentropy(t, p))
    gw, gb = K.gradients(loss, [w, b])
    f = K.function([x, t], [loss, p], updates=[(w, w - 0.5 * gw), (b, b - 0.5 * gb)],
                   device="cpu")
    return f, w, b


def _numpy_step(xv, tv, wv, bv, scale):
    z = xv @ wv * scale + bv
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    loss = -np.mean(np.sum(tv * np.log(p), axis=1))
    dz = (p - tv) / len(xv)
    return loss, p, wv - 0.5 * scale * xv.T @ dz, bv - 0.5 * dz.sum(0)


def test_rebuilt_model_skips_the_passes_and_uses_its_own_leaves(fresh, optimize_calls):
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(5, 4)).astype(np.float32)
    tv = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0]]
    w1 = rng.normal(size=(4, 3)).astype(np.float32)
    w2 = rng.normal(size=(4, 3)).astype(np.float32)
    f1, wa, ba = _model(1.5, w1, "a")
    assert len(optimize_calls) == 1
    f2, wb, bb = _model(1.5, w2, "b")  # same structure, other variables, names and values
    assert len(optimize_calls) == 1
    for f, w, b, wv in ((f1, wa, ba, w1), (f2, wb, bb, w2), (f1, wa, ba, None)):
        wv = K.get_value(w) if wv is None else wv
        bv = K.get_value(b)
        loss, p = f([xv, tv])
        want = _numpy_step(xv.astype(np.float64), tv, wv, bv, 1.5)
        np.testing.assert_allclose(loss, want[0], rtol=1e-5)
        np.testing.assert_allclose(p, want[1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(K.get_value(w), want[2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(K.get_value(b), want[3], rtol=1e-5, atol=1e-6)
    assert len(list(fresh.glob("*.plan.json"))) == 1


def test_structural_changes_are_other_entries(fresh, optimize_calls, monkeypatch):
    def build(c: float, swap: bool = False, op=K.tanh):
        a, b = K.placeholder((3,)), K.placeholder((3,))
        ins = [b, a] if swap else [a, b]
        return K.function(ins, [op(a) * c - b], device="cpu")

    av, bv = np.array([0.5, -1, 2], np.float32), np.array([1, 2, 3], np.float32)
    np.testing.assert_allclose(build(2.0)([av, bv])[0], np.tanh(av) * 2 - bv, rtol=1e-6)
    np.testing.assert_allclose(build(3.0)([av, bv])[0], np.tanh(av) * 3 - bv, rtol=1e-6)
    # the same graph with its inputs in the other order: b is fed first
    np.testing.assert_allclose(build(2.0, swap=True)([bv, av])[0], np.tanh(av) * 2 - bv,
                               rtol=1e-6)
    np.testing.assert_allclose(build(2.0, op=K.sigmoid)([av, bv])[0],
                               1 / (1 + np.exp(-av)) * 2 - bv, rtol=1e-6)
    assert len(optimize_calls) == 4
    build(3.0)
    assert len(optimize_calls) == 4
    monkeypatch.setenv("SYMK_EXCLUDE", "fusion")  # pass settings are part of the key
    build(3.0)
    assert len(optimize_calls) == 5
    # so is symk's own code: a changed pass or lowering never reuses an old plan
    monkeypatch.setattr(plan_cache, "code_fingerprint", lambda: "edited source")
    build(3.0)
    assert len(optimize_calls) == 6


def test_learning_phase_plans_are_cached_separately(fresh, optimize_calls):
    def build():
        x = K.placeholder((2, 3))
        return K.function([x, K.learning_phase()], [K.in_train_phase(x * 2.0, x - 1.0)],
                          device="cpu")

    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = build()
    np.testing.assert_array_equal(f([xv, 1])[0], xv * 2)
    np.testing.assert_array_equal(f([xv, 0])[0], xv - 1)
    n = len(optimize_calls)
    g = build()
    np.testing.assert_array_equal(g([xv, 0])[0], xv - 1)
    np.testing.assert_array_equal(g([xv, 1])[0], xv * 2)
    assert len(optimize_calls) == n


def test_interp_device_is_cached_too(fresh, optimize_calls):
    def build():
        x = K.placeholder((None, 2))
        return K.function([x], [K.sum(K.exp(x), axis=0)], device="interp")

    xv = np.array([[0.0, 1.0], [2.0, -1.0]], np.float32)
    np.testing.assert_allclose(build()([xv])[0], np.exp(xv).sum(0), rtol=1e-6)
    np.testing.assert_allclose(build()([xv])[0], np.exp(xv).sum(0), rtol=1e-6)
    assert len(optimize_calls) == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage-json", "bad-node"])
def test_broken_entry_is_discarded_and_rebuilt(fresh, optimize_calls, damage):
    def build():
        x = K.placeholder((3,))
        return K.function([x], [K.exp(x) * 2.0 + 1.0], device="cpu")

    xv = np.array([0.0, 1.0, -2.0], np.float32)
    build()
    (entry,) = fresh.glob("*.plan.json")
    text = entry.read_text()
    if damage == "truncate":
        entry.write_text(text[: len(text) // 2])
    elif damage == "garbage-json":
        entry.write_text(json.dumps({"format": plan_cache.FORMAT, "nodes": 7}))
    else:
        t = json.loads(text)
        t["nodes"][-1][0] = "no_such_op"
        entry.write_text(json.dumps(t))
    plan_cache.clear_memory()
    with pytest.warns(RuntimeWarning, match="discarding plan cache entry"):
        f = build()
    np.testing.assert_allclose(f([xv])[0], np.exp(xv) * 2 + 1, rtol=1e-6)
    assert len(optimize_calls) == 2
    plan_cache.clear_memory()
    build()  # the rewritten entry is good again
    assert len(optimize_calls) == 2


def test_cleared_object_cache_is_a_plain_miss(fresh, optimize_calls, recwarn):
    x = K.placeholder((3,))
    K.function([x], [K.exp(x) + 1.0], device="cpu")
    for o in fresh.glob("*.o"):
        o.unlink()
    native._loaded.clear()
    cache._memory.clear()
    x = K.placeholder((3,))
    f = K.function([x], [K.exp(x) + 1.0], device="cpu")
    np.testing.assert_allclose(f([np.zeros(3, np.float32)])[0], [2, 2, 2])
    assert len(optimize_calls) == 2
    assert not [w for w in recwarn if "plan cache" in str(w.message)]


def test_an_entry_cached_without_drivers_is_compiled_again_with_them(fresh, optimize_calls,
                                                                     monkeypatch):
    """A plan cached while SYMK_NATIVE_DRIVER=0 has no drivers in its object code: with
    drivers on, the hit is a miss (compiled again, with them), not a plan without drivers."""
    monkeypatch.setenv("SYMK_NATIVE_DRIVER", "0")
    x = K.placeholder((3,))
    K.function([x], [K.exp(x) + 1.0], device="cpu")
    monkeypatch.delenv("SYMK_NATIVE_DRIVER")
    x = K.placeholder((3,))
    f = K.function([x], [K.exp(x) + 1.0], device="cpu")
    assert len(optimize_calls) == 2
    assert f.fn.plans[0].executor.segments
    np.testing.assert_allclose(f([np.zeros(3, np.float32)])[0], [2, 2, 2])


def test_dumps_bypass_the_cache(fresh, optimize_calls, monkeypatch, tmp_path):
    def build():
        x = K.placeholder((3,))
        return K.function([x], [x * 3.0], device="cpu", name="dumped")

    build()
    monkeypatch.setenv("SYMK_DUMP_DIR", str(tmp_path / "dumps"))
    build()
    assert len(optimize_calls) == 2
    assert len(list((tmp_path / "dumps").glob("dumped-*/schedule.txt"))) == 1


CHAIN = r"""
import time
import numpy as np
from symk import backend as K
import symk.codegen.llvm_compile as lc
import symk.passes.pipeline as pipeline

runs = []
orig = pipeline.optimize
pipeline.optimize = lambda *a, **k: runs.append(1) or orig(*a, **k)
x = K.placeholder((100,))
y = x
for i in range(300):
    y = y * 1.001 if i % 3 == 0 else y + 0.25 if i % 3 == 1 else K.maximum(y, -1.5)
f = K.function([x], [y])
out = f([np.linspace(-3, 3, 100, dtype=np.float32)])[0]
print("STATS", lc.COMPILE_COUNT, len(runs), repr(out.round(5).tolist()))
"""


def test_second_process_runs_no_passes_and_no_llvm(fresh, tmp_path):
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYMK_")}
    env.update(PYTHONPATH=str(ROOT), SYMK_CACHE_DIR=str(fresh))

    def run() -> list[str]:
        p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        (line,) = [s for s in p.stdout.splitlines() if s.startswith("STATS")]
        return line.split(" ", 3)[1:]

    compiles, passes, out1 = run()
    assert (compiles, passes) == ("1", "1")
    compiles, passes, out2 = run()
    assert (compiles, passes) == ("0", "0")
    assert out1 == out2
    y = np.linspace(-3, 3, 100).astype(np.float32)
    for i in range(300):
        y = (y * np.float32(1.001) if i % 3 == 0 else y + np.float32(0.25) if i % 3 == 1
             else np.maximum(y, np.float32(-1.5)))
    np.testing.assert_allclose(eval(out1), y, rtol=1e-4, atol=1e-5)
