"""Building a device plan from a graph: the compile stage of a ``CompiledFunction``.

``build`` takes the roots of one input signature to an executor on a device in three steps:
1. the optimized Schedule: from the plan cache (``plan_cache``: optimized, scheduled and
   lowered functions keyed by graph structure), or by running the passes
   (``passes/pipeline.optimize``: rewrites, fusion, the Schedule, the memory plan);
2. the device's code (``Device.compile_code``; the cpu's is ``runtime/native``: Kernel IR,
   LLVM IR, one compiled module), loaded back from the caches on a plan-cache hit;
3. the device's plan (``Device.new_plan``), which runs that code.
A newly compiled function then fills the plan cache.  ``CompiledFunction`` checks inputs, runs
the executor and applies updates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from symk.graph.node import Node
from symk.passes import pipeline
from symk.passes.schedule import Schedule
from symk.runtime import cache, plan_cache
from symk.runtime.devices import Device


@dataclass
class Built:
    #: the optimized roots (outputs, then updates)
    roots: list[Node]
    schedule: Schedule
    #: the device's plan (a ``runtime/plan.py`` ``Plan``)
    executor: Any
    #: "plan cache hit" or "compiled"
    how: str


def build(roots: list[Node], feeds: Sequence[Node], n_outputs: int, dev: Device,
          key: tuple, label: str,
          inplace: Callable[[list[Node]], frozenset[int]]) -> Built:
    """The executor of ``roots`` on ``dev`` for the input signature ``key``.  ``inplace``
    gives, for the optimized roots, the ids of the updates the device may accumulate into their
    own variable."""
    pk = None
    if plan_cache.enabled() and dev.plan_cache:
        pk = plan_cache.plan_key(roots, feeds, n_outputs, dev.name, key, dev.target_key())
    if pk is not None:
        t = plan_cache.lookup(pk[0])
        if t is not None:
            try:
                opt_roots, schedule, prep = plan_cache.instantiate(t, pk[1])
                code = dev.compile_code(schedule, label, inplace(opt_roots), prep)
                return Built(opt_roots, schedule, dev.new_plan(schedule, feeds, code),
                             "plan cache hit")
            except cache.Missing:  # e.g. the object cache was cleared: a plain miss
                pass
            except Exception as e:  # noqa: BLE001 - a bad entry must never cost a result
                plan_cache.discard(pk[0], f"{type(e).__name__}: {e}")
    opt = pipeline.optimize(roots, name=label)
    code = dev.compile_code(opt.schedule, label, inplace(opt.roots))
    executor = dev.new_plan(opt.schedule, feeds, code)
    if pk is not None:
        t = plan_cache.make_template(opt.roots, opt.schedule, pk[1],
                                     code.prep if dev.native_prep else None)
        if t is not None:
            plan_cache.store(pk[0], t)
    return Built(opt.roots, opt.schedule, executor, "compiled")
