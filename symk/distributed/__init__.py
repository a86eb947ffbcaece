"""Data-parallel training across processes and machines on MPI, with Horovod's Keras API::

    import symk.distributed as hvd

    hvd.init()
    opt = hvd.DistributedOptimizer(keras.optimizers.Adam(0.001 * hvd.size()))
    model.compile(opt, ...)
    model.fit(x_part, y_part, callbacks=[hvd.BroadcastGlobalVariablesCallback(0)])

launched with ``mpiexec -n N python -m mpi4py train.py`` (``-m mpi4py``: an exception on one
rank aborts the whole job instead of leaving the others waiting).  Without mpi4py or outside
``mpiexec``, ``size() == 1`` and every call is a no-op, so the same script runs alone.

Modules: ``comm`` (the processes, MPI), ``ops`` (``allreduce``, ``broadcast``,
``broadcast_variables``), ``keras`` (``DistributedOptimizer``), ``callbacks`` (the Keras
callbacks, imported with Keras on first use).  The collective ops themselves are defined in
``symk.graph.ops.collective``; the ``collectives`` pass sends a step's gradients in one buffer.
"""

from __future__ import annotations

from typing import Any

from symk.distributed.comm import (
    NotInitializedError,
    init,
    is_initialized,
    local_rank,
    local_size,
    rank,
    shutdown,
    size,
)
from symk.distributed.keras import DistributedOptimizer
from symk.distributed.ops import allreduce, broadcast, broadcast_variables

_CALLBACKS = ("BroadcastGlobalVariablesCallback", "MetricAverageCallback",
              "LearningRateWarmupCallback")

__all__ = ["NotInitializedError", "init", "is_initialized", "local_rank", "local_size", "rank",
           "shutdown", "size", "DistributedOptimizer", "allreduce", "broadcast",
           "broadcast_variables", *_CALLBACKS]


def __getattr__(name: str) -> Any:
    if name in _CALLBACKS:  # Keras is imported only when a callback is asked for
        from symk.distributed import callbacks

        return getattr(callbacks, name)
    raise AttributeError(f"module 'symk.distributed' has no attribute {name!r}")
