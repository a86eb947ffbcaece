"""symk.distributed across 2 MPI ranks (``mpiexec -n 2``, one thread per rank): collectives,
the equivalence of 2 half batches with one whole batch, the Keras callbacks, and a failing
rank ending the job (see ``workers/``)."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.distributed.mpi_run import ROOT, assert_ok, run_workers


@pytest.mark.parametrize("worker", ["collectives", "equivalence", "callbacks", "nccl_paths"])
def test_workers(worker):
    assert_ok(run_workers(f"{worker}.py"), worker)


def test_a_failing_rank_ends_the_job():
    t0 = time.monotonic()
    proc = run_workers("failure.py", timeout=120)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr
    assert "rank 0 was not stopped" not in proc.stdout
    assert time.monotonic() - t0 < 120


def test_the_readme_example_on_two_ranks(tmp_path):
    """``examples/keras_distributed.py`` as the README runs it: rank 0 reports the averaged
    metrics of both ranks."""
    proc = run_workers(os.path.join(ROOT, "examples", "keras_distributed.py"),
                       args=("--epochs", "2"),
                       env={"KERAS_BACKEND": "symk.backend", "KERAS_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = re.search(r"^2 rank\(s\): loss (\S+), accuracy (\S+)", proc.stdout, re.MULTILINE)
    assert m is not None, proc.stdout
    assert 0.0 < float(m.group(1)) < 2.3 and 0.5 < float(m.group(2)) <= 1.0
