"""The ``cpu`` device: every fused kernel of the Schedule runs as native code from the LLVM
renderer; extern calls (BLAS matmul through numpy, gather, scans, data movement) and views run
with their numpy implementations.

All kernels of a function are compiled as one LLVM module, cached in memory and on disk by
content.  A kernel's parallel loop is split across a small thread pool when the work is large
(ctypes releases the GIL during the call); small kernels run inline with no pool overhead.
``SYMK_NUM_THREADS`` sets the pool size (the pool and the output buffer rings are
``symk.runtime.cpu_pool``'s).  Native extern implementations come from ``CPU_EXTERNS``, filled
by ``externs`` and by the modules the device table imports for this device (``conv_cpu``,
``scan_cpu``, ``sparse_cpu``: they build on this module, which does not import them).
"""

from __future__ import annotations

import ctypes
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import llvmlite.binding as llvm
import numpy as np

from symk import config
from symk.codegen.driver_render import PREFIX as DRIVER_PREFIX
from symk.codegen.driver_render import with_drivers
from symk.codegen.kir import Program
from symk.codegen.llvm_compile import compile_object, target_key
from symk.codegen.llvm_render import render_kernel, render_module
from symk.codegen.lowering import LoweredKernel, lower_kernel
from symk.config import debug_level, num_threads_set
from symk.debug import log
from symk.errors import SymkError
from symk.graph.node import Node
from symk.passes.schedule import Kernel, Schedule
from symk.runtime import cache, threads
from symk.runtime.cpu_pool import Ring, num_threads, on_pool
from symk.runtime.driver import DFUNC, Segment, build_segments
from symk.runtime.externs import (
    CPU_EXTERNS,
    CPU_GROUP_EXTERNS,
    gemm_plan,
    matmul2d_plan,
    matmul_plan,
)
from symk.runtime.lru import MODULES_RECENT, ModuleTable
from symk.runtime.plan import Plan
from symk.runtime.shape_check import kernel_mismatch, step_failure

KFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
#: kernels with fewer domain elements than this run on the calling thread only (measured:
#: a 2-way split of a 131k-element kernel right after a GEMM is ~4x slower than one thread,
#: as OpenBLAS's threads are still spinning; from ~400k elements the split pays off)
PARALLEL_MIN_ELEMENTS = 1 << 18
#: in a function that also calls BLAS, a kernel splits only from this many times as many
#: elements: OpenBLAS's worker threads keep spinning on the other cores for a while after each
#: GEMM, and a second kernel thread competing with them was measured to take ~2x longer than
#: one thread (W3's 784x512 SGD update: 371 us split vs 187 us on one thread)
BLAS_SPLIT_FACTOR = 4
#: extern ops that call BLAS on this device
BLAS_OPS = frozenset({"einsum", "gemm", "conv", "conv_input_grad", "conv_kernel_grad"})
#: inputs up to this size have their address remembered by the plan (at most
#: SMALL_INPUTS_KEPT of them, so at most 16 MB of past inputs are kept alive)
SMALL_INPUT_BYTES = 1 << 16
SMALL_INPUTS_KEPT = 256

#: object-cache key -> loaded module: the MODULES_RECENT most recently used ones, plus (weakly)
#: every module a live plan still holds; the rest are released (see ``NativeModule``)
_loaded: ModuleTable = ModuleTable(MODULES_RECENT)


class NativeModule:
    """Object code loaded into its own MCJIT engine, with its kernels as ctypes functions.

    The engine (and the executable pages it owns) is disposed by llvmlite when its last Python
    reference goes.  Each kernel function (a KFUNC: a bare address) holds the engine too, so
    whoever keeps a kernel function (a plan's step closures) keeps its code alive, even after
    the module and the ``_loaded`` table have let go; nothing ever calls freed code."""

    def __init__(self, obj: bytes, names: Sequence[str]) -> None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        tm = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3)
        self.engine = engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        self.nbytes = len(obj)
        self.fns: dict[str, Any] = {}
        for name in names:
            addr = engine.get_function_address(name)
            if not addr:
                raise SymkError(f"internal error: kernel {name} missing from its object code")
            fn = (DFUNC if name.startswith(DRIVER_PREFIX) else KFUNC)(addr)
            # the code at `addr` lives as long as this function object (ctypes function
            # objects take attributes; their stubs declare none)
            fn.engine = engine  # type: ignore[attr-defined]
            self.fns[name] = fn


