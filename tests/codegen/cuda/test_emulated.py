"""CUDA kernels executed by the CPU emulator (no GPU needed) against numpy: every case of
``emu_cases`` runs in one subprocess (one g++ compile for all kernels) under the forward and
reverse thread schedules, so a missing barrier or a race between threads shows up as a
difference; this module reports one test per case."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.codegen.cuda.emu_cases import all_cases
from tests.codegen.cuda.emu_runner import drive

NAMES = list(all_cases())

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs g++ (C++17)")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return drive("emu_cases", NAMES, tmp_path_factory.mktemp("emu"))


@pytest.mark.parametrize("name", NAMES)
def test_emulated_case(results: dict, name: str) -> None:
    rec = results["cases"][name]
    assert rec.get("ok"), f"{rec.get('suspect')}\n{rec.get('error')}"


def test_emulator_batches_kernels(results: dict) -> None:
    stats = results["stats"]
    assert len(stats["kernels"]) > 100, len(stats["kernels"])
    assert stats["launches"] > 2 * len(stats["kernels"]), stats["launches"]
