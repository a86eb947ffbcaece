"""A pytest plugin (``-p tests.codegen.cuda.corpus_plugin``) that, at the end of a session,
writes the CUDA rendering of every kernel the op tests compiled (``tests.harness.
KERNEL_CORPUS``) to ``$SYMK_CUDA_CORPUS_OUT`` as JSON: name -> {"source"} or {"error"}.
``test_nvrtc`` runs the op suite with it when the suite did not run in the same session."""

from __future__ import annotations

import json
import os


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
    path = os.environ.get("SYMK_CUDA_CORPUS_OUT")
    if not path:
        return
    from tests.harness import KERNEL_CORPUS

    with open(path, "w") as f:
        json.dump(render_corpus(KERNEL_CORPUS), f)
