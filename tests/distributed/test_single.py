"""symk.distributed in one process: calls before ``init()`` fail clearly, and without mpi4py
``size() == 1`` and training is unchanged (``workers/alone.py`` in a plain subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from symk import distributed as hvd
from tests.distributed.mpi_run import ROOT, WORKERS


def test_calls_before_init_raise():
    if hvd.is_initialized():
        hvd.shutdown()
    with pytest.raises(hvd.NotInitializedError, match="init"):
        hvd.size()
    with pytest.raises(hvd.NotInitializedError):
        hvd.rank()


def test_without_mpi4py_training_is_unchanged():
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(WORKERS, "alone.py")], cwd=WORKERS,
                          env=env, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alone: OK rank 0 of 1" in proc.stdout
