"""CUDA kernels executed by the CPU emulator (no GPU needed) against numpy: every case of
``emu_cases`` runs in one subprocess (one g++ compile for all kernels) under the forward and
reverse thread schedules, so a missing barrier or a race between threads shows up as a
difference; this module reports one test per case."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.codegen.cuda.emu_cases import all_cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
NAMES = list(all_cases())

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs g++ (C++17)")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("emu") / "results.jsonl"
    r = subprocess.run([sys.executable, "-m", "tests.codegen.cuda.emu_runner", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    recs: dict = {"_stderr": r.stderr[-3000:], "_rc": r.returncode}
    started = None
    if out.exists():
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            if "stats" in rec:
                recs.setdefault("_stats", {}).update(rec["stats"])
            elif rec.get("started"):
                started = rec["case"]
            else:
                recs[rec["case"]] = rec
    recs["_crashed_in"] = started if r.returncode != 0 else None
    return recs


@pytest.mark.parametrize("name", NAMES)
def test_emulated_case(results: dict, name: str) -> None:
    rec = results.get(name)
    if rec is None:
        crashed = results["_crashed_in"]
        pytest.fail(f"no result for {name}: the emulator runner exited with {results['_rc']}"
                    f"{f' while running {crashed}' if crashed else ''}\n{results['_stderr']}")
    assert rec.get("ok"), rec.get("error")


def test_emulator_batches_kernels(results: dict) -> None:
    stats = results.get("_stats", {})
    assert stats.get("kernels", 0) > 100, stats
    assert stats.get("launches", 0) > 2 * stats["kernels"], stats
