"""The device table: the one place that knows what each device (``cpu``, ``interp``, ``cuda``)
is made of.

A ``Device`` names its plan class (the executor of a Schedule), how a plan is built (fresh from
an optimized schedule, or from a plan-cache template and its native prep), whether its plans go
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

#: (plan class, schedule, fed placeholders, label, native prep from the plan cache or None,
#: () -> ids of the gemm updates that may accumulate into their variable) -> plan
PlanBuilder = Callable[[type, Any, Sequence[Any], str, Any, Callable[[], frozenset[int]]], Any]


def resolve(ref: Any) -> Any:
    """The object a ``"module:attribute"`` string names (imported now), or ``ref`` itself."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def schedule_plan(cls: type, schedule: Any, feeds: Sequence[Any], label: str, prep: Any,
                  inplace: Callable[[], frozenset[int]]) -> Any:
    """``cls(schedule, feeds)``: a plan that needs nothing but the schedule (``interp``)."""
    return cls(schedule, feeds)


def labelled_plan(cls: type, schedule: Any, feeds: Sequence[Any], label: str, prep: Any,
                  inplace: Callable[[], frozenset[int]]) -> Any:
    """``cls(schedule, feeds, label)``: a plan compiling its kernels fresh (``cuda``)."""
    return cls(schedule, feeds, label)


def native_plan(cls: type, schedule: Any, feeds: Sequence[Any], label: str, prep: Any,
                inplace: Callable[[], frozenset[int]]) -> Any:
    """``cls(schedule, feeds, label, prep=prep, inplace=...)``: a native plan (``cpu``) that
    reuses the plan cache's prep when given one and may accumulate gemms in place."""
    return cls(schedule, feeds, label, prep=prep, inplace=inplace())


@dataclass(frozen=True)
class Device:
    """One device of the runtime; see the module doc."""

    name: str
    #: the executor of a Schedule: ``"module:Class"`` or the class
    plan: str | type
    #: how a plan is built from the plan class (see ``PlanBuilder``)
    build: PlanBuilder = schedule_plan
    #: ``"module:function"`` raising a DeviceError when the device cannot run here (None:
    #: always available); called once per compiled function
    require: str | Callable[[], Any] | None = None
    #: whether plans go through the plan cache (keyed by the device name and ``cache_target``)
    plan_cache: bool = True
    #: ``"module:function"`` giving the target part of the plan-cache key (None: "")
    cache_target: str | Callable[[], str] | None = None
    #: whether plans carry a ``NativePrep`` (``plan.prep``) that plan-cache templates keep
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

    def new_plan(self, schedule: Any, feeds: Sequence[Any], label: str, prep: Any = None,
                 inplace: Callable[[], frozenset[int]] = frozenset) -> Any:
        return self.build(self.plan_class(), schedule, feeds, label, prep, inplace)


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cpu", "symk.runtime.cpu:CpuPlan", build=native_plan,
           cache_target="symk.codegen.llvm_compile:target_key", native_prep=True,
           code="symk.codegen.llvm_render:code_listing",
           extern_modules=("symk.runtime.conv_cpu", "symk.runtime.scan_cpu",
                           "symk.runtime.sparse_cpu")),
    Device("interp", "symk.runtime.interp:InterpPlan"),
    Device("cuda", "symk.runtime.cuda:CudaPlan", build=labelled_plan,
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