def build_native(progs: list, label: str, rendered: dict[str, tuple] | None = None,
                 drivers: Sequence[tuple[str, str]] = ()) -> tuple[NativeModule | None, str, str]:
    """Compile (or fetch from the caches) one module holding ``progs`` and the ``drivers``
    ((name, function text) from ``driver_render``): (module, LLVM IR, key).  ``rendered``
    holds kernels already rendered (name -> ``render_kernel`` result)."""
    if not progs and not drivers:
        return None, "", ""
    ir = with_drivers(render_module(progs, rendered) if progs else "", [d[1] for d in drivers])
    key = cache.key_of(ir, target_key())
    names = [p.name for p in progs] + [d[0] for d in drivers]
    mod = load_native(key, names)
    if mod is None:
        obj, dt = compile_object(ir)
        log(1, f"LLVM compiled {len(progs)} kernel(s) and {len(drivers)} driver(s) for "
               f"'{label}' in {dt * 1e3:.1f} ms")
        cache.store(key, obj, {"kernels": names, "target": target_key()})
        mod = _loaded[key] = NativeModule(obj, names)
    return mod, ir, key


def load_native(key: str, names: Sequence[str]) -> NativeModule | None:
    """The module with object-cache key ``key`` if it is loaded or cached, else None."""
    mod = _loaded.get(key)
    if mod is not None:
        return mod
    obj = cache.load(key)
    if obj is None:
        return None
    mod = _loaded[key] = NativeModule(obj, names)
    return mod


@dataclass
class KernelCall:
    """What calling one native kernel needs (from a LoweredKernel, or from a cached plan)."""

    name: str
    nparams: int
    inputs: list[Node]
    outputs: list[Node]
    size_sources: list
    outer: tuple
    out_dims: list
    domain: tuple
    scratch: list
    #: (input, axis, size param or -1, static extent): see ``LoweredKernel.in_checks``
    in_checks: list

    @classmethod
    def of(cls, lk: LoweredKernel) -> KernelCall:
        return cls(lk.program.name, len(lk.program.params), lk.inputs, lk.outputs,
                   list(lk.size_sources), tuple(lk.outer), [list(d) for d in lk.out_dims],
                   tuple(lk.domain), list(lk.scratch or []),
                   [tuple(c) for c in lk.in_checks or []])


@dataclass
class NativePrep:
    """A function's native code: the module's cache key, its kernel names, and the call of
    each kernel step (by step index)."""

    key: str
    names: list[str]
    calls: dict[int, KernelCall]


class CpuPlan(Plan):
    """A Plan whose kernel steps call native code.  ``prep`` (from the plan cache)
    skips lowering and rendering; without it every kernel is lowered, rendered and compiled.
    Runs of native steps are run by native drivers (``symk.runtime.driver``)."""

    def __init__(self, schedule: Schedule, fed: Sequence[Node], label: str = "function",
                 prep: NativePrep | None = None, inplace: frozenset[int] = frozenset()) -> None:
        self.ir = ""
        #: ids of the gemm nodes that may write into their accumulator input (a variable)
        self.inplace = last_readers_ok(schedule, inplace)
        self.native: NativeModule | None = None
        #: id -> (array, address) of the arrays whose addresses are known without numpy
        #: (pooled kernel outputs; a scan loop adds its constants and sequence slices)
        self.known: dict[int, tuple[np.ndarray, int]] = {}
        #: id -> (array, address) of small inputs that are not pooled outputs (variables such
        #: as biases and Keras's optimizer scalars, fed arrays): numpy's ``ctypes`` costs ~1 us
        #: per array and call, which dominated the steps of small models; bounded, see below
        self.small: dict[int, tuple[np.ndarray, int]] = {}
        self.schedule = schedule
        #: step ranges run by one native driver call each (``symk.runtime.driver``)
        self.segments: list[Segment] = []
        want = config.native_driver()
        if prep is not None:
            self.native = load_native(prep.key, prep.names) if prep.names else None
            if prep.names and self.native is None:
                raise cache.Missing(f"object {prep.key[:12]} is no longer cached")
            self.prep = prep
            self.by_step = {id(schedule.steps[i]): c for i, c in prep.calls.items()}
            if want and self.native is not None:  # the same layouts give the same drivers
                self.segments = self._layouts()
                if any(g.name not in self.native.fns for g in self.segments):
                    # cached while SYMK_NATIVE_DRIVER=0: compile again, with the drivers
                    raise cache.Missing(f"object {prep.key[:12]} has no drivers")
        else:
            self.prep = self._prepare(schedule, label, want)
        self.nthreads = num_threads()
        blas = any(s.node.op.name in BLAS_OPS for s in schedule.externs)
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

    def _layouts(self) -> list[Segment]:
        """The segments of this plan's schedule (layouts and driver code, not yet bound)."""
        try:
            return [Segment(self, lo, hi) for lo, hi in build_segments(self)]
        except SymkError as e:  # pragma: no cover - reported; the plan runs step by step
            log(1, f"no native driver: {e}")
            return []

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

    def _prepare(self, schedule: Schedule, label: str, drivers: bool) -> NativePrep:
        """Lower and render every kernel (and, with ``drivers``, the segments' drivers) and
        compile them as one module."""
        calls: dict[int, KernelCall] = {}
        progs: dict[str, Any] = {}
        rendered: dict[str, tuple] = {}
        for i, step in enumerate(schedule.steps):
            if not isinstance(step, Kernel):
                continue
            try:
                lk = lower_kernel(step)
                if lk.program.name not in progs:  # (a kernel that cannot render stays out)
                    rendered[lk.program.name] = render_kernel(lk.program)
            except SymkError as e:  # pragma: no cover - reported, kernel stays interpreted
                log(1, f"kernel {step.name} runs on the reference executor: {e}")
                continue
            calls[i] = KernelCall.of(lk)
            progs.setdefault(lk.program.name, lk.program)
        self.programs = list(progs.values())
        self.by_step = {id(schedule.steps[i]): c for i, c in calls.items()}
        self.segments = self._layouts() if drivers else []
        code = list({g.name: (g.name, g.ir) for g in self.segments}.values())
        key = ""
        try:
            self.native, self.ir, key = build_native(self.programs, label, rendered, code)
        except SymkError as e:  # an LLVM rejection must not cost the user a result
            warnings.warn(f"symk: native code for '{label}' failed ({e}); its kernels run on "
                          "the reference executor (set SYMK_DEBUG=4 to see the LLVM IR)",
                          RuntimeWarning, stacklevel=3)
            self.native, calls, self.by_step, self.segments = None, {}, {}, []
        _debug_dump(label, self.programs, self.ir)
        return NativePrep(key, [p.name for p in self.programs] + [c[0] for c in code], calls)

    def kernel_sources(self, step: Kernel) -> dict[str, str]:
        """Kernel IR text of a native kernel step and its module's LLVM IR (rendered again
        when the plan came from the plan cache)."""
        call = self.by_step.get(id(step))
        if call is None:
            return {}
        if not self.ir:
            progs: dict[str, Program] = {}
            for s in self.schedule.kernels:
                if id(s) in self.by_step:
                    p = lower_kernel(s).program
                    progs.setdefault(p.name, p)
            self.ir = render_module(list(progs.values()))
        return {"kir": lower_kernel(step).program.text(), "llvm_ir": self.ir}

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



