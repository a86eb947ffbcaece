"""Worker (2 GPUs): a DistributedOptimizer-style step on device="cuda", its gradients reduced
by NCCL on device pointers, against the host result."""

from __future__ import annotations

import cupy
import numpy as np
from common import done

from symk import backend as K
from symk import distributed as hvd

hvd.init()
cupy.cuda.Device(hvd.local_rank()).use()
x = K.placeholder((None, 3))
w = K.variable(np.ones((3, 2), "float32"))
b = K.variable(np.zeros(2, "float32"))
loss = K.sum(K.square(K.dot(x, w) + b))
grads = [hvd.allreduce(g, average=False) for g in K.gradients(loss, [w, b])]
xv = np.full((4, 3), hvd.rank() + 1.0, "float32")
on_gpu = K.function([x], grads, device="cuda")([xv])
on_cpu = K.function([x], grads, device="cpu")([xv])
assert hvd.comm.mpi_communicator().device() is not None  # NCCL, not host staging
for g, h in zip(on_gpu, on_cpu):
    np.testing.assert_allclose(np.asarray(g.get() if hasattr(g, "get") else g), h, rtol=1e-5)
done("nccl_gpus")
