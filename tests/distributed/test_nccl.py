"""The NCCL path where it can be checked without a GPU (packing on host arrays; the id
exchange and the calls are in ``workers/nccl_paths.py``, run by ``test_mpi.py``), and on 2 GPUs
where there are (marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from symk.distributed import nccl as dn
from symk.graph.ops import collective
from tests.distributed.mpi_run import assert_ok, run_workers


def test_pack_and_unpack_host_arrays():
    arrays = [np.arange(6, dtype="float32").reshape(2, 3), np.full((), 7.0, "float32"),
              np.arange(4, dtype="float32")]
    flat, sizes = collective.pack(arrays)
    assert sizes == [6, 1, 4] and flat.shape == (11,) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 7, 0, 1, 2, 3])
    back = collective.unpack(flat, arrays)
    for a, b in zip(arrays, back):
        assert b.shape == a.shape and np.shares_memory(b, flat)
        np.testing.assert_array_equal(a, b)


def test_every_nccl_type_is_a_collective_dtype():
    from symk.distributed.comm import _CODES

    assert {np.dtype(t) for t in dn.NCCL_TYPES} <= set(_CODES)


def _gpus() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001
        return 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2 or dn.load_nccl() is None, reason="needs NCCL and 2 GPUs")
def test_two_ranks_on_two_gpus():
    assert_ok(run_workers("nccl_gpus.py"), "nccl_gpus")
