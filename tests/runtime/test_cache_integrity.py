"""Integrity and safety of the disk caches: a plan file carries a checksum of its key and
content (an edited, truncated or renamed plan is discarded with a warning and the function
compiled again, with right numbers), and a cache directory that others could write (group- or
world-writable, or owned by another user) is refused with one warning: the process keeps
working with its memory caches and writes nothing there."""

from __future__ import annotations

import json
import os
import stat
import warnings
from typing import Any

import numpy as np
import pytest

import symk.codegen.llvm_compile as llvm_compile
import symk.runtime.native as native
from symk import backend as K
from symk.runtime import cache, plan_cache


def _build(scale: float = 1.5):
    """A function with several native kernels (a product, a softmax, a reduction)."""
    x = K.placeholder((None, 4))
    w = K.variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    p = K.softmax(K.dot(x, w) * scale)
    return K.function([x], [p, K.sum(K.exp(x), axis=1)], device="cpu"), K.get_value(w)


def _check(f, wv: np.ndarray, scale: float = 1.5) -> None:
    xv = np.linspace(-2, 2, 20, dtype=np.float32).reshape(5, 4)
    z = xv @ wv * scale
    e = np.exp(z - z.max(1, keepdims=True))
    p, s = f([xv])
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, np.exp(xv).sum(1), rtol=1e-5)


def _forget_memory() -> None:
    """Like a fresh process: nothing in memory, the disk untouched."""
    native._loaded.clear()
    cache._memory.clear()
    plan_cache.clear_memory()


def _ints(x: Any) -> list[tuple[Any, Any]]:
    """(container, index) of every integer inside a JSON value."""
    out: list[tuple[Any, Any]] = []
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else []
    for k, v in items:
        if isinstance(v, int) and not isinstance(v, bool):
            out.append((x, k))
        else:
            out.extend(_ints(v))
    return out


# ---------------------------------------------------------------- plan checksums


def test_plan_file_is_json_with_a_checksum_and_loads_in_a_fresh_process(fresh, optimize_calls):
    f, wv = _build()
    _check(f, wv)
    (entry,) = fresh.glob("*.plan.json")
    t = json.loads(entry.read_text())
    assert list(t)[-1] == "sha256" and len(t["sha256"]) == 64
    _forget_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g, wv = _build()
    assert len(optimize_calls) == 1
    _check(g, wv)


def test_edited_number_in_native_calls_is_discarded_and_recompiled(fresh, optimize_calls):
    f, wv = _build()
    (entry,) = fresh.glob("*.plan.json")
    t = json.loads(entry.read_text())
    assert t["native"] is not None and t["native"]["calls"]
    spots = _ints(t["native"]["calls"])
    assert spots
    for container, k in spots:  # still valid JSON, every number in the calls off by one
        container[k] += 1
    entry.write_text(json.dumps(t))
    _forget_memory()
    before = llvm_compile.COMPILE_COUNT
    with pytest.warns(RuntimeWarning, match="discarding plan cache entry.*checksum"):
        g, wv = _build()
    assert len(optimize_calls) == 2
    _check(g, wv)
    # the object code was still good: the passes ran again but LLVM did not
    assert llvm_compile.COMPILE_COUNT == before
    # the entry was written again, whole: the next fresh build uses it silently
    _forget_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h, wv = _build()
    assert len(optimize_calls) == 2
    _check(h, wv)


@pytest.mark.parametrize("damage", ["truncate", "drop-checksum", "edit-checksum",
                                    "one-number"])
def test_damaged_plan_is_discarded(fresh, optimize_calls, damage):
    _build()
    (entry,) = fresh.glob("*.plan.json")
    text = entry.read_text()
    if damage == "truncate":
        entry.write_text(text[: len(text) - 40])
    else:
        t = json.loads(text)
        if damage == "drop-checksum":
            del t["sha256"]
        elif damage == "edit-checksum":
            t["sha256"] = "0" * 64
        else:
            container, k = _ints(t["steps"])[0]
            container[k] += 1
        entry.write_text(json.dumps(t, separators=(",", ":")))
    _forget_memory()
    with pytest.warns(RuntimeWarning, match="discarding plan cache entry"):
        g, wv = _build()
    assert len(optimize_calls) == 2
    _check(g, wv)


