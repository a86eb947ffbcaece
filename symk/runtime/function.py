"""``CompiledFunction``: checks and casts inputs, runs a plan on a device, applies updates.

Plans are built per input signature by ``runtime/build.py`` (plan cache, passes, the device's
code).  What a device is (its plan class, how plans are built and cached, how values come back)
is the table of ``symk.runtime.devices``; this module only looks it up and never names a device.

All new values of a call's updates are computed before any variable is written (atomic, like
Theano), so ``[(a, b), (b, a)]`` swaps two variables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from symk import config
from symk.debug import log
from symk.errors import InputError, ShapeError, SymkError, user_line
from symk.graph.build import FOREIGN_KINDS, misfit
from symk.graph.node import Node, apply, creation_line, fresh_uid, node_name, substitute, toposort
from symk.graph.tensor import Variable
from symk.graph.types import shape_str
from symk.runtime.devices import DEVICES
from symk.runtime.sparse_feed import SparseInput

if TYPE_CHECKING:
    from symk.passes.schedule import Schedule


class CompiledFunction:
    """A compiled graph: ``fn(list_of_arrays) -> list_of_arrays``, applying updates atomically.

    Scalar placeholders with a default (the Keras learning phase) are *specialized*: each fed
    value gets its own optimized plan in which the placeholder is a constant, so
    ``in_train_phase`` branches and dropout fold away at test time.
    """

    def __init__(self, inputs: Sequence[Node], outputs: Sequence[Node],
                 updates: Sequence[tuple[Variable, Node]], name: str | None = None,
                 input_names: Sequence[str] | None = None, device: str | None = None) -> None:
        self.name = name or "function"
        self.device = config.check_device(device, "K.function")
        self._dev = DEVICES[self.device]
        self._dev.check()  # a DeviceError saying what is missing (a library, a driver, ...)
        #: how a call's values come back (None: numpy values, returned and stored as they are)
        self._finish = self._dev.finisher()
        self.inputs = list(inputs)
        #: input position -> SparseInput for sparse inputs (fed as three placeholders)
        self._sparse = {i: x for i, x in enumerate(self.inputs) if isinstance(x, SparseInput)}
        self.input_names = list(input_names or [
            f"input {i}" if i in self._sparse else node_name(x) or f"input {i}"
            for i, x in enumerate(inputs)])
        self.outputs = list(outputs)
        self.updates = list(updates)
        # inputs that are not placeholders (feeding an intermediate value) become fresh ones
        mapping: dict[int, Node] = {}
        feeds: list[Node] = []
        for x in self.inputs:
            if isinstance(x, SparseInput):
                feeds.extend(x.parts)
            elif x.op.name == "placeholder":
                feeds.append(x)
            else:
                ph = apply("placeholder", [], dtype=x.dtype, shape=x.shape, uid=fresh_uid())
                mapping[id(x)] = ph
                feeds.append(ph)
        self._feeds = feeds
        roots = self.outputs + [v for _, v in self.updates]
        # a placeholder with a default that is not an input only ever takes its default: it is
        # a constant (so an unfed learning phase folds its branches away too)
        fed_ids = {id(x) for x in feeds}
        for leaf in toposort(roots):
            if leaf.op.name == "placeholder" and id(leaf) not in fed_ids and \
                    leaf.attrs.get("default") is not None:
                mapping[id(leaf)] = apply("constant", [], value=leaf.attrs["default"])
        self._roots = substitute(roots, mapping) if mapping else roots
        self._spec = [i for i, x in enumerate(feeds)
                      if x.attrs.get("default") is not None and x.ndim == 0]
        self._plans: dict[tuple, _Plan] = {}
        #: per input: (dtype, rank, [(axis, static extent)]) for ``_call``'s fast path
        self._in_specs = [(np.dtype(x.dtype), len(x.shape),
                           [(k, d) for k, d in enumerate(x.shape) if d is not None])
                          for x in self.inputs]
        self._lock = threading.Lock()
        self.compile_time = 0.0
        if not self._spec:
            self._plan_for(())

    def _plan_for(self, key: tuple) -> _Plan:
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        from symk.graph import build as gb

        t0 = time.perf_counter()
        mapping = {id(self._feeds[i]): gb.const(np.asarray(v, dtype=self._feeds[i].dtype))
                   for i, v in zip(self._spec, key)}
        roots = substitute(self._roots, mapping) if mapping else self._roots
        label = self.name + ("" if not key else "[" + ",".join(map(str, key)) + "]")
        from symk.runtime.build import build  # (the passes and codegen: loaded on first use)

        built = build(roots, self._feeds, len(self.outputs), self._dev, key, label,
                      self._inplace_gemms)
        schedule = built.schedule
        n_out = len(self.outputs)
        slots = [built.executor.slot[id(r)] for r in built.roots]
        leafy = [aliases_leaf(r) for r in built.roots]
        plan = _Plan(built.executor, schedule, slots[:n_out], slots[n_out:], leafy[:n_out],
                     leafy[n_out:], [k for k, (_, u) in enumerate(self.updates)
                                     if None in u.shape])
        self._plans[key] = plan
        dt = time.perf_counter() - t0
        self.compile_time += dt
        n_nodes = len(schedule.leaves) + sum(len(s.nodes) if hasattr(s, "nodes") else 1
                                             for s in schedule.steps)
        log(1, f"compiled function '{label}': {n_nodes} nodes, "
               f"{len(schedule.kernels)} kernels, {len(schedule.externs)} extern calls, "
               f"device {self.device}, {dt * 1e3:.2f} ms ({built.how})")
        return plan

    def _inplace_gemms(self, roots: list[Node]) -> frozenset[int]:
        """Ids of the update roots that are ``gemm``s into their own variable, which no output
        or other update returns (or views): the device may accumulate into the variable."""
        n_out = len(self.outputs)
        out: set[int] = set()
        for (var, _), r in zip(self.updates, roots[n_out:]):
            if r.op.name != "gemm" or sum(x is r for x in roots) != 1:
                continue
            c = r.inputs[0]
            if c.op.name != "variable" or c.attrs["storage"] is not var.storage:
                continue
            if sum(v.storage is var.storage for v, _ in self.updates) != 1:
                continue
            if any(view_base(x) is c for x in roots):
                continue
            out.add(id(r))
        return frozenset(out)

    def _default_key(self) -> tuple:
        return () if not self._spec else tuple(
            int(self._feeds[i].attrs["default"].array) for i in self._spec)

    @property
    def plans(self) -> list[_Plan]:
        return list(self._plans.values())

    def kernels(self) -> list[dict[str, Any]]:
        """Every compiled kernel: name, Kernel IR text and (on cpu) the module's LLVM IR."""
        plan = self._plans.get(self._default_key()) or self._plan_for(self._default_key())
        out = []
        for step in plan.schedule.kernels:
            entry: dict[str, Any] = {"name": step.name, "ops": [n.op.name for n in step.nodes]}
            sources = getattr(plan.executor, "kernel_sources", None)
            if sources is not None:
                entry.update(sources(step))
            out.append(entry)
        return out

    def profile(self, enable: bool = True) -> str:
        """Turn per-step timing on (or off) and return the table gathered so far."""
        rows: dict[str, list[float]] = {}
        for plan in self._plans.values():
            plan.executor.profiling = enable
            for label, (calls, secs, moved) in plan.executor.profile_data.items():
                r = rows.setdefault(label, [0, 0.0, 0])
                r[0] += calls
                r[1] += secs
                r[2] += moved
        lines = [f"{'step':<40} {'calls':>7} {'total ms':>10} {'us/call':>9} {'GB/s':>7}"]
        for label, (calls, secs, moved) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
            per = secs / calls * 1e6 if calls else 0.0
            gbs = moved / secs / 1e9 if secs else 0.0
            lines.append(f"{label:<40} {int(calls):>7} {secs * 1e3:>10.3f} {per:>9.1f} "
                         f"{gbs:>7.2f}")
        return "\n".join(lines)

    @property
    def schedule(self) -> Schedule:
        """The Schedule of the default plan (learning phase 0 when specialized)."""
        return self._plan_for(self._default_key()).schedule

    def _coerce_checked(self, i: int, value: Any) -> np.ndarray:
        """The fed value of input ``i`` as its placeholder's dtype after every check (a
        clear InputError naming the input otherwise); ``_call`` takes arrays that already
        fit without coming here."""
        node, name = self.inputs[i], self.input_names[i]
        where = f"input {i} ('{name}', created at {creation_line(node)})"
        try:
            a = np.asarray(value)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{self.name}: {where}: cannot convert {type(value).__name__} to an "
                             f"array: {e}") from None
        target = np.dtype(node.dtype)
        if a.dtype.kind in FOREIGN_KINDS:
            raise InputError(f"{self.name}: {where}: got a value of dtype {a.dtype}, which cannot "
                             f"be cast to {target}" + (" (symk has no complex dtypes; pass the "
                                                       "real and imaginary parts separately)"
                                                       if a.dtype.kind == "c" else ""))
        if a.ndim != node.ndim:
            raise InputError(f"{self.name}: {where}: expected rank {node.ndim} with shape "
                             f"{shape_str(node.shape)}, got shape {a.shape}")
        for k, (d, s) in enumerate(zip(node.shape, a.shape)):
            if d is not None and d != s:
                raise InputError(f"{self.name}: {where}: expected shape {shape_str(node.shape)}, "
                                 f"got {a.shape} (dimension {k}: {s} != {d})")
        if a.dtype != target:
            bad = misfit(a, target)
            if bad is not None:
                raise InputError(f"{self.name}: {where}: expected {target}, got {a.dtype} "
                                 f"value {bad[0]!r}, which does not fit: {bad[1]}")
            a = a.astype(target)
        return a

    def __call__(self, values: Sequence[Any]) -> list[np.ndarray]:
        if not isinstance(values, (list, tuple)) or len(values) != len(self.inputs):
            names = ", ".join(f"'{n}'" for n in self.input_names)
            got = len(values) if isinstance(values, (list, tuple)) else \
                f"a {type(values).__name__} instead of a list"
            raise InputError(f"{self.name}: expected {len(self.inputs)} input value(s) "
                             f"({names}), got {got}\n  (in the call at {user_line()})")
        try:
            with self._lock:  # plans reuse their buffers: one call at a time per function
                return self._call(values)
        except SymkError as e:  # the user's line of the call (the graph lines are in e)
            raise type(e)(f"{e}\n  (in the call at {user_line()})") from None

    def _call(self, values: Sequence[Any]) -> list[np.ndarray]:
        if self._sparse:
            feeds = []
            for i, v in enumerate(values):
                sp = self._sparse.get(i)
                if sp is None:
                    feeds.append(self._coerce_checked(i, v))
                else:
                    feeds.extend(sp.arrays(v, f"{self.name}: input {i} ('{self.input_names[i]}')"))
        else:
            feeds = []
            for i, (v, (target, ndim, static)) in enumerate(zip(values, self._in_specs)):
                # an array that already fits is fed as it is, without building any message
                if v.__class__ is np.ndarray and v.dtype == target and v.ndim == ndim:
                    shape = v.shape
                    for k, d in static:
                        if shape[k] != d:
                            break
                    else:
                        feeds.append(v)
                        continue
                feeds.append(self._coerce_checked(i, v))
        key = tuple([feeds[i].item() for i in self._spec]) if self._spec else ()
        plan = self._plans.get(key) or self._plan_for(key)
        vals = plan.executor.run(feeds)
        if self._finish is not None:  # the device brings values back and stores updates
            return self._finish(self, plan, vals)
        if plan.any_leaf:
            outs = [np.array(vals[s], copy=True) if leaf else vals[s]
                    for s, leaf in zip(plan.out_slots, plan.out_leaf)]
        else:
            outs = [vals[s] for s in plan.out_slots]
        if not plan.upd_slots:
            return outs
        new = [vals[s] for s in plan.upd_slots]  # all computed before any write
        # an update value the caller also received (or a view of), or that another variable
        # already took, is stored as a copy: no two variables share an array (gemm updates
        # write into a variable's array in place)
        returned = {id(o) for o in outs} | {id(o.base) for o in outs if o.base is not None}
        if plan.upd_dynamic:
            self.check_update_shapes(plan, new)
        for (var, _), v, leaf in zip(self.updates, new, plan.upd_leaf):
            if leaf or id(v) in returned or v.dtype != var.value.dtype:
                v = np.array(v, dtype=var.value.dtype, copy=True)
            returned.add(id(v))
            var.value = v
        return outs

    def check_update_shapes(self, plan: _Plan, new: list[Any]) -> None:
        """A value with run-time dims must keep its variable's shape (checked before any
        variable is written)."""
        for k in plan.upd_dynamic:
            var, upd = self.updates[k]
            if new[k].shape != var.value.shape:
                raise ShapeError(f"{self.name}: the update of variable '{var.name}' computed a "
                                 f"value of shape {new[k].shape}, but the variable has shape "
                                 f"{var.value.shape} (the update's value {upd.type} was built "
                                 f"at {creation_line(upd)}); no variable was updated")


def view_base(node: Node) -> Node:
    """The node whose memory ``node``'s value may be a view of."""
    while node.op.may_alias:
        node = node.inputs[0]
    return node


def aliases_leaf(node: Node) -> bool:
    """Whether a value may share memory with a placeholder, variable or constant: such an
    output is copied before it is returned, so the caller can never modify a variable or a
    fed array through it (every other value is memory of its own)."""
    return view_base(node).op.is_leaf


class _Plan:
    __slots__ = ("executor", "schedule", "out_slots", "upd_slots", "out_leaf", "upd_leaf",
                 "upd_dynamic", "any_leaf")

    def __init__(self, executor: Any, schedule: Any, out_slots: list[int], upd_slots: list[int],
                 out_leaf: list[bool], upd_leaf: list[bool], upd_dynamic: list[int]) -> None:
        #: positions of the updates whose value has run-time dims (their shape is checked)
        self.upd_dynamic = upd_dynamic
        self.executor = executor
        self.schedule = schedule
        self.out_slots = out_slots
        self.upd_slots = upd_slots
        self.out_leaf = out_leaf
        self.upd_leaf = upd_leaf
        #: whether an output may alias a leaf (then it is copied before it is returned)
        self.any_leaf = any(out_leaf)
