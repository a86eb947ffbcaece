"""The compiled-kernel cache: a second process (or a rebuilt model) does no LLVM work,
corrupted or missing disk entries are discarded with a warning and rebuilt, concurrent
processes both succeed, ``SYMK_CACHE=0`` writes nothing, and ``python -m symk cache
info|clear``.  Every test points ``SYMK_CACHE_DIR`` at its own temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symk.codegen.llvm_compile as llvm_compile
import symk.runtime.native as native
from symk import backend as K
from symk.runtime import cache, plan_cache

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
import numpy as np
from symk import backend as K
import symk.codegen.llvm_compile as lc

x = K.placeholder((None, 8), name="x")
w = K.variable(np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3), name="w")
h = K.tanh(K.dot(x, w) * 1.5 + 0.25)
p = K.softmax(h)
loss = -K.mean(K.sum(p * K.log(p + 1e-7), axis=1)) + K.max(K.abs(x)) * float(sys.argv[1])
f = K.function([x], [p, loss, K.argmax(h, axis=1)], device="cpu")
xv = np.linspace(-2, 2, 40, dtype=np.float32).reshape(5, 8)
p, l, a = f([xv])
print("COMPILES", lc.COMPILE_COUNT)
print("RESULT", repr(p.round(6).tolist()), repr(round(float(l), 6)), a.tolist())
"""


def _env(cache_dir: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYMK_") or k in ("SYMK_FLOATX",)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if cache_dir is not None:
        env["SYMK_CACHE_DIR"] = str(cache_dir)
    env.update(extra)
    return env


def _start(script: Path, cache_dir: Path, arg: str = "0.5") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), arg], env=_env(cache_dir), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return int(lines["COMPILES"]), lines["RESULT"]


@pytest.fixture
def script(tmp_path) -> Path:
    p = tmp_path / "model.py"
    p.write_text(SCRIPT)
    return p


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("SYMK_CACHE_DIR", str(d))
    monkeypatch.delenv("SYMK_CACHE", raising=False)
    return d


@pytest.fixture
def cold(monkeypatch):
    """Forget the in-memory caches (loaded modules and object code) for this test."""
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(cache, "_memory", {})
    monkeypatch.setattr(plan_cache, "_memory", {})


def _entries(d: Path) -> list[Path]:
    return sorted(d.glob("*.o")) if d.is_dir() else []


# ---------------------------------------------------------------- across processes


def test_second_process_does_no_llvm_work(script, cache_dir):
    first, r1 = _finish(_start(script, cache_dir))
    assert first >= 1
    assert len(_entries(cache_dir)) >= 1
    second, r2 = _finish(_start(script, cache_dir))
    assert second == 0
    assert r2 == r1
    # a different model (another constant) compiles again
    third, r3 = _finish(_start(script, cache_dir, "0.75"))
    assert third >= 1 and r3 != r1


def test_two_processes_compiling_at_once_both_succeed(script, cache_dir):
    procs = [_start(script, cache_dir) for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert results[0][1] == results[1][1]
    assert not list(cache_dir.glob(".tmp-*"))
    for o in _entries(cache_dir):
        meta = json.loads(o.with_suffix(".json").read_text())
        assert meta["bytes"] == o.stat().st_size
    assert _finish(_start(script, cache_dir))[0] == 0


def test_cache_cli_info_and_clear(script, cache_dir):
    _finish(_start(script, cache_dir))
    n = len(_entries(cache_dir))
    assert n >= 1

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "symk", *args], env=_env(cache_dir),
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    info = cli("cache", "info")
    assert info.returncode == 0, info.stderr
    plans = len(list(cache_dir.glob("*.plan.json")))
    assert plans >= 1
    assert str(cache_dir) in info.stdout and f"entries:   {n} " in info.stdout
    assert f"plans:     {plans}" in info.stdout
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0 and f"removed {2 * n + plans} file(s)" in cleared.stdout
    assert not any(cache_dir.iterdir())
    assert "entries:   0 " in cli("cache", "info").stdout
    bad = cli("cache", "purge")
    assert bad.returncode == 2 and "usage" in bad.stderr


# ---------------------------------------------------------------- in process


def _mlp(tag: float, names: str):
    x = K.placeholder((None, 6), name=f"x_{names}")
    w = K.variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 20, name=f"w_{names}")
    b = K.variable(np.full(3, tag, np.float32), name=f"b_{names}")
    h = K.relu(K.dot(x, w) + b)
    out = [K.softmax(h * tag), K.sum(K.exp(h), axis=1) - tag]
    return x, w, b, out


def _mlp_numpy(xv, w, b, tag):
    h = np.maximum(xv @ w + b, 0)
    e = np.exp(h * tag - (h * tag).max(1, keepdims=True))
    return [e / e.sum(1, keepdims=True), np.exp(h).sum(1) - tag]


