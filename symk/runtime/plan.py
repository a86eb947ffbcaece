"""``Plan``: runs a Schedule step by step, the run loop of every device.

Each step's default implementation evaluates its nodes with their ops' numpy references;
devices override how a step runs (``kernel_step``, ``node_step``, ``group_step``): the
``interp`` device (``runtime/interp.py``) keeps every default and is the oracle for every faster
target, ``cpu`` runs kernels as native code, ``cuda`` as CUDA kernels.

Every value a reference computes is checked against its node's static type, so a wrong type
rule is caught here rather than becoming a silently wrong number elsewhere.  Values are dropped
as soon as the memory plan says they are dead.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import numpy as np

from symk.config import debug_level
from symk.errors import ShapeError, SymkError
from symk.graph.node import Node, creation_line, describe_origin, node_name
from symk.graph.ops.random import RandomOp
from symk.graph.storage import Storage
from symk.graph.tensor import storage_of
from symk.passes.schedule import Kernel, Schedule
from symk.runtime.shape_check import describe_tensor, step_failure


class GroupOp(Protocol):
    """An op computing several nodes at once (a multi-result group: ``scan``,
    ``allreduce_group``)."""

    def ref_group(self, nodes: Sequence[Node], *args: Any) -> list[Any]: ...

#: the context of ``Plan.run`` for plans that run no numpy (reusable)
_NO_ERRSTATE = contextlib.nullcontext()


class Plan:
    """A Schedule bound to slots: ``run(feeds)`` returns the values of all slots still live."""

    def __init__(self, schedule: Schedule, fed: Sequence[Node]) -> None:
        self.schedule = schedule
        nodes: list[Node] = list(schedule.leaves)
        for step in schedule.steps:
            nodes.extend(step.nodes if isinstance(step, Kernel) else [step.node])
        self.slot: dict[int, int] = {id(n): i for i, n in enumerate(nodes)}
        self.order = nodes
        self.fed_slots = [self.slot.get(id(n), -1) for n in fed]
        fed_ids = {id(n) for n in fed}
        self.variables: list[tuple[int, Storage]] = []
        self.constants: list[tuple[int, np.ndarray]] = []
        self.defaults: list[tuple[int, Node]] = []
        for n in schedule.leaves:
            i = self.slot[id(n)]
            if id(n) in fed_ids:
                continue
            if n.op.name == "variable":
                self.variables.append((i, storage_of(n)))
            elif n.op.name == "constant":
                self.constants.append((i, n.attrs["value"].array))
            else:
                self.defaults.append((i, n))
        #: the value list's part that never changes between calls (constants, placeholder
        #: defaults in their slots), copied by ``start``; placeholders without a default that
        #: a step needs (``start`` raises for them)
        self.base: list[Any] = [None] * len(nodes)
        for i, c in self.constants:
            self.base[i] = c
        self.unfed: list[Node] = []
        for i, n in self.defaults:
            d = n.attrs.get("default")
            if d is None:
                self.unfed.append(n)
            else:
                self.base[i] = d.array
        #: whether no step runs numpy (then ``run`` skips numpy's FP error-state context)
        self.numpy_free = False
        self.rngs: dict[int, Any] = {}
        #: node id -> call counter of each counter-based random node (see ``counter``)
        self.counters: dict[int, Any] = {}
        self.steps: list[tuple[Callable[[list[Any]], None], list[int]]] = []
        self.n_ops = 0
        #: per step: (label, input slots, output slots) for profiling
        self.step_info: list[tuple[str, list[int], list[int]]] = []
        #: label -> [calls, seconds, bytes moved]; filled while ``profiling`` is on
        self.profile_data: dict[str, list[float]] = {}
        self.profiling = False
        groups = multi_result_groups(schedule)
        for k, step in enumerate(schedule.steps):
            ins_n = step.inputs if isinstance(step, Kernel) else step.node.inputs
            outs_n = step.outputs if isinstance(step, Kernel) else [step.node]
            self.step_info.append((step.name if isinstance(step, Kernel) else
                                   f"{type(step).__name__.lower()}:{step.node.op.name}",
                                   [self.slot[id(x)] for x in ins_n],
                                   [self.slot[id(x)] for x in outs_n]))
            dead = []
            if isinstance(step, Kernel):
                outs = {id(o) for o in step.outputs}
                dead = [self.slot[id(n)] for n in step.nodes if id(n) not in outs]
                run = self.kernel_step(step)
            else:
                members = groups.get(id(step.node))
                if members is None:
                    run = self.node_step(step.node)
                else:  # the first result of a multi-result op computes them all
                    run = self.group_step(members) if members[0] is step.node else _no_op
            dead += [self.slot[id(n)] for n in schedule.frees[k]] if schedule.frees else []
            self.steps.append((run, dead))

    def node_step(self, n: Node) -> Callable[[list[Any]], None]:
        """A step evaluating one node with its numpy reference."""
        i = self.slot[id(n)]
        if n.op.is_random:
            op = n.op
            assert isinstance(op, RandomOp)  # the base of every is_random op
            self.rngs[i] = self.counter(n) if op.counter_based else \
                np.random.default_rng(n.attrs["seed"])
        rng = self.rngs.get(i)
        ins = tuple(self.slot[id(x)] for x in n.inputs)
        fn, attrs = n.op.ref, dict(n.attrs)
        self.n_ops += 1

        def run(vals: list[Any]) -> None:
            vals[i] = _run_op(n, fn, [vals[j] for j in ins], attrs, rng)
        return run

    def counter(self, n: Node) -> Any:
        """The call counter of the counter-based random node ``n`` (one per plan and node,
        shared by its native kernel and its reference evaluation)."""
        from symk.graph.ops.random import Counter

        return self.counters.setdefault(id(n), Counter())

    def group_step(self, nodes: list[Node]) -> Callable[[list[Any]], None]:
        """A step computing several results of one multi-result op (a scan) at once."""
        outs = [self.slot[id(x)] for x in nodes]
        ins = tuple(self.slot[id(x)] for x in nodes[0].inputs)
        fn = self.group_impl(nodes)
        self.n_ops += 1

        def run(vals: list[Any]) -> None:
            vs = _run_group(nodes, fn, [vals[j] for j in ins])
            for i, v in zip(outs, vs):
                vals[i] = v
        return run

    def group_impl(self, nodes: list[Node]) -> Callable[..., list[np.ndarray]]:
        """The implementation of a multi-result group (devices override it)."""
        op = cast(GroupOp, nodes[0].op)
        return lambda *args: op.ref_group(nodes, *args)

    def kernel_step(self, k: Kernel) -> Callable[[list[Any]], None]:
        """A step evaluating a fused kernel node by node (overridden by compiled devices)."""
        parts = [self.node_step(n) for n in k.nodes]

        def run(vals: list[Any]) -> None:
            for p in parts:
                p(vals)
        return run

    def run(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        vals = self.start(feeds)
        if self.profiling or debug_level() >= 2:
            with np.errstate(all="ignore"):
                self._run_timed(vals)
            return vals
        # (entering np.errstate costs ~1 us per call; a plan running no numpy skips it)
        with _NO_ERRSTATE if self.numpy_free else np.errstate(all="ignore"):
            self._steps(vals, 0, len(self.steps))
        return vals

    def _steps(self, vals: list[Any], lo: int, hi: int) -> None:
        """Steps ``[lo, hi)`` one by one, each value dropped after its last use."""
        for run, dead in (self.steps if lo == 0 and hi == len(self.steps)
                          else self.steps[lo:hi]):
            run(vals)
            for j in dead:
                vals[j] = None

    def start(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        """The value list of a call before its first step: feeds, variables, constants and
        defaults in their slots."""
        if self.unfed:
            n = self.unfed[0]
            raise SymkError(f"placeholder '{node_name(n) or 'placeholder'}' (created at "
                            f"{creation_line(n)}) is needed but was not fed; pass it in the "
                            "function's inputs")
        vals = self.base.copy()
        for s, v in zip(self.fed_slots, feeds):
            if s >= 0:
                vals[s] = v
        for i, st in self.variables:
            vals[i] = st.value
        return vals

    def _run_timed(self, vals: list[Any]) -> None:
        """Run like ``run`` while recording each step's time and bytes moved."""
        verbose = debug_level() >= 2
        for (run, dead), (label, ins, outs) in zip(self.steps, self.step_info):
            moved = sum(getattr(vals[j], "nbytes", 0) for j in ins)
            t0 = time.perf_counter()
            run(vals)
            dt = time.perf_counter() - t0
            moved += sum(getattr(vals[j], "nbytes", 0) for j in outs)
            rec = self.profile_data.setdefault(label, [0, 0.0, 0])
            rec[0] += 1
            rec[1] += dt
            rec[2] += moved
            if verbose:
                print(f"[symk] {label}: {dt * 1e6:.1f} us, {moved / max(dt, 1e-12) / 1e9:.2f} GB/s",
                      file=sys.stderr)
            for j in dead:
                vals[j] = None


