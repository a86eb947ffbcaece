"""``DistributedOptimizer``: any Keras 2.3.1 optimizer whose gradients are averaged over the
ranks before its update.

The wrapper is a subclass made on the fly with the optimizer's own class name (a saved model
records ``SGD``, ``Adam``, ... and loads without symk.distributed), built from the optimizer's
config like Horovod's.  Its ``get_gradients`` averages every gradient with ``allreduce``; the
``collectives`` pass then sends all of them in one flat buffer per step, between the gradient
kernels and the update kernels, and the ``1 / size`` scaling lands in the update kernels.
"""

from __future__ import annotations

from typing import Any

from symk.distributed.ops import allreduce


def DistributedOptimizer(optimizer: Any, name: str | None = None, **ignored: Any) -> Any:  # noqa: N802
    """``optimizer`` (a Keras optimizer instance) with its gradients averaged over the ranks.
    Horovod's other arguments (``device_dense``, ``compression``, ...) are accepted and have
    no effect on the CPU."""
    base = type(optimizer)

    def get_gradients(self: Any, loss: Any, params: Any) -> list:
        grads = base.get_gradients(self, loss, params)
        return [g if g is None else allreduce(g, average=True) for g in grads]

    cls = type(base.__name__, (base,), {"get_gradients": get_gradients,
                                        "__module__": base.__module__,
                                        "_symk_distributed": True})
    return cls.from_config(optimizer.get_config())