def test_plan_copied_under_another_key_is_discarded(fresh, optimize_calls):
    f1, _ = _build(1.5)
    (first,) = fresh.glob("*.plan.json")
    f2, _ = _build(2.5)  # another constant: another key
    (second,) = set(fresh.glob("*.plan.json")) - {first}
    second.write_bytes(first.read_bytes())  # a valid plan, but of the other function
    _forget_memory()
    with pytest.warns(RuntimeWarning, match="discarding plan cache entry"):
        g, wv = _build(2.5)
    assert len(optimize_calls) == 3
    _check(g, wv, 2.5)


def test_object_metadata_of_another_key_is_discarded(fresh):
    key, other = cache.key_of("a", "t"), cache.key_of("b", "t")
    cache.store(key, b"object a", {})
    meta = json.loads((fresh / (key + ".json")).read_text())
    assert meta["key"] == key
    (fresh / (other + ".o")).write_bytes((fresh / (key + ".o")).read_bytes())
    (fresh / (other + ".json")).write_text(json.dumps(meta))
    cache._memory.clear()
    with pytest.warns(RuntimeWarning, match="corrupted cache entry"):
        assert cache.load(other) is None
    assert cache.load(key) == b"object a"


# ---------------------------------------------------------------- directory safety


def test_created_cache_directory_is_private(fresh):
    f, wv = _build()
    _check(f, wv)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert list(fresh.glob("*.o")) and list(fresh.glob("*.plan.json"))


def test_private_existing_directory_is_used(fresh, recwarn):
    fresh.mkdir(mode=0o700)
    os.chmod(fresh, 0o700)
    f, wv = _build()
    _check(f, wv)
    assert list(fresh.glob("*.o")) and list(fresh.glob("*.plan.json"))
    assert not [w for w in recwarn if "cache directory" in str(w.message)]
    assert cache.info()["enabled"] and cache.info()["refused"] is None


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777, 0o722])
def test_directory_others_can_write_is_refused(fresh, optimize_calls, mode):
    fresh.mkdir()
    os.chmod(fresh, mode)
    before = llvm_compile.COMPILE_COUNT
    with pytest.warns(RuntimeWarning, match="not using the cache directory") as record:
        f, wv = _build()
        g, _ = _build()  # a rebuilt model: served by the memory caches, no second warning
    (w,) = [w for w in record if "cache directory" in str(w.message)]
    assert "writable by" in str(w.message) and str(fresh) in str(w.message)
    _check(f, wv)
    _check(g, wv)
    assert not any(fresh.iterdir())  # nothing written there
    assert llvm_compile.COMPILE_COUNT == before + 1 and len(optimize_calls) == 1
    assert cache.cache_dir() is None
    i = cache.info()
    assert not i["enabled"] and "writable" in i["refused"]


def test_directory_owned_by_another_user_is_refused(fresh, monkeypatch):
    fresh.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(fresh, 65534, -1)
    else:
        uid = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    with pytest.warns(RuntimeWarning, match="owned by uid"):
        f, wv = _build()
    _check(f, wv)
    assert not any(fresh.iterdir())


def test_directory_is_checked_once_per_process(fresh, monkeypatch):
    fresh.mkdir(mode=0o700)
    calls: list[str] = []
    orig = cache._unsafe

    def counting(d: str) -> str | None:
        calls.append(d)
        return orig(d)
    monkeypatch.setattr(cache, "_unsafe", counting)
    for scale in (1.0, 2.0, 3.0):
        _forget_memory()
        _build(scale)
    assert calls == [str(fresh)]  # stat'ed once; every later lookup and store remembers


def test_refused_directory_is_reported_by_the_cli(fresh, capsys):
    from symk.__main__ import main

    fresh.mkdir()
    os.chmod(fresh, 0o777)
    with pytest.warns(RuntimeWarning, match="not using the cache directory"):
        assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "refused" in out and "writable by" in out