def _call_ref(node: Node, call: Callable[[], Any], args: list[Any]) -> Any:
    """Run an op's implementation, turning its failures into errors naming the node."""
    try:
        return call()
    except (SymkError, ValueError, IndexError, TypeError, FloatingPointError,
            ZeroDivisionError) as e:
        raise step_failure(node, e, args) from None


def _run_op(node: Node, fn: Any, args: list[Any], attrs: dict[str, Any],
            rng: np.random.Generator | None) -> np.ndarray:
    v = np.asarray(_call_ref(node, lambda: fn(rng, *args, **attrs) if rng is not None
                             else fn(*args, **attrs), args))
    _check(node, v, args)
    return v


def _no_op(vals: list[Any]) -> None:
    return None


def multi_result_groups(schedule: Schedule) -> dict[int, list[Node]]:
    """Node id -> the results of its loop, in schedule order, for ops with several results
    (``op.group_key``: nodes with equal keys share one computation)."""
    by_key: dict[Any, list[Node]] = {}
    for step in schedule.steps:
        if isinstance(step, Kernel):
            continue
        key_of = getattr(step.node.op, "group_key", None)
        if key_of is not None:
            by_key.setdefault(key_of(step.node), []).append(step.node)
    return {id(x): members for members in by_key.values() for x in members}


