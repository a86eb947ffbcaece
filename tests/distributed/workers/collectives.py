"""Worker: allreduce and broadcast of float32/float64/int32/int64 tensors (summed and
averaged, static and None dims), of arrays, one collective per call for many allreduces, and
ranks that disagree about a size raise on every rank."""

from __future__ import annotations

import numpy as np
from common import done

from symk import backend as K
from symk import distributed as hvd
from symk.graph.ops.collective import CollectiveError

hvd.init()
r, size = hvd.rank(), hvd.size()
assert size == 2, size
assert hvd.local_size() == 2 and hvd.local_rank() == r

for dtype in ("float32", "float64", "int32", "int64"):
    base = np.arange(12, dtype=dtype).reshape(3, 4)
    mine = base * (r + 1) + r  # rank 0: base, rank 1: 2 base + 1
    total = base * 3 + 1
    for shape in ((3, 4), (None, 4), (None, None)):
        x = K.placeholder(shape, dtype=dtype)
        summed = hvd.allreduce(x, average=False)
        mean = hvd.allreduce(x, average=True)
        bcast = hvd.broadcast(x, root_rank=1)
        got_sum, got_mean, got_b = K.function([x], [summed, mean, bcast])([mine])
        assert got_sum.dtype == dtype and np.array_equal(got_sum, total), (dtype, got_sum)
        want_mean = total // 2 if dtype.startswith("int") else total / 2
        np.testing.assert_allclose(got_mean, want_mean, rtol=1e-6)
        assert got_mean.dtype == dtype
        assert np.array_equal(got_b, base * 2 + 1), got_b
    # values (not tensors) are reduced at once
    assert np.array_equal(hvd.allreduce(mine, average=False), total)
    assert np.array_equal(hvd.broadcast(mine, 0), base)

# several independent allreduces travel in one collective per call
comm = hvd.comm.mpi_communicator()
calls = []
real = comm.allreduce
comm.allreduce = lambda src, dst, what: (calls.append(src.size), real(src, dst, what))[1]
a = K.placeholder((None, 3))
b = K.placeholder((5,))
f = K.function([a, b], [hvd.allreduce(a * 2.0), hvd.allreduce(b + 1.0),
                        hvd.allreduce(K.sum(a))])
av = np.full((2, 3), r + 1.0, "float32")
bv = np.full(5, 10.0 * r, "float32")
got = f([av, bv])
np.testing.assert_allclose(got[0], np.full((2, 3), 3.0))  # mean of 2 and 4
np.testing.assert_allclose(got[1], np.full(5, 6.0))  # mean of 1 and 11
np.testing.assert_allclose(got[2], 9.0)  # mean of 6 and 12
assert calls == [6 + 5 + 1], calls
comm.allreduce = real

# a rank with another size: both ranks raise (no hang, no wrong sum)
x = K.placeholder((None,))
g = K.function([x], [hvd.allreduce(x)])
try:
    g([np.ones(3 + r, "float32")])
except CollectiveError as e:
    assert "disagree" in str(e), e
else:
    raise AssertionError("ranks with different sizes did not raise")
done("collectives")
