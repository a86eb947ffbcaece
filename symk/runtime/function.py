"""``CompiledFunction``: checks and casts inputs, runs a plan on a device, applies updates.

All new values of a call's updates are computed before any variable is written (atomic, like
Theano), so ``[(a, b), (b, a)]`` swaps two variables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from symk import config
from symk.debug import log
from symk.errors import DeviceError, InputError
from symk.graph.node import Node, creation_line, node_name
from symk.graph.tensor import Variable
from symk.graph.types import shape_str


class CompiledFunction:
    def __init__(self, inputs: Sequence[Node], outputs: Sequence[Node],
                 updates: Sequence[tuple[Variable, Node]], name: str | None = None,
                 input_names: Sequence[str] | None = None, device: str | None = None) -> None:
        from symk.runtime.interp import InterpPlan

        t0 = time.perf_counter()
        self.name = name or "function"
        self.device = device or config.device()
        if self.device == "cuda":
            raise DeviceError("device 'cuda' is not available in this build of symk yet; "
                              "use 'interp'")
        self.inputs = list(inputs)
        self.input_names = list(input_names or [node_name(x) or f"input {i}"
                                                for i, x in enumerate(inputs)])
        self.outputs = list(outputs)
        self.updates = list(updates)
        roots = self.outputs + [v for _, v in self.updates]
        self.plan = InterpPlan(roots, self.inputs)
        self._out_slots = [self.plan.slot[id(o)] for o in self.outputs]
        self._upd_slots = [self.plan.slot[id(v)] for _, v in self.updates]
        self._copy_out = [o.op.is_leaf or any(o is x for x in self.inputs) for o in self.outputs]
        self.compile_time = time.perf_counter() - t0
        log(1, f"compiled function '{self.name}': {len(self.plan.order)} nodes, "
               f"{len(self.plan.steps)} ops, device {self.device}, "
               f"{self.compile_time * 1e3:.2f} ms")

    def _coerce(self, i: int, value: Any) -> np.ndarray:
        node, name = self.inputs[i], self.input_names[i]
        where = f"input {i} ('{name}', created at {creation_line(node)})"
        try:
            a = np.asarray(value)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{self.name}: {where}: cannot convert {type(value).__name__} to an "
                             f"array: {e}") from None
        target = np.dtype(node.dtype)
        if a.dtype == object or a.dtype.kind in "USVMm":
            raise InputError(f"{self.name}: {where}: got a value of dtype {a.dtype}, which cannot "
                             f"be cast to {target}")
        if a.ndim != node.ndim:
            raise InputError(f"{self.name}: {where}: expected rank {node.ndim} with shape "
                             f"{shape_str(node.shape)}, got shape {a.shape}")
        for k, (d, s) in enumerate(zip(node.shape, a.shape)):
            if d is not None and d != s:
                raise InputError(f"{self.name}: {where}: expected shape {shape_str(node.shape)}, "
                                 f"got {a.shape} (dimension {k}: {s} != {d})")
        if a.dtype != target:
            if target.kind in "iub" and a.dtype.kind == "f":
                with np.errstate(invalid="ignore"):
                    ok = bool(np.all(np.mod(a, 1) == 0))
                if not ok:
                    raise InputError(f"{self.name}: {where}: expected {target}, got {a.dtype} "
                                     "values with a fractional part (cannot cast safely)")
            if target.kind == "b" and a.dtype.kind in "iuf" and a.size and \
                    not np.all((a == 0) | (a == 1)):
                raise InputError(f"{self.name}: {where}: expected bool, got {a.dtype} values "
                                 "other than 0 and 1")
            a = a.astype(target)
        return a

    def __call__(self, values: Sequence[Any]) -> list[np.ndarray]:
        if len(values) != len(self.inputs):
            names = ", ".join(f"'{n}'" for n in self.input_names)
            raise InputError(f"{self.name}: expected {len(self.inputs)} input value(s) "
                             f"({names}), got {len(values)}")
        feeds = [self._coerce(i, v) for i, v in enumerate(values)]
        vals = self.plan.run(feeds)
        outs = []
        for s, cp in zip(self._out_slots, self._copy_out):
            v = vals[s]
            outs.append(np.array(v, copy=True) if cp else v)
        new = [vals[s] for s in self._upd_slots]  # all computed before any write
        for (var, _), v in zip(self.updates, new):
            var.value = np.array(v, dtype=var.value.dtype, copy=True)
        return outs
