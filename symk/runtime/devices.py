"""The device table: the one place that knows what each device (``cpu``, ``interp``, ``cuda``)
is made of.

A ``Device`` names its plan class (the executor of a Schedule), how a schedule is compiled to
the device's code (fresh, or from the part of it a plan-cache template keeps), whether its plans go
through the plan cache and the target part of their key, the check that the device can run here
(a ``DeviceError`` saying what is missing), and how a call's values come back to the host and
are stored in the variables.  ``CompiledFunction`` only looks entries up; nothing else in the
runtime switches on a device name, so adding a device is adding an entry (``register_device``).

Code living elsewhere is named ``"module:attribute"`` and imported on first use, so importing
symk imports no executor, LLVM or CuPy; tests may give the objects themselves.  The names of
the built-in devices are ``symk.config._DEVICES`` (config never imports the runtime); a test
checks that the table and that tuple agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from symk import config
from symk.errors import ArgumentError

#: (schedule, label, ids of the gemm updates that may accumulate into their variable, the
#: cacheable part of an earlier compile from the plan cache or None) -> the device's code
Compiler = Callable[[Any, str, frozenset[int], Any], Any]


def resolve(ref: Any) -> Any:
    """The object a ``"module:attribute"`` string names (imported now), or ``ref`` itself."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Device:
    """One device of the runtime; see the module doc."""

    name: str
    #: the executor of a Schedule: ``"module:Class"`` or the class
    plan: str | type
    #: ``"module:function"`` compiling a schedule to the device's code (see ``Compiler``),
    #: which the plan class then takes as its third argument; None: the plan runs the
    #: schedule as it is (``plan(schedule, feeds)``)
    compile: str | Compiler | None = None
    #: ``"module:function"`` raising a DeviceError when the device cannot run here (None:
    #: always available); called once per compiled function
    require: str | Callable[[], Any] | None = None
    #: whether plans go through the plan cache (keyed by the device name and ``cache_target``)
    plan_cache: bool = True
    #: ``"module:function"`` giving the target part of the plan-cache key (None: "")
    cache_target: str | Callable[[], str] | None = None
    #: whether the device's code has a part plan-cache templates keep (``code.prep``, e.g.
    #: the cpu's ``NativePrep``), which ``compile`` then takes back instead of generating code
    native_prep: bool = False
    #: ``"module:function"`` ``(fn, plan, values) -> outputs`` returning a call's outputs on
    #: the host and storing its updates; None: the values are numpy arrays, returned and
    #: stored as they are (``CompiledFunction._call``)
    finish: str | Callable[..., list[Any]] | None = None
    #: ``"module:function"`` moving a new variable's numpy value to where the device keeps
    #: variables (None: variables stay numpy arrays)
    to_device: str | Callable[[Any], Any] | None = None
    #: ``"module:function"`` ``(kernels, programs) -> source`` rendering a schedule's Kernel IR
    #: programs as this device's code for ``symk.compile(..., build=False)`` (it also fills each
    #: ``KernelCode`` of ``kernels``); None: no code listing (the reference executor)
    code: str | Callable[[list[Any], list[Any]], str] | None = None
    #: modules registering native implementations of extern ops for this device's plans
    #: (``symk.runtime.externs``), imported before its plan class is used; they build on the
    #: plan's module, which therefore does not import them
    extern_modules: tuple[str, ...] = ()

    def plan_class(self) -> type:
        for module in self.extern_modules:
            importlib.import_module(module)
        return resolve(self.plan)

    def check(self) -> None:
        """Raise a DeviceError saying what is missing when the device cannot run here."""
        if self.require is not None:
            resolve(self.require)()

    def target_key(self) -> str:
        return "" if self.cache_target is None else resolve(self.cache_target)()

    def finisher(self) -> Callable[..., list[Any]] | None:
        return None if self.finish is None else resolve(self.finish)

    def compile_code(self, schedule: Any, label: str, inplace: frozenset[int] = frozenset(),
                     prep: Any = None) -> Any:
        """The device's code for ``schedule`` (None for a device that compiles nothing)."""
        if self.compile is None:
            return None
        return resolve(self.compile)(schedule, label, inplace, prep)

    def new_plan(self, schedule: Any, feeds: Sequence[Any], code: Any = None) -> Any:
        """The device's executor of ``schedule`` running ``code`` (from ``compile_code``)."""
        cls = self.plan_class()
        return cls(schedule, feeds) if self.compile is None else cls(schedule, feeds, code)


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cpu", "symk.runtime.cpu:CpuPlan", compile="symk.runtime.native:compile_native",
           cache_target="symk.codegen.llvm_compile:target_key", native_prep=True,
           code="symk.codegen.llvm_render:code_listing",
           extern_modules=("symk.runtime.conv_cpu", "symk.runtime.scan_cpu",
                           "symk.runtime.sparse_cpu")),
    Device("interp", "symk.runtime.interp:InterpPlan"),
    Device("cuda", "symk.runtime.cuda:CudaPlan", compile="symk.runtime.cuda:compile_cuda",
           require="symk.runtime.cuda:require_cuda", plan_cache=False,
           finish="symk.runtime.cuda:finish", to_device="symk.runtime.cuda:to_device",
           code="symk.codegen.cuda_launch:code_listing"),
)}


#: the devices symk ships (``register_device`` never replaces them)
BUILTIN = frozenset(DEVICES)


def register_device(dev: Device) -> None:
    """Add a device to the table and to the names ``config`` accepts (tests, extensions)."""
    if dev.name in BUILTIN:
        raise ArgumentError(f"register_device: {dev.name!r} is a built-in device")
    DEVICES[dev.name] = dev
    config.add_device_name(dev.name)


def unregister_device(name: str) -> None:
    """Remove a device added by ``register_device`` (the default device becomes ``cpu`` if
    it was that one)."""
    if name in BUILTIN:
        raise ArgumentError(f"unregister_device: {name!r} is a built-in device")
    DEVICES.pop(name, None)
    config.remove_device_name(name)
