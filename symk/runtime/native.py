"""The ``cpu`` device's compile stage: a Schedule's native code, as one LLVM module.

``compile_native`` lowers every kernel step to Kernel IR (``codegen/lowering``), renders it
as LLVM IR (``codegen/llvm_render``), lays out the runs of native steps as driver segments
(``runtime/driver``: their frames and driver functions, ``codegen/driver_render``), and
compiles the module (``codegen/llvm_compile``), or loads it from the object cache
(``runtime/cache``) when the same IR was compiled before.  Given the ``NativePrep`` of a
plan-cache entry, it skips lowering and rendering and only loads the module.  The result, a
``NativeCode``, is what ``CpuPlan`` runs; the plan itself generates no code.

A loaded module (``NativeModule``) lives as long as something holds one of its kernels.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llvm

from symk import config
from symk.codegen.driver_render import PREFIX as DRIVER_PREFIX
from symk.codegen.driver_render import with_drivers
from symk.codegen.kir import Program
from symk.codegen.llvm_compile import compile_object, target_key
from symk.codegen.llvm_render import render_kernel, render_module
from symk.codegen.lowering import LoweredKernel, lower_kernel
from symk.debug import log
from symk.errors import SymkError
from symk.graph.node import Node
from symk.passes.schedule import Kernel, Schedule
from symk.runtime import cache
from symk.runtime.driver import DFUNC, Segment, build_segments
from symk.runtime.lru import MODULES_RECENT, ModuleTable

#: kernel ABI: ``void kernel(ptr args, i64 lo, i64 hi)``
KFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)

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
    #: size params that must not be 0: see ``LoweredKernel.nonempty``
    nonempty: list = field(default_factory=list)

    @classmethod
    def of(cls, lk: LoweredKernel) -> KernelCall:
        return cls(lk.program.name, len(lk.program.params), lk.inputs, lk.outputs,
                   list(lk.size_sources), tuple(lk.outer), [list(d) for d in lk.out_dims],
                   tuple(lk.domain), list(lk.scratch or []),
                   [tuple(c) for c in lk.in_checks or []], list(lk.nonempty or []))

    def encode(self, pos: Any) -> list[Any]:
        """JSON-able form for a plan-cache template (``pos``: nodes -> their positions)."""
        return [self.name, self.nparams, pos(self.inputs), pos(self.outputs),
                self.size_sources, list(self.outer), self.out_dims, list(self.domain),
                self.scratch, self.in_checks, self.nonempty]

    @classmethod
    def decode(cls, c: list[Any], nodes: Any) -> KernelCall:
        """The call ``encode`` gave ``c`` (``nodes``: positions -> the nodes)."""
        return cls(c[0], c[1], nodes(c[2]), nodes(c[3]), [tuple(x) for x in c[4]],
                   tuple(c[5]), [[tuple(d) for d in dims] for dims in c[6]], tuple(c[7]),
                   [(dt, [tuple(d) for d in dims]) for dt, dims in c[8]],
                   [tuple(x) for x in c[9]], [int(k) for k in c[10]])


@dataclass
class NativePrep:
    """A function's native code as the plan cache keeps it: the module's cache key, its
    function names, and the call of each kernel step (by step index)."""

    key: str
    names: list[str]
    calls: dict[int, KernelCall]

    def encode(self, pos: Any) -> dict[str, Any]:
        return {"key": self.key, "names": self.names,
                "calls": [[i, *c.encode(pos)] for i, c in self.calls.items()]}

    @classmethod
    def decode(cls, d: dict[str, Any], nodes: Any) -> NativePrep:
        return cls(d["key"], list(d["names"]),
                   {c[0]: KernelCall.decode(c[1:], nodes) for c in d["calls"]})


@dataclass
class NativeCode:
    """A schedule's native code, ready to run: what ``CpuPlan`` is built from."""

    prep: NativePrep
    #: the loaded module (None: every kernel runs on the reference executor)
    module: NativeModule | None
    #: id of a kernel step -> its call (kernels the renderer rejected are absent)
    by_step: dict[int, KernelCall]
    #: ids of the gemm nodes that may write into their accumulator input (a variable)
    inplace: frozenset[int]
    #: runs of steps each run by one driver call (laid out; ``Segment.bind`` attaches them)
    segments: list[Segment] = field(default_factory=list)
    #: the module's LLVM IR ("" when it came from the plan cache: see ``kernel_sources``)
    ir: str = ""


