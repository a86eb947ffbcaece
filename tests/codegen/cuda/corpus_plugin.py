"""What the CUDA tests take from the op suite (``tests/backend``): the CUDA rendering of every
kernel it compiled (``tests.harness.KERNEL_CORPUS``, for the NVRTC checks) and its recorded
``check_op`` cases (``tests.harness.OP_CASES``, for the emulator).

When the op suite ran earlier in the same pytest session both come from memory; otherwise
``op_suite_outputs`` runs it once in a subprocess with this module as a plugin
(``-p tests.codegen.cuda.corpus_plugin``), which at the end of that session writes the corpus to
``$SYMK_CUDA_CORPUS_OUT`` as JSON (name -> {"source"} or {"error"}) and the cases to the
directory ``$SYMK_OP_CASES_OUT`` (``op_cases.save_cases``).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: fewer kernels / cases than this in memory means the op suite did not run in this session
MIN_KERNELS = 200
MIN_CASES = 500


def render_corpus(programs: dict) -> dict[str, dict[str, str]]:
    from symk.codegen.cuda_render import render_cuda

    out: dict[str, dict[str, str]] = {}
    for name, prog in programs.items():
        if prog is None:
            continue
        try:
            out[name] = {"source": render_cuda(prog).source}
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}", "kir": prog.text()}
    return out


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ARG001
    from tests.harness import KERNEL_CORPUS, OP_CASES

    path = os.environ.get("SYMK_CUDA_CORPUS_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(render_corpus(KERNEL_CORPUS), f)
    cases = os.environ.get("SYMK_OP_CASES_OUT")
    if cases:
        from tests.codegen.cuda.op_cases import save_cases

        save_cases(OP_CASES, Path(cases))


@functools.cache
def _run_op_suite() -> Path:
    """Runs ``tests/backend`` in a subprocess (once per session, cpu device only); the
    directory holding ``corpus.json`` and ``cases/``."""
    d = Path(tempfile.mkdtemp(prefix="symk-op-suite-"))
    env = dict(os.environ, SYMK_TEST_DEVICES="cpu", SYMK_CUDA_CORPUS_OUT=str(d / "corpus.json"),
               SYMK_OP_CASES_OUT=str(d / "cases"))
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/backend", "-q", "-p",
                        "no:cacheprovider", "-p", "tests.codegen.cuda.corpus_plugin"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert (d / "corpus.json").exists(), \
        f"the op suite did not run:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return d


def op_suite_corpus() -> dict[str, dict[str, str]]:
    """The rendered kernel corpus of the op suite (see the module docstring)."""
    from tests.harness import KERNEL_CORPUS

    if len(KERNEL_CORPUS) >= MIN_KERNELS:
        return render_corpus(KERNEL_CORPUS)
    return json.loads((_run_op_suite() / "corpus.json").read_text())


def op_suite_kernel_names() -> set[str]:
    """The names of the kernels the op suite lowered (those that no device lowers excluded)."""
    from tests.harness import KERNEL_CORPUS

    if len(KERNEL_CORPUS) >= MIN_KERNELS:
        return {n for n, prog in KERNEL_CORPUS.items() if prog is not None}
    return set(json.loads((_run_op_suite() / "corpus.json").read_text()))


def op_suite_cases(tmp: Path) -> Path:
    """A directory holding the op suite's saved cases (written under ``tmp`` from memory when
    the op suite ran in this session)."""
    from tests.harness import OP_CASES

    if len(OP_CASES) >= MIN_CASES:
        from tests.codegen.cuda.op_cases import save_cases

        save_cases(OP_CASES, tmp / "cases")
        return tmp / "cases"
    return _run_op_suite() / "cases"
