"""Worker: the GPU paths of the communicator without a GPU.  The NCCL unique id made by rank
0 reaches every rank over MPI; NcclCommunicator calls NCCL's allReduce/bcast with the arrays'
device pointers, sizes, NCCL types and the current stream (a stand-in NCCL and CuPy record
the calls); without NCCL, device arrays are staged through the host and MPI."""

from __future__ import annotations

import numpy as np
from common import done, gather

from symk import distributed as hvd
from symk.distributed import nccl as dn
from symk.graph.ops.collective import CollectiveError

hvd.init()
mpi = hvd.comm.mpi_communicator()
r = mpi.rank


class FakeNccl:
    NCCL_SUM = 0
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT32 = 7, 8, 2
    made: list[tuple] = []
    calls: list[tuple] = []

    @staticmethod
    def get_unique_id():
        assert r == 0, "only rank 0 makes the id"
        return tuple(range(-64, 64))  # 128 signed chars

    class NcclCommunicator:
        def __init__(self, ndev, uid, rank):
            FakeNccl.made.append((ndev, uid, rank))

        def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802
            FakeNccl.calls.append(("allReduce", send, recv, count, dtype, op, stream))

        def bcast(self, buf, count, dtype, root, stream):
            FakeNccl.calls.append(("bcast", buf, count, dtype, root, stream))


class FakeCupy:
    class cuda:  # noqa: N801
        @staticmethod
        def get_current_stream():
            return type("S", (), {"ptr": 4242})()


class DeviceArray:
    """What the communicator reads of a CuPy array (pointer, size, dtype, get/set)."""

    def __init__(self, host: np.ndarray, ptr: int) -> None:
        self.host, self.size, self.dtype = host, host.size, host.dtype
        self.data = type("M", (), {"ptr": ptr})()

    def get(self) -> np.ndarray:
        return self.host.copy()

    def set(self, h: np.ndarray) -> None:
        self.host[...] = h


# the unique id: rank 0's, identical on both ranks
dev = dn.NcclCommunicator(mpi, FakeCupy, FakeNccl)
(ndev, uid, rank), = FakeNccl.made
assert ndev == 2 and rank == r and uid == tuple(range(-64, 64)), FakeNccl.made
ids = gather([np.array(uid, np.int64)])
assert np.array_equal(ids[0][0], ids[1][0])

# device pointers, sizes, types and the stream
a = DeviceArray(np.ones(10, np.float32), 1000)
b = DeviceArray(np.ones(10, np.float32), 2000)
dev.allreduce(a, b, "test")
dev.broadcast_(DeviceArray(np.zeros(3, np.float64), 3000), 1, "test")
assert FakeNccl.calls == [("allReduce", 1000, 2000, 10, 7, 0, 4242),
                          ("bcast", 3000, 3, 8, 1, 4242)], FakeNccl.calls
try:  # a dtype no collective reduces: refused on every rank before any NCCL call
    dev.allreduce(DeviceArray(np.ones(2, bool), 1), DeviceArray(np.ones(2, bool), 2), "flags")
except CollectiveError as e:
    assert "flags" in str(e) and "bool" in str(e), e
else:
    raise AssertionError("a bool allreduce was not refused")
assert len(FakeNccl.calls) == 2

# without NCCL: staged through the host
mpi._device = False
x = DeviceArray(np.full(4, r + 1.0, np.float32), 5)
mpi.allreduce(x, x, "staged")
assert np.array_equal(x.host, np.full(4, 3.0, np.float32)), x.host
y = DeviceArray(np.full(2, 10.0 * r, np.float64), 6)
mpi.broadcast_(y, 1, "staged")
assert np.array_equal(y.host, np.full(2, 10.0)), y.host
done("nccl_paths")
