"""Keras callbacks of a data-parallel job, with Horovod's semantics (imported, with Keras, on
first use of ``symk.distributed.<callback>``).

* ``BroadcastGlobalVariablesCallback(root_rank)``: the model's and the optimizer's variables
  take rank ``root_rank``'s values when training begins (Keras 2.3.1 has built the train
  function, and so the optimizer's variables, by then), so ranks seeded differently start
  identical.
* ``MetricAverageCallback()``: at each epoch's end the logged metrics become their mean over
  the ranks (one collective, names in sorted order).
* ``LearningRateWarmupCallback(warmup_epochs=5, momentum_correction=True,
  steps_per_epoch=None, verbose=0, initial_lr=None)``: over the first ``warmup_epochs`` the
  learning rate rises from ``initial_lr / size`` to ``initial_lr`` (the optimizer's rate when
  training begins, unless given): at batch ``b`` of epoch ``e`` it is
  ``initial_lr / size * (t * (size - 1) / warmup_epochs + 1)`` with
  ``t = e + (b + 1) / steps_per_epoch``; with momentum correction an SGD momentum is scaled by
  new/old rate for the batch of each change.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from symk.backend import _variables as kv
from symk.distributed.comm import mpi_communicator, rank, size
from symk.distributed.ops import broadcast_variables


class BroadcastGlobalVariablesCallback(keras.callbacks.Callback):
    def __init__(self, root_rank: int = 0, device: str = "") -> None:
        super().__init__()
        self.root_rank = root_rank
        self.broadcast_done = False

    def on_train_begin(self, logs: Any = None) -> None:
        if self.broadcast_done:
            return
        variables = list(self.model.weights)
        opt = getattr(self.model, "optimizer", None)
        if opt is not None:
            variables += [v for v in getattr(opt, "weights", []) if v not in variables]
        broadcast_variables(variables, root_rank=self.root_rank)
        self.broadcast_done = True


class MetricAverageCallback(keras.callbacks.Callback):
    def __init__(self, device: str = "") -> None:
        super().__init__()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        comm = mpi_communicator()
        if comm is None or not logs:
            return
        names = sorted(logs)
        values = np.array([float(logs[k]) for k in names], np.float64)
        comm.average_(values)
        for k, v in zip(names, values):
            logs[k] = v


class LearningRateWarmupCallback(keras.callbacks.Callback):
    def __init__(self, warmup_epochs: float = 5, momentum_correction: bool = True,
                 steps_per_epoch: int | None = None, verbose: int = 0,
                 initial_lr: float | None = None) -> None:
        super().__init__()
        self.warmup_epochs = warmup_epochs
        self.momentum_correction = momentum_correction
        self.steps_per_epoch = steps_per_epoch
        self.verbose = verbose
        self.initial_lr = initial_lr
        self.current_epoch = 0
        self.restore_momentum: float | None = None

    def multiplier(self, epoch: float) -> float:
        """The factor on ``initial_lr`` at (fractional) ``epoch`` (Horovod's, which ends each
        epoch on a round value)."""
        ranks = size()
        epoch += 1.0 / self.steps_per_epoch
        return 1.0 / ranks * (epoch * (ranks - 1) / self.warmup_epochs + 1)

    def _steps(self) -> int:
        p = self.params or {}
        if p.get("steps"):
            return int(p["steps"])
        if p.get("samples") and p.get("batch_size"):
            return int(p["samples"]) // int(p["batch_size"])
        raise ValueError("LearningRateWarmupCallback: cannot tell the steps per epoch from "
                         "Keras's parameters; pass steps_per_epoch")

    def on_train_begin(self, logs: Any = None) -> None:
        if self.initial_lr is None:
            self.initial_lr = float(kv.get_value(self.model.optimizer.lr))
        if not self.steps_per_epoch:
            self.steps_per_epoch = self._steps()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.current_epoch = epoch

    def on_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.current_epoch >= self.warmup_epochs:
            return
        opt = self.model.optimizer
        old = float(kv.get_value(opt.lr))
        new = self.initial_lr * self.multiplier(self.current_epoch + batch / self.steps_per_epoch)
        kv.set_value(opt.lr, new)
        if self.momentum_correction and hasattr(opt, "momentum") and old:
            self.restore_momentum = float(kv.get_value(opt.momentum))
            kv.set_value(opt.momentum, self.restore_momentum * new / old)

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.restore_momentum is not None:
            kv.set_value(self.model.optimizer.momentum, self.restore_momentum)
            self.restore_momentum = None

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if logs is not None:
            logs["lr"] = float(kv.get_value(self.model.optimizer.lr))
        if epoch == self.warmup_epochs - 1 and self.verbose > 0 and rank() == 0:
            print(f"\nEpoch {epoch + 1}: finished gradual learning rate warmup to "
                  f"{kv.get_value(self.model.optimizer.lr):g}.")
