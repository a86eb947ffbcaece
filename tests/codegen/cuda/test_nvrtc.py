"""NVRTC compile checks of generated CUDA C (no GPU needed: CuPy's low-level NVRTC binding
plus ``ptxas`` when it is on PATH), for sm_80 and sm_90: the kernels of the emulator cases, and
every kernel the op-test suite generates.  Kernels are compiled many per NVRTC program; checks
are cached by source hash (``tests/cuda_emulator/cuda_compile_check.py``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from symk.codegen.cuda_math import PRELUDE
from symk.codegen.cuda_render import render_cuda
from symk.codegen.lowering import lower_kernel
from symk.passes.pipeline import optimize
from tests.codegen.cuda.corpus_plugin import op_suite_corpus
from tests.cuda_emulator.cuda_compile_check import (
    CudaCompileError,
    check_source,
    nvrtc_compile,
    nvrtc_missing,
    nvrtc_version,
)

MISSING = nvrtc_missing()
pytestmark = pytest.mark.skipif(MISSING is not None,
                                reason=f"NVRTC compile checks need cupy and NVRTC: {MISSING}")
#: kernels per NVRTC program
CHUNK = 40


def compile_all(sources: dict[str, str]) -> list[str]:
    """Compile-check every kernel (chunks on two threads); the failures, each localized to
    its kernel by recompiling a failing chunk one kernel at a time."""
    names = sorted(sources)
    chunks = [names[i:i + CHUNK] for i in range(0, len(names), CHUNK)]

    def one(chunk: list[str]) -> list[str]:
        try:
            check_source("\n\n".join([PRELUDE, *[sources[n] for n in chunk]]))
            return []
        except CudaCompileError:
            bad = []
            for n in chunk:
                try:
                    check_source(PRELUDE + "\n\n" + sources[n])
                except CudaCompileError as e:
                    bad.append(f"{n}: {str(e)[:1500]}")
            return bad
    with ThreadPoolExecutor(2) as pool:
        return [f for res in pool.map(one, chunks) for f in res]


def _case_sources() -> dict[str, str]:
    from tests.codegen.cuda.emu_cases import all_cases

    out = {}
    for build in all_cases().values():
        b = build()
        opt = optimize([o.node for o in b.outputs])
        for k in opt.schedule.kernels:
            ck = render_cuda(lower_kernel(k).program)
            out[ck.name] = ck.source
    return out


def test_nvrtc_matches_ptxas() -> None:
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        pytest.skip("ptxas is not on PATH")
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    assert m, out
    assert nvrtc_version() == (int(m.group(1)), int(m.group(2))), \
        f"pin NVRTC to the ptxas version: NVRTC {nvrtc_version()}, ptxas {m.groups()}"


def test_compile_error_is_reported() -> None:
    with pytest.raises(CudaCompileError, match="nope"):
        nvrtc_compile('extern "C" __global__ void k(float* x) { x[0] = nope; }', "sm_80")


def test_case_kernels_compile() -> None:
    sources = _case_sources()
    assert len(sources) > 100
    failures = compile_all(sources)
    assert not failures, "\n\n".join(failures[:5])


def test_op_suite_kernels_compile() -> None:
    corpus = op_suite_corpus()
    assert len(corpus) >= 200, f"only {len(corpus)} kernels collected from the op suite"
    # float16 kernels are documented to run on the host reference executor
    errors = [f"{n}: {c['error']}\n{c['kir']}" for n, c in corpus.items()
              if "error" in c and "dtype float16" not in c["error"]]
    assert not errors, "the CUDA renderer failed on:\n" + "\n\n".join(errors[:5])
    failures = compile_all({n: c["source"] for n, c in corpus.items() if "source" in c})
    assert not failures, f"{len(failures)} of {len(corpus)} kernels failed:\n" + \
        "\n\n".join(failures[:5])
