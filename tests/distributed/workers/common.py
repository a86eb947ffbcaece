"""Shared set-up of the MPI worker scripts (each run by ``mpiexec -n 2 python -m mpi4py``):
Keras 2.3.1 on symk in a private KERAS_HOME, and helpers comparing values across ranks."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
sys.path.insert(0, ROOT)


def keras():
    """Keras 2.3.1 on the symk backend (imported once per process)."""
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="symk-keras-"))
    os.environ["KERAS_BACKEND"] = "symk.backend"
    from symk import keras_compat

    keras_compat.install()
    import warnings

    warnings.simplefilter("ignore")
    import keras as k

    return k


def gather(arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Every rank's arrays, on every rank (MPI buffer methods, one Allgather per array)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        buf = np.empty((comm.Get_size(),) + a.shape, a.dtype)
        comm.Allgather(a, buf)
        out.append(list(buf))
    return [[out[i][r] for i in range(len(arrays))] for r in range(comm.Get_size())]


def done(name: str) -> None:
    from symk import distributed as hvd

    print(f"{name}: OK rank {hvd.rank()} of {hvd.size()}", flush=True)
