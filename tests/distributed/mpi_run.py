"""Launching the worker scripts under MPI: ``mpiexec -n 2 python -m mpi4py worker.py`` with a
timeout and one thread per rank (``python -m mpi4py`` aborts the whole job when a rank raises)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mpiexec() -> str:
    """The ``mpiexec`` of this environment (the mpich wheel puts it beside Python)."""
    pytest.importorskip("mpi4py", reason="the distributed extra (mpi4py + mpich) is missing")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found beside Python or on PATH")
    return found


def run_workers(script: str, ranks: int = 2, timeout: float = 240.0, args: tuple = (),
                env: dict | None = None) -> subprocess.CompletedProcess:
    """``script`` (in ``workers/``, or a path) on ``ranks`` ranks of one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               SYMK_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                   p for p in (ROOT, os.environ.get("PYTHONPATH")) if p), **(env or {}))
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py",
           os.path.join(WORKERS, script), *args]
    return subprocess.run(cmd, env=env, cwd=WORKERS, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_ok(proc: subprocess.CompletedProcess, name: str, ranks: int = 2) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{out[-4000:]}"
    for r in range(ranks):
        assert f"{name}: OK rank {r} of {ranks}" in proc.stdout, out[-4000:]