def last_readers_ok(schedule: Schedule, candidates: frozenset[int]) -> frozenset[int]:
    """The ``candidates`` (gemm node ids) whose accumulator input, and every view of it, is
    read by no step after the gemm's own: those may overwrite the accumulator in place."""
    if not candidates:
        return frozenset()
    steps = schedule.steps
    reads = [[id(x) for x in (s.inputs if isinstance(s, Kernel) else s.node.inputs)]
             for s in steps]
    ok = set()
    for k, step in enumerate(steps):
        if isinstance(step, Kernel) or id(step.node) not in candidates:
            continue
        alias = {id(step.node.inputs[0])}
        for s in steps:
            if not isinstance(s, Kernel) and s.node.op.may_alias and \
                    id(s.node.inputs[0]) in alias:
                alias.add(id(s.node))
        if not any(x in alias for r in reads[k + 1:] for x in r):
            ok.add(id(step.node))
    return frozenset(ok)


def _debug_dump(label: str, progs: list, ir: str) -> None:
    """SYMK_DEBUG=4 prints the LLVM IR, =5 also the Kernel IR; SYMK_DUMP_DIR gets .kir/.ll in
    the folder the pass pipeline dumped this function's passes to (``dump_folder``)."""
    from symk.config import debug_level

    lvl = debug_level()
    if lvl >= 5:
        for p in progs:
            log(5, f"Kernel IR of '{label}':\n{p.text()}")
    if lvl >= 4 and ir:
        log(4, f"LLVM IR of '{label}':\n{ir}")
    if not progs:
        return
    from symk.passes.pipeline import dump_folder

    d = dump_folder(label, content=ir)
    if d:
        for p in progs:
            with open(os.path.join(d, f"{p.name}.kir"), "w") as f:
                f.write(p.text() + "\n")
        with open(os.path.join(d, "module.ll"), "w") as f:
            f.write(ir)


def split_wanted(plan: CpuPlan, n: int, total: int) -> bool:
    """Whether a kernel of ``n`` outer iterations over ``total`` elements is split across
    threads (see PARALLEL_MIN_ELEMENTS and BLAS_SPLIT_FACTOR)."""
    return plan.nthreads > 1 and n >= 2 and total >= PARALLEL_MIN_ELEMENTS * plan.split_factor


def run_split(plan: CpuPlan, fn: Any, ptr: int, n: int) -> None:
    """Run a kernel (argument block at ``ptr``) over ``[0, n)`` split across the free cores,
    at most the plan's thread count (on the calling thread alone when that is one)."""
    parts = min(threads.kernel_threads(plan.nthreads), n)
    if parts <= 1:
        fn(ptr, 0, n)
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    on_pool(plan.nthreads, lambda lo, hi: fn(ptr, lo, hi), list(zip(bounds, bounds[1:])))


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
