"""The ``cpu`` device's plan: it runs a Schedule with the native code ``runtime/native``
compiled for it (one LLVM module: a kernel per fused Kernel step, a driver per run of native
steps); extern calls (BLAS products, convolutions, gathers, scans, data movement) run their
fast paths or numpy references, and views are numpy views.

A kernel's parallel loop is split across a small thread pool when the work is large (ctypes
releases the GIL during the call); small kernels run inline with no pool overhead.
``SYMK_NUM_THREADS`` sets the pool size (the pool and the output buffer rings are
``symk.runtime.cpu_pool``'s).  Native extern implementations come from ``CPU_EXTERNS``, filled
by ``externs`` and by the modules the device table imports for this device (``conv_cpu``,
``scan_cpu``, ``sparse_cpu``: they build on this module, which does not import them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.config import debug_level, num_threads_set
from symk.errors import SymkError
from symk.graph.node import Node
from symk.passes.schedule import Kernel, Schedule
from symk.runtime import threads
from symk.runtime.cpu_pool import Ring, num_threads
from symk.runtime.driver import (
    BLAS_SPLIT_FACTOR,
    SMALL_INPUT_BYTES,
    SMALL_INPUTS_KEPT,
    Segment,
    run_split,
    split_wanted,
)
from symk.runtime.externs import (
    CPU_BLAS_EXTERNS,
    CPU_EXTERNS,
    CPU_GROUP_EXTERNS,
    gemm_plan,
    matmul2d_plan,
    matmul_plan,
)
from symk.runtime.native import KernelCall, NativeCode, kernel_sources
from symk.runtime.plan import Plan
from symk.runtime.shape_check import empty_reduction, kernel_mismatch, step_failure


class CpuPlan(Plan):
    """A Plan whose kernel steps call native code: the schedule's ``NativeCode``, compiled by
    ``symk.runtime.native`` before the plan is made.  Runs of native steps are run by native
    drivers (``symk.runtime.driver``)."""

    def __init__(self, schedule: Schedule, fed: Sequence[Node], code: NativeCode) -> None:
        self.code = code
        self.prep = code.prep
        self.native = code.module
        self.by_step = code.by_step
        #: ids of the gemm nodes that may write into their accumulator input (a variable)
        self.inplace = code.inplace
        #: id -> (array, address) of the arrays whose addresses are known without numpy
        #: (pooled kernel outputs; a scan loop adds its constants and sequence slices)
        self.known: dict[int, tuple[np.ndarray, int]] = {}
        #: id -> (array, address) of small inputs that are not pooled outputs (variables such
        #: as biases and Keras's optimizer scalars, fed arrays): numpy's ``ctypes`` costs ~1 us
        #: per array and call, which dominated the steps of small models; bounded, see below
        self.small: dict[int, tuple[np.ndarray, int]] = {}
        self.schedule = schedule
        #: step ranges run by one native driver call each (``symk.runtime.driver``)
        self.segments: list[Segment] = list(code.segments)
        self.nthreads = num_threads()
        blas = any(s.node.op.name in CPU_BLAS_EXTERNS for s in schedule.externs)
        #: whether the drivers' big products run in shares on symk's threads (returning to
        #: Python for each) rather than on BLAS's threads (see :meth:`own_products`)
        self.products_owned = False
        self.owned_at = 0.0
        self.split_factor = BLAS_SPLIT_FACTOR if blas else 1
        super().__init__(schedule, fed)
        # a plan of native kernels only never runs a numpy ufunc: no FP error state is needed
        self.numpy_free = all(isinstance(st, Kernel) and id(st) in self.by_step
                              for st in schedule.steps) and self.native is not None
        #: (lo, hi, segment or None): the call's program, in schedule order
        self.program: list[tuple[int, int, Segment | None]] = []
        self._bind_drivers()
        #: whether a call needs a thread scope (a product, convolution or loop)
        self.scoped = blas or any(s.node.op.name == "scan" for s in schedule.externs)
        #: times calls to choose the BLAS threads of big products (``threads.Tuner``); not
        #: when SYMK_NUM_THREADS fixes the count or the plan has no product
        self.tuner = threads.Tuner() if blas and self.nthreads > 1 and \
            not num_threads_set() else None
        if not self.scoped:  # no thread scope: straight to the steps
            # (an instance attribute shadowing the method: mypy rejects assigning methods)
            self.run = self._run if self.segments else super().run  # type: ignore[method-assign]

    def _bind_drivers(self) -> None:
        """Bind the segments to the compiled code and the plan's slots; the call program."""
        if not self.segments or self.native is None:
            self.segments = []
            self.program = [(0, len(self.steps), None)]
            self.driver_numpy_free, self.only = False, None
            return
        for seg in self.segments:
            seg.bind(self, self.native.fns)
        k = 0
        for seg in self.segments:
            if seg.lo > k:
                self.program.append((k, seg.lo, None))
            self.program.append((seg.lo, seg.hi, seg))
            k = seg.hi
        if k < len(self.steps):
            self.program.append((k, len(self.steps), None))
        # every step in one segment: no numpy ufunc runs, no FP error state is needed
        self.driver_numpy_free = len(self.segments) == 1 and self.segments[0].lo == 0 and \
            self.segments[0].hi == len(self.steps)
        #: the run of the only segment when it holds every step
        self.only = self.segments[0].run if self.driver_numpy_free else None

    def kernel_sources(self, step: Kernel) -> dict[str, str]:
        """Kernel IR text of a native kernel step and its module's LLVM IR."""
        return kernel_sources(self.code, self.schedule, step)

    def node_step(self, n: Node) -> Callable[[list[Any]], None]:
        if n.op.matrix_product:  # matrix products write into the step's buffers
            ring = Ring(self.known, np.dtype(n.dtype))

            def alloc(shape: tuple[int, ...]) -> np.ndarray:
                return ring.get(shape)[0]
            if n.op.name == "gemm":
                fast = gemm_plan(n, alloc, inplace=id(n) in self.inplace)
            else:
                fast = matmul2d_plan(n, alloc) or matmul_plan(n, alloc=alloc)
        else:
            factory = CPU_EXTERNS.get(n.op.name)
            fast = factory(n) if factory is not None else None
        if fast is None:
            return super().node_step(n)
        i = self.slot[id(n)]
        self.n_ops += 1
        if len(n.inputs) == 2:  # the common case (matmul) without a per-call list
            a, b = (self.slot[id(x)] for x in n.inputs)

            def run2(vals: list[Any]) -> None:
                try:
                    vals[i] = fast(vals[a], vals[b])
                except (ValueError, IndexError, TypeError, SymkError) as e:
                    raise step_failure(n, e, [vals[a], vals[b]]) from None
            return run2
        ins = [self.slot[id(x)] for x in n.inputs]

        def run(vals: list[Any]) -> None:
            args = [vals[j] for j in ins]
            try:
                vals[i] = fast(*args)
            except (ValueError, IndexError, TypeError, SymkError) as e:
                raise step_failure(n, e, args) from None
        return run

    def group_impl(self, nodes: list[Node]) -> Callable[..., list]:
        factory = CPU_GROUP_EXTERNS.get(nodes[0].op.name)
        fast = factory(nodes, self) if factory is not None else None
        return fast if fast is not None else super().group_impl(nodes)

    def own_products(self) -> float:
        """From now on, run this plan's big products on symk's threads (``externs.own_split``),
        never on BLAS's: a loop of the plan runs split by rows, and a BLAS worker spinning
        after a product would take half a core from one of its shares (LSTM(128) at batch
        128: 22.5 ms per train step with BLAS's threads, 16.2 with symk's).  Other plans keep
        BLAS's threads inside their drivers (no return to Python per product).  Returns the
        seconds since the products moved."""
        now = time.monotonic()
        if not self.products_owned:
            self.products_owned = True
            self.owned_at = now
            for seg in getattr(self, "segments", ()):  # (none yet while the plan is built)
                seg.sized.clear()  # sized again, with the big products returned to Python
        return now - self.owned_at

    def kernel_step(self, k: Kernel) -> Callable[[list[Any]], None]:
        call = self.by_step.get(id(k))
        if call is None or self.native is None:
            return super().kernel_step(k)
        return _native_step(self, call, self.native.fns[call.name], k.nodes)

    def run(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        """The call's steps -- runs of them by native drivers, the others one by one --
        inside a thread scope (``symk.runtime.threads``) when a step calls BLAS: small
        products on one BLAS thread, numpy's count restored at the end (plans with neither
        drivers nor BLAS run Plan's ``run`` directly, see ``__init__``)."""
        if not self.scoped:
            return self._run(feeds)
        threads.enter(self.nthreads)
        try:
            if self.tuner is None:
                return self._run(feeds)
            return threads.tuned(self.tuner, feeds, self._run)
        finally:
            threads.leave()

    def _run(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        if not self.segments or self.profiling or debug_level() >= 2:
            return super().run(feeds)
        vals = self.start(feeds)
        if self.driver_numpy_free:
            assert self.only is not None  # set with driver_numpy_free
            if not self.only(vals):
                with np.errstate(all="ignore"):
                    self._steps(vals, 0, len(self.steps))
            return vals
        with np.errstate(all="ignore"):
            self.execute(vals)
        return vals

    def execute(self, vals: list[Any]) -> None:
        """Run every step on a filled value list (a loop's body, once per time step): the
        segments by their drivers, the rest one by one (``_steps``, also when a segment
        cannot run natively this call); the caller holds the FP error state and the thread
        scope."""
        for lo, hi, seg in self.program:
            if seg is None or not seg.run(vals):
                self._steps(vals, lo, hi)



def _native_step(plan: CpuPlan, lk: KernelCall, fn: Any, nodes: Sequence[Node] = ()
                 ) -> Callable[[list[Any]], None]:
    """One kernel step: bind the input/output/scratch addresses and runtime sizes into the
    step's argument array, call the native kernel (split across the pool when large).  Plans
    run one call at a time (the function's lock), so the argument array is the step's own."""
    in_slots = [plan.slot[id(x)] for x in lk.inputs]
    in_dt = [np.dtype(x.dtype) for x in lk.inputs]
    out_slots = [plan.slot[id(o)] for o in lk.outputs]
    known, small = plan.known, plan.small
    rings = [Ring(known, np.dtype(o.dtype)) for o in lk.outputs]
    out_dims = [list(d) for d in lk.out_dims]
    sources = [s for s in lk.size_sources if s[0] >= 0]
    # call counters of the kernel's counter-based random nodes (their params follow the sizes)
    counters = [plan.counter(nodes[j]) for i, j in lk.size_sources if i < 0]
    checks = list(lk.in_checks)
    nonempty = list(lk.nonempty)
    outer_kind, outer_v = lk.outer
    static_elems = 1
    for d in lk.domain:
        static_elems *= d if d is not None else 1
    n_in = len(in_slots)
    n_io = n_in + len(out_slots)
    scratch = [(np.dtype(dt), dims) for dt, dims in (lk.scratch or [])]
    scratch_cache: list[tuple[np.ndarray, int] | None] = [None] * len(scratch)
    n_bufs = n_io + len(scratch)
    args = np.zeros(lk.nparams, np.int64)
    ptr = args.ctypes.data
    arrs: list[Any] = [None] * n_in

    def run(vals: list[Any]) -> None:
        for j, s in enumerate(in_slots):
            a = vals[s]
            ent = known.get(id(a))
            if ent is None or ent[0] is not a:
                ent = small.get(id(a))
            if ent is not None and ent[0] is a:
                args[j] = ent[1]
            else:
                dt = in_dt[j]
                if a.dtype != dt or not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a, dtype=dt)
                args[j] = addr = a.ctypes.data
                if a.nbytes <= SMALL_INPUT_BYTES:  # the entry keeps `a` (and its id) alive
                    if len(small) >= SMALL_INPUTS_KEPT:
                        small.clear()
                    small[id(a)] = (a, addr)
            arrs[j] = a
        try:
            sizes = [arrs[i].shape[ax] for i, ax in sources]
            for j, ax, k, d in checks:  # every extent the kernel's indexing assumes
                if arrs[j].shape[ax] != (sizes[k] if k >= 0 else d):
                    raise IndexError
        except IndexError:
            arrs[:] = [None] * n_in
            raise kernel_mismatch(lk, [vals[s] for s in in_slots], nodes) from None
        if nonempty and not all(sizes[k] for k in nonempty):
            arrs[:] = [None] * n_in
            raise empty_reduction(nodes)
        outs = []
        for j, (dims, ring) in enumerate(zip(out_dims, rings), n_in):
            ent = ring.get(tuple(d if d is not None else sizes[k] for d, k in dims))
            args[j] = ent[1]
            outs.append(ent[0])
        ent = None
        for j, (dt, dims) in enumerate(scratch):  # private to this step: always reusable
            shape = tuple(d if d is not None else sizes[k] for d, k in dims)
            sc = scratch_cache[j]
            if sc is None or sc[0].shape != shape:
                arr = np.empty(shape, dt)
                sc = scratch_cache[j] = (arr, arr.ctypes.data)
            args[n_io + j] = sc[1]
        for j, sz in enumerate(sizes, n_bufs):
            args[j] = sz
        if counters:
            for j, c in enumerate(counters, n_bufs + len(sizes)):
                args[j] = c.take()
        n = outer_v if outer_kind == "const" else sizes[outer_v]
        total = static_elems
        for sz in sizes:
            total *= sz
        try:
            if split_wanted(plan, n, total):
                run_split(plan, fn, ptr, n)
            else:
                fn(ptr, 0, n)
        finally:
            arrs[:] = [None] * n_in
        for s, o in zip(out_slots, outs):
            vals[s] = o
    return run