def test_rebuilt_model_reuses_compiled_code(cache_dir, cold):
    tag = 1.3125
    xv = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    x, w, b, out = _mlp(tag, "a")
    before = llvm_compile.COMPILE_COUNT
    f1 = K.function([x], out, device="cpu")
    assert llvm_compile.COMPILE_COUNT == before + 1
    x2, w2, b2, out2 = _mlp(tag, "b")  # new placeholder, new variables, new names
    f2 = K.function([x2], out2, device="cpu")
    assert llvm_compile.COMPILE_COUNT == before + 1
    assert [k["name"] for k in f1.kernels] == [k["name"] for k in f2.kernels]
    K.set_value(b2, np.full(3, -0.5, np.float32))  # the same code reads each model's own values
    for f, bb in ((f1, K.get_value(b)), (f2, K.get_value(b2))):
        for got, want in zip(f([xv]), _mlp_numpy(xv, K.get_value(w), bb, tag)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _forget_in_process_caches() -> None:
    """Start like a fresh process: no loaded modules, no objects in memory (disk untouched)."""
    native._loaded.clear()
    cache._memory.clear()
    plan_cache.clear_memory()


def _corrupt_and_rebuild(cache_dir: Path, damage, tag: float) -> None:
    xv = np.linspace(-1, 1, 18, dtype=np.float32).reshape(3, 6)
    x, w, b, out = _mlp(tag, "c")
    K.function([x], out, device="cpu")
    (o,) = _entries(cache_dir)
    damage(o, o.with_suffix(".json"))
    # a fresh process state: nothing in memory, the damaged entry on disk
    _forget_in_process_caches()
    before = llvm_compile.COMPILE_COUNT
    x, w, b, out = _mlp(tag, "d")
    with pytest.warns(RuntimeWarning, match="corrupted cache entry"):
        f = K.function([x], out, device="cpu")
    assert llvm_compile.COMPILE_COUNT == before + 1
    for got, want in zip(f([xv]), _mlp_numpy(xv, K.get_value(w), K.get_value(b), tag)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the entry was rewritten whole: the next cold build loads it without compiling
    (o2,) = _entries(cache_dir)
    assert o2 == o and json.loads(o.with_suffix(".json").read_text())["bytes"] == o.stat().st_size
    _forget_in_process_caches()
    x, w, b, out = _mlp(tag, "e")
    K.function([x], out, device="cpu")
    assert llvm_compile.COMPILE_COUNT == before + 1


def _truncate(o: Path, m: Path) -> None:
    o.write_bytes(o.read_bytes()[: o.stat().st_size // 3])


def _garbage_json(o: Path, m: Path) -> None:
    m.write_bytes(b"\x00\xffnot json {")


def _json_list(o: Path, m: Path) -> None:
    m.write_text("[1, 2, 3]")


def _missing_object(o: Path, m: Path) -> None:
    o.unlink()


def _missing_meta(o: Path, m: Path) -> None:
    m.unlink()


def _flipped_byte(o: Path, m: Path) -> None:
    data = bytearray(o.read_bytes())
    data[len(data) // 2] ^= 0xFF
    o.write_bytes(bytes(data))


DAMAGES = [_truncate, _garbage_json, _json_list, _missing_object, _flipped_byte]


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupted_entry_is_discarded_and_rebuilt(cache_dir, cold, damage):
    _corrupt_and_rebuild(cache_dir, damage, 2.0 + 0.125 * DAMAGES.index(damage))


def test_object_without_metadata_is_a_miss_not_corruption(cache_dir, cold):
    """The metadata is written after the object, so an object alone may be another process's
    entry half written: no warning, compiled again, and the entry completed."""
    import warnings

    x, w, b, out = _mlp(5.75, "h")
    K.function([x], out, device="cpu")
    (o,) = _entries(cache_dir)
    _missing_meta(o, o.with_suffix(".json"))
    _forget_in_process_caches()
    before = llvm_compile.COMPILE_COUNT
    x, w, b, out = _mlp(5.75, "i")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K.function([x], out, device="cpu")
    assert llvm_compile.COMPILE_COUNT == before + 1
    assert o.with_suffix(".json").exists() and _entries(cache_dir) == [o]


def test_cache_disabled_writes_nothing(cache_dir, cold, monkeypatch):
    monkeypatch.setenv("SYMK_CACHE", "0")
    x, w, b, out = _mlp(3.25, "f")
    f = K.function([x], out, device="cpu")
    xv = np.ones((2, 6), np.float32)
    for got, want in zip(f([xv]), _mlp_numpy(xv, K.get_value(w), K.get_value(b), 3.25)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not cache_dir.exists() or not any(cache_dir.iterdir())
    assert cache.info()["enabled"] is False


def test_unwritable_cache_dir_warns_and_still_runs(tmp_path, cold, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("SYMK_CACHE_DIR", str(blocker))
    x, w, b, out = _mlp(4.5, "g")
    with pytest.warns(RuntimeWarning, match="cannot write the kernel cache"):
        f = K.function([x], out, device="cpu")
    xv = np.ones((2, 6), np.float32)
    for got, want in zip(f([xv]), _mlp_numpy(xv, K.get_value(w), K.get_value(b), 4.5)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_keys_depend_on_source_target_and_version(monkeypatch):
    k = cache.key_of("define void @f() { ret void }", "x86_64|cpu|+avx")
    assert len(k) == 64 and int(k, 16) >= 0
    assert cache.key_of("define void @f() { ret void }", "x86_64|cpu|+avx") == k
    assert cache.key_of("define void @g() { ret void }", "x86_64|cpu|+avx") != k
    assert cache.key_of("define void @f() { ret void }", "x86_64|cpu|-avx") != k
    from symk import version

    monkeypatch.setattr(version, "__version__", "999.0")
    assert cache.key_of("define void @f() { ret void }", "x86_64|cpu|+avx") != k


def test_store_and_load_roundtrip_without_pickle(cache_dir, cold):
    key = cache.key_of("roundtrip", "target")
    obj = bytes(range(256)) * 4
    cache.store(key, obj, {"kernels": ["E_s_0123456789"], "target": "target"})
    files = sorted(p.name for p in cache_dir.iterdir())
    assert files == [key + ".json", key + ".o"]
    meta = json.loads((cache_dir / (key + ".json")).read_text())
    assert meta["kernels"] == ["E_s_0123456789"] and meta["bytes"] == len(obj)
    cache._memory.clear()
    assert cache.load(key) == obj
    assert cache.load(cache.key_of("absent", "target")) is None
    assert cache.clear() == 2 and not any(cache_dir.iterdir())
