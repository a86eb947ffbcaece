"""Fixtures of the runtime tests that touch the caches: ``fresh`` gives a test its own cache
directory (not created yet) and empty in-memory caches, ``optimize_calls`` counts the runs of
the pass pipeline (a plan-cache hit runs none)."""

from __future__ import annotations

from pathlib import Path

import pytest

import symk.passes.pipeline as pipeline
import symk.runtime.native as native
from symk.runtime import cache, plan_cache


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> Path:
    """Own cache directory (not created yet), empty in-memory caches and directory checks."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SYMK_CACHE_DIR", str(d))
    monkeypatch.delenv("SYMK_CACHE", raising=False)
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(cache, "_memory", {})
    monkeypatch.setattr(cache, "_checked", {})
    monkeypatch.setattr(plan_cache, "_memory", {})
    return d


@pytest.fixture
def optimize_calls(monkeypatch) -> list[str]:
    """The labels of the functions the pass pipeline ran for, in order."""
    calls: list[str] = []
    orig = pipeline.optimize

    def counting(roots, name="function", **kw):
        calls.append(name)
        return orig(roots, name=name, **kw)
    monkeypatch.setattr(pipeline, "optimize", counting)
    return calls
