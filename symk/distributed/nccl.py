"""Collectives of GPU arrays: NCCL through CuPy (``cupy.cuda.nccl``), one GPU per process.

The NCCL unique id is made by rank 0 and shared over MPI (``Bcast`` of its 128 bytes); the
reductions run on device pointers on CuPy's current stream (symk's), with no copy to the host.
Before each one the ranks compare size and dtype over MPI, as for host arrays.  Where NCCL is
missing (CuPy without the ``nvidia-nccl`` package, or no GPU), ``MpiCommunicator`` stages
device arrays through host memory and MPI instead (``device_communicator`` returns None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symk.graph.ops.collective import CollectiveError

#: bytes of an ncclUniqueId
UNIQUE_ID_BYTES = 128
#: numpy dtype name -> the cupy.cuda.nccl constant of its NCCL type
NCCL_TYPES = {"int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
              "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64",
              "float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


def load_nccl() -> tuple[Any, Any] | None:
    """(cupy, cupy.cuda.nccl) when NCCL and a GPU can be used, else None."""
    try:
        import cupy
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 (no CuPy, or CuPy without its NCCL bindings)
        return None
    if not getattr(nccl, "available", True):
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # noqa: BLE001 (no driver)
        return None
    return cupy, nccl


def exchange_unique_id(mpi: Any, nccl: Any) -> tuple[int, ...]:
    """Rank 0's new NCCL unique id on every rank (its bytes broadcast over MPI)."""
    buf = np.zeros(UNIQUE_ID_BYTES, np.int8)
    if mpi.rank == 0:
        uid = nccl.get_unique_id()
        if len(uid) != UNIQUE_ID_BYTES:
            raise CollectiveError(f"NCCL gave a unique id of {len(uid)} bytes, expected "
                                  f"{UNIQUE_ID_BYTES}")
        buf[:] = np.asarray(uid, np.int64).astype(np.int8)  # chars: -128..127 or 0..255
    mpi.comm.Bcast(buf, root=0)
    return tuple(int(v) for v in buf)


class NcclCommunicator:
    """Allreduce and broadcast of CuPy arrays across the MPI ranks' GPUs."""

    def __init__(self, mpi: Any, cupy: Any, nccl: Any) -> None:
        self.mpi, self.cupy, self.nccl = mpi, cupy, nccl
        self.comm = nccl.NcclCommunicator(mpi.size, exchange_unique_id(mpi, nccl), mpi.rank)

    def _type(self, dtype: Any, what: str) -> int:
        name = NCCL_TYPES.get(np.dtype(dtype).name)
        if name is None:
            raise CollectiveError(f"{what}: NCCL cannot reduce {np.dtype(dtype)}")
        return getattr(self.nccl, name)

    def _stream(self) -> int:
        return self.cupy.cuda.get_current_stream().ptr

    def allreduce(self, src: Any, dst: Any, what: str) -> None:
        self.mpi.agree(src, what)
        self.comm.allReduce(src.data.ptr, dst.data.ptr, src.size, self._type(src.dtype, what),
                            self.nccl.NCCL_SUM, self._stream())

    def broadcast_(self, flat: Any, root: int, what: str) -> None:
        self.mpi.agree(flat, what)
        self.comm.bcast(flat.data.ptr, flat.size, self._type(flat.dtype, what), root,
                        self._stream())