def _run_group(nodes: list[Node], fn: Any, args: list[Any]) -> list[np.ndarray]:
    vs = _call_ref(nodes[0], lambda: fn(*args), args)
    out = []
    for n, v in zip(nodes, vs):
        v = np.asarray(v)
        _check(n, v, args)
        out.append(v)
    return out


@functools.lru_cache(maxsize=64)
def _np_dtype(name: str) -> np.dtype:
    return np.dtype(name)


def _check(node: Node, v: np.ndarray, args: list[Any]) -> None:
    t = node.type
    if v.dtype != _np_dtype(t.dtype):
        raise SymkError(f"internal error: op '{node.op.name}' produced {v.dtype.name}, its type "
                        f"rule says {t.dtype} (node created at {creation_line(node)})")
    if v.ndim != t.ndim or any(d is not None and d != s for d, s in zip(t.shape, v.shape)):
        raise SymkError(f"internal error: op '{node.op.name}' produced shape {v.shape}, its "
                        f"type rule says {t} (node created at {creation_line(node)})")
    if node.op.elementwise:
        for inp, a in zip(node.inputs, args):
            off = v.ndim - inp.ndim
            for k, d in enumerate(inp.shape):
                if d is None and np.shape(a)[k] == 1 and v.shape[off + k] != 1:
                    raise ShapeError(
                        f"run-time shapes do not agree in {describe_origin(node)}: "
                        f"{describe_tensor(inp)} has shape {np.shape(a)}, and its dimension "
                        f"{k} had size 1 at run time but was broadcast to {v.shape[off + k]} "
                        "(symk broadcasts only dimensions declared as 1: reshape or declare "
                        "the dimension as 1)")
