"""``symk.compile`` (this module is ``symk.compiler``): the public entry point to compilation.

``symk.compile(inputs, outputs, updates=None, device=None, build=True)`` is ``K.function``
(``device=None`` is the default device).  With ``build=False`` nothing is compiled or run and
no device is touched: it returns a ``CodePlan`` holding the optimized schedule and, for each
fused kernel, its name, Kernel IR, generated code (CUDA C for ``device="cuda"``, LLVM IR for
``"cpu"``) and launch configuration -- so CUDA code can be inspected on a machine without a GPU
or CuPy::

    plan = symk.compile([x], [K.softmax(x)], device="cuda", build=False)
    print(plan.kernels[0].source, plan.kernels[0].launch)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symk import config
from symk.errors import ArgumentError


@dataclass
class KernelCode:
    name: str
    #: the Kernel IR listing
    kir: str
    #: CUDA C of this kernel (cuda), or None
    source: str | None = None
    #: CUDA: "thread" | "row" | "serial" (how threads map to the loops)
    mode: str | None = None
    #: the launch rule in words (CUDA)
    launch: str | None = None
    #: (grid, block) on the default device properties when every size is static (CUDA)
    grid_block: tuple[int, int] | None = None


@dataclass
class CodePlan:
    device: str
    #: the optimized schedule's steps, e.g. ["kernel E_4_8_ab12", "extern einsum"]
    steps: list[str] = field(default_factory=list)
    kernels: list[KernelCode] = field(default_factory=list)
    #: the whole compilation unit (CUDA C with its prelude, or the LLVM module)
    source: str = ""

    def __str__(self) -> str:
        lines = [f"symk plan for device {self.device}: {len(self.kernels)} kernel(s)"]
        lines += [f"  {s}" for s in self.steps]
        for k in self.kernels:
            lines.append(f"kernel {k.name}: {k.mode or ''} {k.launch or ''}".rstrip())
        return "\n".join(lines)


def compile(inputs: Any, outputs: Any, updates: Any = None, device: str | None = None,
            build: bool = True, **kwargs: Any) -> Any:
    """Compile a function of ``inputs`` (placeholders) to ``outputs``; see the module doc."""
    from symk.backend import _function

    device = config.check_device(device, "symk.compile")
    if build:
        return _function.function(inputs, outputs, updates=updates, device=device, **kwargs)
    return _code_plan(outputs, updates, device)


def _code_plan(outputs: Any, updates: Any, device: str) -> CodePlan:
    from symk.backend._function import _normalize_updates
    from symk.codegen.lowering import lower_kernel
    from symk.graph.tensor import Tensor
    from symk.passes.pipeline import optimize
    from symk.passes.schedule import Kernel

    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    roots = []
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise ArgumentError(f"symk.compile: output {i} is {type(o).__name__}, not a symk "
                                "tensor")
        roots.append(o.node)
    roots += [v for _, v in _normalize_updates(updates)]
    opt = optimize(roots, name="compile")
    plan = CodePlan(device)
    progs = []
    for step in opt.schedule.steps:
        if isinstance(step, Kernel):
            plan.steps.append(f"kernel {step.name}")
            lk = lower_kernel(step)
            progs.append(lk.program)
            plan.kernels.append(KernelCode(step.name, lk.program.text()))
        else:
            plan.steps.append(f"{type(step).__name__.lower()} {step.node.op.name}")
    from symk.runtime.devices import DEVICES, resolve

    code = DEVICES[device].code
    if code is not None:
        plan.source = resolve(code)(plan.kernels, progs)
    return plan
