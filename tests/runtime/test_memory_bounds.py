"""Bounded memory in long-lived processes: building, calling and dropping many distinct
functions keeps RSS flat (bounded in-process caches, native modules released once no plan
uses them, llvmlite's pass managers freed); a training loop stays flat; a rebuilt identical
model still hits the in-memory plan cache and the loaded native module; a module is never
released while a live plan uses it."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest

import symk.codegen.llvm_compile as llvm_compile
import symk.runtime.native as native
from symk import backend as K
from symk.runtime import cache, lru, plan_cache

ROOT = Path(__file__).resolve().parents[2]

#: allowed RSS growth per 100 compiled-and-dropped functions after the warm-up (measured
#: ~0.5-0.8 MB; before the bounds ~20 MB)
MAX_MB_PER_100 = 3.0

_RSS = """
import gc, json, os, sys
import numpy as np
from symk import backend as K

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
"""


def _run(script: str, tmp_path: Path) -> dict:
    env = {**os.environ, "SYMK_CACHE": "0", "SYMK_CACHE_DIR": str(tmp_path / "cache"),
           "SYMK_DEBUG": "0"}
    env.pop("SYMK_DUMP_DIR", None)
    r = subprocess.run([sys.executable, "-c", _RSS + textwrap.dedent(script)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_dropped_compiles_keep_rss_flat(tmp_path):
    """50 warm-up compiles, then 200 more distinct functions (built, called once, dropped)."""
    out = _run("""
        warm, n = 50, 250
        xs = np.ones((3, 4), np.float32)
        marks = {}
        for i in range(n):
            x = K.placeholder((None, 4))
            f = K.function([x], [K.tanh(x * float(i)) + i])
            r = f([xs])[0]
            assert abs(float(r[0, 0]) - (np.tanh(i) + i)) < 1e-3 * (1 + i)
            del f, x, r
            gc.collect()
            if i + 1 in (warm, n):
                marks[i + 1] = rss()
        from symk.runtime import native
        print(json.dumps({"per100": (marks[n] - marks[warm]) / (n - warm) * 100,
                          "loaded": len(native._loaded)}))
    """, tmp_path)
    assert out["per100"] <= MAX_MB_PER_100, (
        f"RSS grew {out['per100']:.2f} MB per 100 dropped compiles after warm-up "
        f"(limit {MAX_MB_PER_100} MB)")
    assert out["loaded"] <= lru.MODULES_RECENT + 2, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_training_loop_stays_flat(tmp_path):
    out = _run("""
        x = K.placeholder((None, 8)); y = K.placeholder((None, 1))
        W = K.variable(np.random.randn(8, 16).astype("float32") * 0.1)
        V = K.variable(np.random.randn(16, 1).astype("float32") * 0.1)
        loss = K.mean(K.square(K.dot(K.tanh(K.dot(x, W)), V) - y))
        gW, gV = K.gradients(loss, [W, V])
        f = K.function([x, y], [loss], updates=[K.update(W, W - 0.01 * gW),
                                                K.update(V, V - 0.01 * gV)])
        xs = np.random.randn(32, 8).astype("float32")
        ys = np.random.randn(32, 1).astype("float32")
        marks = {}
        for i in range(20000):
            f([np.array(xs), np.array(ys)])  # fresh input arrays every call
            if i + 1 in (2000, 20000):
                gc.collect()
                marks[i + 1] = rss()
        print(json.dumps({"growth": marks[20000] - marks[2000]}))
    """, tmp_path)
    assert out["growth"] <= 2.0, f"RSS grew {out['growth']:.2f} MB over 18,000 calls"


@pytest.fixture
def fresh_lru(tmp_path, monkeypatch):
    """No disk cache (only the memory caches can hit), empty bounded memory caches."""
    monkeypatch.setenv("SYMK_CACHE", "0")
    monkeypatch.setenv("SYMK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", lru.ModuleTable(lru.MODULES_RECENT))
    monkeypatch.setattr(cache, "_memory", lru.LRU(lru.OBJECTS_MAX, lru.OBJECTS_MAX_BYTES, len))
    monkeypatch.setattr(plan_cache, "_memory", lru.LRU(lru.PLANS_MAX))


def _fn(i: float, tag: str = ""):
    x = K.placeholder((None, 4), name=f"x{tag}")
    w = K.variable(np.full((4, 3), 0.5, np.float32), name=f"w{tag}")
    return K.function([x], [K.tanh(K.dot(x, w) * i) + i], device="cpu")


def _plan(f):
    return f.fn.plans[0].executor


def test_rebuilt_model_hits_memory_caches(fresh_lru, optimize_calls):
    runs = optimize_calls
    xs = np.ones((2, 4), np.float32)
    f = _fn(2.0, "a")
    want = f([xs])[0]
    key, mod = _plan(f).prep.key, _plan(f).native
    assert mod is not None and native._loaded.get(key) is mod
    compiles, optimized = llvm_compile.COMPILE_COUNT, len(runs)
    assert optimized == 1
    ref = weakref.ref(mod)
    del f, mod
    gc.collect()
    assert ref() is not None, "a recently used module was released at once"
    g = _fn(2.0, "b")  # the same model, rebuilt with new placeholders, variables and names
    np.testing.assert_allclose(g([xs])[0], want, rtol=1e-6)
    assert llvm_compile.COMPILE_COUNT == compiles, "the rebuilt model was compiled again"
    assert _plan(g).native is ref(), "the rebuilt model loaded its module again"
    assert len(runs) == optimized, "the rebuilt model missed the in-memory plan cache"


def test_unused_modules_are_released_and_live_ones_kept(fresh_lru):
    xs = np.ones((2, 4), np.float32)
    live = _fn(100.0, "live")
    want = live([xs])[0]
    live_key, live_mod = _plan(live).prep.key, _plan(live).native
    first = _fn(200.0, "first")
    first([xs])
    first_ref = weakref.ref(_plan(first).native)
    del first
    for i in range(lru.MODULES_RECENT + 8):  # push both out of the recent LRU
        f = _fn(float(i), str(i))
        f([xs])
        del f
    gc.collect()
    assert first_ref() is None, "a module no plan uses was kept past the LRU"
    # the live plan's module was evicted from the LRU but is still found and still runs
    assert native._loaded.get(live_key) is live_mod
    del live_mod
    np.testing.assert_allclose(live([xs])[0], want, rtol=1e-6)
    assert len(native._loaded) <= lru.MODULES_RECENT + 1


def test_kernel_function_keeps_its_engine():
    """A kernel function object alone keeps its code loaded (nothing can call freed code)."""
    f = _fn(3.0, "k")
    xs = np.ones((2, 4), np.float32)
    f([xs])
    mod = _plan(f).native
    fn = next(iter(mod.fns.values()))
    assert fn.engine is mod.engine and not mod.engine.closed


def test_lru_bounds():
    c = lru.LRU(3, maxbytes=10, sizeof=len)
    for k in "abc":
        c[k] = b"xx"
    assert c.get("a") == b"xx"  # a is now the most recent
    c["d"] = b"xx"
    assert "b" not in c and list(c.keys()) == ["c", "a", "d"]
    c["e"] = b"x" * 8  # over 10 bytes in all: the oldest go until it fits
    assert list(c.keys()) == ["d", "e"] and c.nbytes == 10
    c["big"] = b"x" * 11  # bigger than the whole budget: not kept
    assert "big" not in c and c.nbytes == 10
    c.clear()
    assert len(c) == 0 and c.nbytes == 0


def test_llvmlite_pass_managers_are_freed():
    from llvmlite.binding import ffi
    from llvmlite.binding import newpassmanagers as npm

    import symk.codegen.llvmlite_fix  # noqa: F401

    assert npm.ModulePassManager._dispose is not ffi.ObjectRef._dispose
    assert npm.FunctionPassManager._dispose is not ffi.ObjectRef._dispose
