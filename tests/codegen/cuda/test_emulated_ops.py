"""The op suite on the CUDA path without a GPU: every ``check_op`` case of ``tests/backend``
(each K function with static and ``None``-dim placeholders, over the dtypes, broadcasts, axes and
batch sizes the op tests use; ``tests.harness.OP_CASES``) is replayed with its fused kernels
rendered as CUDA C and run by the CPU emulator (externs and views by the reference executor, as
the cuda runtime does), under the forward and the reverse thread schedule, and compared with the
same numpy expected values and tolerances as ``check_op``.  The cases run in two emulator
subprocesses side by side (``emu_runner.drive``); a case that crashes its runner is reported and
the runner restarts on the rest.  Ordered after the op tests (``conftest.py``); when the op suite
did not run in this session it runs once in a subprocess (``corpus_plugin``).

Not emulated, by design:

- kernels the CUDA renderer rejects, i.e. float16 kernels (two in the op suite today): the cuda
  device runs them on the host reference executor (README, "CUDA"), and so does the replay; the
  rest of such a case (its other kernels) is still emulated.
- graphs that ``symk.graph.serialize`` cannot encode would be reported as excluded; there are
  none today, and ``test_op_suite_emulator_coverage`` keeps it that way and checks that every
  kernel the op suite lowered (``tests.harness.KERNEL_CORPUS``) was emulated or is one of those
  float16 kernels.
- tests that do not go through ``check_op`` (``test_rnn``, ``test_ctc``, ``test_sparse``,
  ``test_ops_random`` and the gradient checks of ``tests/gradcheck.py``): they have no recorded
  case; their kernels are still compile-checked by ``test_nvrtc``.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.codegen.cuda.corpus_plugin import op_suite_cases, op_suite_kernel_names
from tests.codegen.cuda.emu_cases import all_cases
from tests.codegen.cuda.emu_runner import CRASH_ENV, drive
from tests.codegen.cuda.op_cases import case_count

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulator needs g++ (C++17)")
#: failures shown in full in a failure message (all of them are counted)
SHOWN = 8


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("emu_ops")
    cases = op_suite_cases(tmp)
    names = [str(i) for i in range(case_count(cases))]
    return drive(f"op_suite:{cases}", names, tmp, shards=2)


def _describe(rec: dict) -> str:
    return (f"case {rec['case']}: {rec.get('where', '?')}\n  kernels {rec.get('kernels', '?')}"
            f"\n  {rec.get('suspect') or 'no single kernel differs'}\n"
            f"{rec.get('error', '')[-1500:]}")


def test_op_suite_emulated(results: dict) -> None:
    bad = [r for r in results["cases"].values() if "error" in r]
    assert not bad, f"{len(bad)} of {len(results['cases'])} op-suite cases differ on the CUDA " \
        f"emulator:\n\n" + "\n\n".join(_describe(r) for r in bad[:SHOWN])


def test_op_suite_emulator_coverage(results: dict) -> None:
    stats, recs = results["stats"], results["cases"]
    excluded = [f"{n}: {r['excluded']}" for n, r in recs.items() if "excluded" in r]
    assert not excluded, "cases not replayed:\n" + "\n".join(excluded[:SHOWN])
    assert len(recs) >= 2000 and stats["cases"] >= len(recs), stats["cases"]
    emulated, host = set(stats["kernels"]), set(stats["host_kernels"])
    assert len(emulated) >= 1000, len(emulated)
    assert len(host) <= 4, f"more kernels than the float16 ones on the host: {sorted(host)}"
    missed = op_suite_kernel_names() - emulated - host
    assert not missed, f"{len(missed)} kernels of the op suite were not emulated: {sorted(missed)}"
    assert results["starts"] == 2, f"a case crashed a runner: {results['starts']} starts"


def test_crashing_case_is_reported_and_the_rest_still_run(tmp_path, monkeypatch) -> None:
    names = list(all_cases())[:3]
    monkeypatch.setenv(CRASH_ENV, names[1])
    res = drive("emu_cases", names, tmp_path)
    assert res["starts"] == 2, res
    assert "crashed the emulator runner" in res["cases"][names[1]]["error"], res
    assert res["cases"][names[0]].get("ok") and res["cases"][names[2]].get("ok"), res