def compile_native(schedule: Schedule, label: str = "function",
                   inplace: frozenset[int] = frozenset(),
                   prep: NativePrep | None = None) -> NativeCode:
    """The native code of ``schedule`` (see the module doc).  ``inplace``: the gemm updates
    that may accumulate into their variable; ``prep``: a plan-cache entry's code, loaded
    from the object cache (``cache.Missing`` when it is gone)."""
    inplace = last_readers_ok(schedule, inplace)
    drivers = config.native_driver()
    if prep is None:
        return _generate(schedule, label, inplace, drivers)
    module = load_native(prep.key, prep.names) if prep.names else None
    if prep.names and module is None:
        raise cache.Missing(f"object {prep.key[:12]} is no longer cached")
    by_step = {id(schedule.steps[i]): c for i, c in prep.calls.items()}
    segments = []
    if drivers and module is not None:  # the same layouts give the same drivers
        segments = _layouts(schedule, by_step, inplace)
        if any(g.name not in module.fns for g in segments):
            # cached while SYMK_NATIVE_DRIVER=0: compile again, with the drivers
            raise cache.Missing(f"object {prep.key[:12]} has no drivers")
    return NativeCode(prep, module, by_step, inplace, segments)


def _generate(schedule: Schedule, label: str, inplace: frozenset[int],
              drivers: bool) -> NativeCode:
    """Lower and render every kernel (and, with ``drivers``, the segments' drivers) and
    compile them as one module."""
    calls: dict[int, KernelCall] = {}
    progs: dict[str, Program] = {}
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
    programs = list(progs.values())
    by_step = {id(schedule.steps[i]): c for i, c in calls.items()}
    segments = _layouts(schedule, by_step, inplace) if drivers else []
    code = list({g.name: (g.name, g.ir) for g in segments}.values())
    key, ir, module = "", "", None
    try:
        module, ir, key = build_native(programs, label, rendered, code)
    except SymkError as e:  # an LLVM rejection must not cost the user a result
        warnings.warn(f"symk: native code for '{label}' failed ({e}); its kernels run on "
                      "the reference executor (set SYMK_DEBUG=4 to see the LLVM IR)",
                      RuntimeWarning, stacklevel=4)
        calls, by_step, segments = {}, {}, []
    _debug_dump(label, programs, ir)
    prep = NativePrep(key, [p.name for p in programs] + [c[0] for c in code], calls)
    return NativeCode(prep, module, by_step, inplace, segments, ir)


def _layouts(schedule: Schedule, by_step: dict[int, KernelCall],
             inplace: frozenset[int]) -> list[Segment]:
    """The driver segments of ``schedule`` (layouts and driver code, not yet bound)."""
    try:
        return [Segment(schedule, lo, hi, by_step, inplace)
                for lo, hi in build_segments(schedule, by_step)]
    except SymkError as e:  # pragma: no cover - reported; the plan runs step by step
        log(1, f"no native driver: {e}")
        return []


def kernel_sources(code: NativeCode, schedule: Schedule, step: Kernel) -> dict[str, str]:
    """Kernel IR text of a native kernel step and its module's LLVM IR (rendered again when
    the code came from the plan cache)."""
    if id(step) not in code.by_step:
        return {}
    if not code.ir:
        progs: dict[str, Program] = {}
        for s in schedule.kernels:
            if id(s) in code.by_step:
                p = lower_kernel(s).program
                progs.setdefault(p.name, p)
        code.ir = render_module(list(progs.values()))
    return {"kir": lower_kernel(step).program.text(), "llvm_ir": code.ir}


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
    lvl = config.debug_level()
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
