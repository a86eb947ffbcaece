"""Running a snippet in a fresh interpreter: for what only a new process shows (which modules
an import pulls in, a hook installed at start-up), without this session's imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: the repository root (snippets run there, so ``benchmarks/`` and ``tests`` resolve)
ROOT = Path(__file__).resolve().parents[1]


def fresh_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """The standard output of ``python -c code`` run from the repository root (with
    ``env`` added to this process's environment); the test fails, with the child's standard
    error, unless it exits with status 0."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL,
                       env=None if env is None else {**os.environ, **env})
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout
