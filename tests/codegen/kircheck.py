"""Helpers for the codegen tests: run every fused Kernel of a graph's Schedule through the
Kernel-IR interpreter and compare it with the reference executor, and compare values the way a
compiled target must match the reference (NaN positions, infinities, ulps)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from symk.codegen.kir_interp import run_program
from symk.codegen.lowering import (
    LoweredKernel,
    kernel_sizes,
    lower_kernel,
    outer_extent,
    output_shapes,
    scratch_buffers,
)
from symk.graph.node import Node
from symk.passes.pipeline import optimize
from symk.passes.schedule import Kernel, Schedule
from symk.runtime.interp import InterpPlan
from tests.compare import assert_match  # noqa: F401  (re-exported)


def reference_values(schedule: Schedule, fed: Sequence[Node],
                     feeds: Sequence[np.ndarray]) -> tuple[InterpPlan, list]:
    """Run ``schedule`` with the reference executor keeping every value (nothing freed)."""
    keep = dataclasses.replace(schedule, frees=[])
    plan = InterpPlan(keep, list(fed))
    plan.steps = [(run, []) for run, _ in plan.steps]
    return plan, plan.run([np.asarray(v) for v in feeds])


def run_lowered(lk: LoweredKernel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Execute a lowered kernel with the Kernel-IR interpreter (one call over the whole
    parallel range, like the runtime does without threads)."""
    ins = [np.ascontiguousarray(a, dtype=x.dtype) for a, x in zip(inputs, lk.inputs)]
    sizes = kernel_sizes(lk, ins)
    outs = [np.full(s, _poison(o.dtype), dtype=o.dtype)
            for s, o in zip(output_shapes(lk, sizes), lk.outputs)]
    run_program(lk.program, [*ins, *outs, *scratch_buffers(lk, sizes)], sizes, 0,
                outer_extent(lk, sizes))
    return outs


def _poison(dtype: str):
    """A fill value that no correct kernel leaves behind unnoticed (every element written)."""
    d = np.dtype(dtype)
    if d.kind == "f":
        return 12345.678
    if d.kind == "b":
        return True
    return 77


def check_kernels(roots: Sequence[Node], feeds: dict[Node, np.ndarray], rtol: float = 1e-5,
                  atol: float = 1e-6, what: str = "") -> int:
    """Lower every Kernel of ``roots``' schedule, run it through the interpreter on the
    reference executor's inputs and compare its outputs with the reference's values.
    Returns the number of kernels checked."""
    opt = optimize(list(roots))
    fed = list(feeds)
    plan, vals = reference_values(opt.schedule, fed, list(feeds.values()))
    n = 0
    for step in opt.schedule.steps:
        if not isinstance(step, Kernel):
            continue
        lk = lower_kernel(step)
        got = run_lowered(lk, [vals[plan.slot[id(x)]] for x in lk.inputs])
        for o, g in zip(lk.outputs, got):
            want = np.asarray(vals[plan.slot[id(o)]])
            assert_match(g, want, rtol=rtol, atol=atol,
                         what=f"{what} kernel {step.name} {[m.op.name for m in step.nodes]} "
                              f"output {o.op.name}")
        n += 1
    return n


def ulp_diff(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in units of the last place (of ``want``'s dtype) between finite values."""
    got, want = np.asarray(got), np.asarray(want)
    sp = np.spacing(np.abs(want).astype(want.dtype))
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / sp.astype(np.float64)


def native_kernels(lks: Sequence[LoweredKernel], label: str = "test"):
    """Compile the distinct programs of ``lks`` as one LLVM module; returns name -> function."""
    from symk.runtime.native import build_native

    progs = {lk.program.name: lk.program for lk in lks}
    mod, _, _ = build_native(list(progs.values()), label)
    return mod.fns


def run_native(lk: LoweredKernel, fn, inputs: Sequence[np.ndarray],
               chunks: Sequence[int] | None = None) -> list[np.ndarray]:
    """Call a compiled kernel the way the cpu runtime does; ``chunks`` splits the parallel
    range at the given points into separate calls (like the thread pool does)."""
    ins = [np.ascontiguousarray(a, dtype=x.dtype) for a, x in zip(inputs, lk.inputs)]
    sizes = kernel_sizes(lk, ins)
    outs = [np.full(s, _poison(o.dtype), dtype=o.dtype)
            for s, o in zip(output_shapes(lk, sizes), lk.outputs)]
    scratch = scratch_buffers(lk, sizes)
    args = np.array([a.ctypes.data for a in [*ins, *outs, *scratch]] + list(sizes),
                    dtype=np.int64)
    n = outer_extent(lk, sizes)
    bounds = [0, *(c for c in (chunks or []) if 0 < c < n), n]
    for lo, hi in zip(bounds, bounds[1:]):
        fn(args.ctypes.data, lo, hi)
    return outs
