"""The job's processes: MPI through mpi4py (``init``, ``rank``, ``size``, ``local_rank``,
``local_size``) and the :class:`MpiCommunicator` the collective ops of
``symk.graph.ops.collective`` run on (GPU arrays through NCCL, ``symk.distributed.nccl``).

Tensors travel with mpi4py's buffer methods (``Allreduce`` with ``MPI.IN_PLACE``, ``Bcast``)
on a duplicate of ``COMM_WORLD`` (the user's own MPI traffic never mixes with symk's).  Before
each collective the ranks compare its size and dtype (one 32-byte ``Allreduce``), so a rank
feeding another shape raises a :class:`CollectiveError` on every rank instead of a hang or a
wrong sum.  Without mpi4py, or in a process not started by ``mpiexec`` (MPI's singleton: one
rank), ``size() == 1`` and the collectives are the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from symk.errors import SymkError
from symk.graph.ops.collective import CollectiveError, set_communicator

#: dtypes MPI sums natively (float16 is summed in float32)
_CODES = {np.dtype(t): i + 1 for i, t in enumerate(
    ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
     "uint64", "float16"))}


class NotInitializedError(SymkError):
    """A ``symk.distributed`` call before ``init()``."""


class MpiCommunicator:
    """Collectives on numpy arrays over an MPI communicator (see the module docstring)."""

    def __init__(self, mpi: Any, comm: Any) -> None:
        self.MPI, self.comm = mpi, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self._check = np.empty(4, np.int64)
        self._device: Any = None  # the NCCL communicator, made at the first GPU collective

    def device(self) -> Any:
        """The NCCL communicator of GPU arrays, or None (no NCCL or no GPU: host staging).
        Made by every rank at its first collective of a GPU array (a collective itself)."""
        if self._device is None:
            from symk.distributed.nccl import NcclCommunicator, load_nccl

            found = load_nccl()
            self._device = False if found is None else NcclCommunicator(self, *found)
        return self._device or None

    def agree(self, flat: Any, what: str) -> None:
        """Every rank holds as many values of the same dtype (else all ranks raise)."""
        code = _CODES.get(flat.dtype)
        if code is None:
            raise CollectiveError(f"{what}: dtype {flat.dtype} cannot be reduced across "
                                  f"processes (supported: {', '.join(map(str, _CODES))})")
        c = self._check
        c[0], c[1], c[2], c[3] = flat.size, -flat.size, code, -code
        self.comm.Allreduce(self.MPI.IN_PLACE, c, op=self.MPI.MAX)
        if c[0] != -c[1] or c[2] != -c[3]:
            names = {v: k for k, v in _CODES.items()}
            raise CollectiveError(
                f"{what}: the {self.size} ranks disagree (rank {self.rank} has "
                f"{flat.size} values of {flat.dtype}; the ranks hold between {-c[1]} and "
                f"{c[0]} values, of dtypes {names.get(-int(c[3]))} to {names.get(int(c[2]))})")

    def _off_host(self, src: Any, dst: Any, collective: Callable[[Any, Any, Any], None]
                  ) -> None:
        """``collective(communicator, src, dst)`` for GPU arrays: on the NCCL communicator,
        or on a host copy of ``src`` that is then written to ``dst``."""
        dev = self.device()
        if dev is not None:
            collective(dev, src, dst)
            return
        host = src.get()
        collective(self, host, host)
        dst.set(host)

    def allreduce(self, src: Any, dst: Any, what: str) -> None:
        """``dst`` = the sum over the ranks of ``src`` (``dst is src``: in place); GPU arrays
        go through NCCL, or through host memory without it."""
        if not isinstance(src, np.ndarray):
            self._off_host(src, dst, lambda c, s, d: c.allreduce(s, d, what))
            return
        self.agree(src, what)
        if src.dtype == np.float16:
            wide = src.astype(np.float32)
            self.comm.Allreduce(self.MPI.IN_PLACE, wide, op=self.MPI.SUM)
            dst[...] = wide
        else:
            # a copy and an in-place reduction: MPICH's Allreduce(src, dst) of 16 MB took
            # 4.7 ms where the copy and the in-place one take 1.5 + 2.5
            if dst is not src:
                np.copyto(dst, src)
            self.comm.Allreduce(self.MPI.IN_PLACE, dst, op=self.MPI.SUM)

    def broadcast_(self, flat: Any, root: int, what: str) -> None:
        if not 0 <= root < self.size:
            raise CollectiveError(f"{what}: root rank {root} is not one of the {self.size} "
                                  "ranks")
        if not isinstance(flat, np.ndarray):
            self._off_host(flat, flat, lambda c, s, d: c.broadcast_(s, root, what))
            return
        self.agree(flat, what)
        self.comm.Bcast(flat, root=root)

    def average_(self, values: np.ndarray) -> None:
        """Replace float64 ``values`` with their mean over the ranks (metrics)."""
        self.allreduce(values, values, "the average of metrics")
        values /= self.size


class _State:
    initialized = False
    comm: MpiCommunicator | None = None


def init(comm: Any = None) -> None:
    """Start (or join) the job: after it, ``rank()``/``size()`` are this process's and the
    collective ops reduce over all ranks.  ``comm``: an mpi4py communicator to use instead
    of ``COMM_WORLD`` (it is duplicated).  Without mpi4py, or alone, ``size() == 1``.
    Calling it again does nothing."""
    if _State.initialized:
        return
    try:
        from mpi4py import MPI
    except ImportError:
        pass  # one process
    else:
        base = MPI.COMM_WORLD if comm is None else comm
        _State.comm = MpiCommunicator(MPI, base.Dup())
    _State.initialized = True
    comm_ = _State.comm
    set_communicator(comm_ if comm_ is not None and comm_.size > 1 else None)


def shutdown() -> None:
    """Leave the job: collectives are the identity again (MPI itself stays up)."""
    set_communicator(None)
    if _State.comm is not None:
        _State.comm.comm.Free()
    _State.comm, _State.initialized = None, False


def is_initialized() -> bool:
    return _State.initialized


def _need() -> MpiCommunicator | None:
    if not _State.initialized:
        raise NotInitializedError("symk.distributed has not been initialized: call "
                                  "symk.distributed.init() first")
    return _State.comm


def _get(attr: str, alone: int) -> int:
    """The communicator's ``attr``, or ``alone`` in a job of one process."""
    c = _need()
    return alone if c is None else getattr(c, attr)


def size() -> int:
    return _get("size", 1)


def rank() -> int:
    return _get("rank", 0)


def local_size() -> int:
    return _get("local_size", 1)


def local_rank() -> int:
    return _get("local_rank", 0)


def mpi_communicator() -> MpiCommunicator | None:
    """The job's communicator (None in a job of one process)."""
    c = _need()
    return c if c is not None and c.size > 1 else None
