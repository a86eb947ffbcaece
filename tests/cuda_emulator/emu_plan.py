"""Running symk schedules with their fused kernels rendered as CUDA C and executed by the CPU
emulator: ``EmuSession`` collects the kernels of many functions, compiles them with one g++ run
(``compile``), then ``run`` executes a function's plan (externs and views by the reference
executor, kernels by the emulator) under a thread schedule ("forward" or "reverse").  Kernels
the renderer rejects (float16) run on the reference executor, as the cuda runtime runs them on
the host.  With ``localize`` set, every emulated kernel is also run on the
reference executor and the kernels whose outputs disagree are appended to ``suspects`` (to name
the kernel behind a wrong result).

Kernels are launched the way the cuda runtime launches them: same argument order (inputs,
outputs, scratch buffers, int64 sizes) and the launch configuration of ``cuda_launch``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.codegen.cuda_launch import launch_config
from symk.codegen.cuda_render import CudaKernel, module_source, render_cuda
from symk.codegen.lowering import lower_kernel, output_shapes, scratch_buffers
from symk.errors import SymkError
from symk.graph.node import Node
from symk.passes.pipeline import optimize
from symk.passes.schedule import Kernel
from symk.runtime.interp import InterpPlan
from symk.runtime.shape_check import counter_args, kernel_sizes_checked
from tests.cuda_emulator.cpu_emulate import compile_kernels, launch


def _poison(dt: np.dtype) -> Any:
    return 12345.678 if dt.kind == "f" else (True if dt.kind == "b" else 77)


def _agrees(got: np.ndarray, want: Any) -> bool:
    """Loosely equal (a diagnostic: the test compares the function's outputs exactly)."""
    want = np.asarray(want)
    if got.shape != want.shape:
        return False
    if got.dtype.kind == "f":
        return bool(np.allclose(got, want.astype(got.dtype), rtol=1e-3, atol=1e-5,
                                equal_nan=True))
    return bool(np.array_equal(got, want))


class EmuSession:
    def __init__(self) -> None:
        self.kernels: dict[str, CudaKernel] = {}
        self.lib = None
        self.schedule = "forward"
        self.launches = 0
        #: kernel steps that ran on the reference executor (the renderer rejected them)
        self.host_kernels: set[str] = set()
        self.localize = False
        #: with ``localize``: the emulated kernels whose outputs differed from the reference's
        self.suspects: list[str] = []

    def compile(self) -> None:
        self.lib = compile_kernels(module_source(list(self.kernels.values())))

    def function(self, inputs: Sequence[Node], outputs: Sequence[Node]) -> EmuFunction:
        return EmuFunction(self, inputs, outputs)


class EmuPlan(InterpPlan):
    def __init__(self, schedule, fed, session: EmuSession) -> None:
        self.session = session
        #: the CUDA kernels this plan launches, in schedule order
        self.kernel_names: list[str] = []
        super().__init__(schedule, fed)

    def kernel_step(self, k: Kernel) -> Callable[[list[Any]], None]:
        sess = self.session
        try:
            lk = lower_kernel(k)
            ck = sess.kernels.get(lk.program.name) or render_cuda(lk.program)
        except SymkError:
            sess.host_kernels.add(k.name)
            return super().kernel_step(k)
        sess.kernels.setdefault(ck.name, ck)
        self.kernel_names.append(ck.name)
        in_slots = [self.slot[id(x)] for x in lk.inputs]
        in_dt = [np.dtype(x.dtype) for x in lk.inputs]
        out_slots = [self.slot[id(o)] for o in lk.outputs]
        out_dt = [np.dtype(o.dtype) for o in lk.outputs]
        ref: list[Callable[[list[Any]], None]] = []  # the reference step, made when localizing

        def run(vals: list[Any]) -> None:
            ins = [np.ascontiguousarray(vals[s], dtype=d) for s, d in zip(in_slots, in_dt)]
            sizes = [int(d) for d in kernel_sizes_checked(lk, [a.shape for a in ins], k.nodes)]
            calls = counter_args(self, lk, k.nodes)
            outs = [np.full(sh, _poison(d), d) for sh, d in zip(output_shapes(lk, sizes),
                                                                 out_dt)]
            grid, block = launch_config(ck, sizes)
            args = [*ins, *outs, *scratch_buffers(lk, sizes),
                    *[np.int64(s) for s in sizes + calls]]
            launch(sess.lib, ck.name, grid, block, args, schedule=sess.schedule,
                   fibers=ck.collective)
            sess.launches += 1
            if sess.localize:
                ref[:] = ref or [InterpPlan.kernel_step(self, k)]
                want = list(vals)
                ref[0](want)
                if not all(_agrees(o, want[s]) for s, o in zip(out_slots, outs)):
                    sess.suspects.append(ck.name)
            for s, o in zip(out_slots, outs):
                vals[s] = o.reshape(o.shape)
        return run


class EmuFunction:
    def __init__(self, session: EmuSession, inputs: Sequence[Node],
                 outputs: Sequence[Node]) -> None:
        opt = optimize(list(outputs))
        self.plan = EmuPlan(opt.schedule, list(inputs), session)
        self.slots = [self.plan.slot[id(r)] for r in opt.roots]
        self.kernel_names = self.plan.kernel_names

    def __call__(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        vals = self.plan.run([np.asarray(v) for v in feeds])
        return [np.asarray(vals[s]) for s in self.slots]
