"""The ``cuda`` device: fused kernels rendered as CUDA C (``codegen/cuda_render``), compiled
with NVRTC through CuPy (one ``cupy.RawModule`` per function, cached by CuPy by source) and
launched with the configuration of ``codegen/cuda_launch``; matmul (``einsum`` that is a matrix
product) through cuBLAS with ``cupy.matmul``.

Data stays on the device: fed inputs are copied once per call, intermediates are CuPy arrays,
variables hold CuPy arrays once a cuda function updated them (or when created with
``K.variable`` while the default device is cuda), and only the outputs are copied back.  Extern
ops without a CuPy path (gathers, scans, sorting, ...) run their numpy reference on the host:
their inputs are copied to the host and the result back (a documented round trip).  Kernels
the renderer rejects (float16) run the same way on the reference executor.

``require_cuda()`` raises a ``DeviceError`` naming exactly what is missing: CuPy, the NVRTC
library, a driver (CuPy's ``cudaErrorInsufficientDriver`` on the first device call) or a device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from symk.codegen.cuda_launch import DeviceProps, launch_config
from symk.codegen.cuda_render import CudaKernel, module_source, render_cuda
from symk.codegen.lowering import LoweredKernel, lower_kernel
from symk.debug import log
from symk.errors import DeviceError, SymkError
from symk.graph.node import Node
from symk.passes.schedule import Kernel, Schedule
from symk.runtime.plan import GroupOp, Plan
from symk.runtime.shape_check import counter_args, kernel_sizes_checked

_INSTALL = "install it with: pip install 'symk[cuda]' (cupy-cuda13x and nvidia-cuda-nvrtc)"


@functools.cache
def _probe() -> tuple[Any, DeviceProps] | str:
    try:
        import cupy
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken CUDA library
        return f"CuPy is not installed ({type(e).__name__}: {e}); {_INSTALL}"
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001
        return (f"the NVRTC library is missing ({type(e).__name__}: {e}); install "
                "nvidia-cuda-nvrtc matching your CuPy (e.g. nvidia-cuda-nvrtc==13.0.*)")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CUDARuntimeError
        msg = str(e)
        if "InsufficientDriver" in msg or "NoDevice" not in msg:
            return (f"no usable NVIDIA driver ({msg}); install the NVIDIA driver for a "
                    "CUDA 13 capable GPU")
        return f"no CUDA device ({msg})"
    if n < 1:
        return "no CUDA device: the driver reports 0 GPUs"
    dev = cupy.cuda.Device()
    attrs = dev.attributes
    props = DeviceProps(name=cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode(),
                        sm_count=int(attrs["MultiProcessorCount"]),
                        max_threads=int(attrs["MaxThreadsPerBlock"]),
                        compute_capability=str(dev.compute_capability))
    return cupy, props


def require_cuda() -> tuple[Any, DeviceProps]:
    """(the cupy module, the current device's properties), or a DeviceError saying what is
    missing."""
    r = _probe()
    if isinstance(r, str):
        raise DeviceError(f"device 'cuda' is not available: {r}. The 'cpu' device works "
                          "without a GPU.")
    return r


def to_host(a: Any) -> np.ndarray:
    """A numpy array for a numpy or CuPy array (a copy from the device)."""
    return a if isinstance(a, np.ndarray) else a.get()


def to_device(a: Any) -> Any:
    cupy, _ = require_cuda()
    return cupy.asarray(a)


def _cupy_matmul(node: Node) -> Callable | None:
    """einsum nodes that are matrix products: the cpu plan (views + one matmul) with
    ``cupy.matmul`` (cuBLAS)."""
    from symk.runtime.externs import matmul_plan

    cupy, _ = require_cuda()
    plan = matmul_plan(node, matmul=cupy.matmul)
    if plan is None:
        return None

    def run(a: Any, b: Any) -> Any:
        return plan(cupy.asarray(a), cupy.asarray(b))
    return run


def _cupy_gemm(node: Node) -> Callable | None:
    """gemm nodes: ``beta * c + alpha * (a @ b)`` with ``cupy.matmul`` (cuBLAS)."""
    from symk.runtime.externs import gemm_plan

    cupy, _ = require_cuda()
    plan = gemm_plan(node, matmul=cupy.matmul)
    if plan is None:
        return None

    def run(*args: Any) -> Any:  # c, a, b, alpha, beta
        return plan(*[cupy.asarray(x) for x in args])
    return run


def _cupy_shape_read(node: Node) -> Callable | None:
    """shape_of / count: read the device array's shape, never copy its data to the host."""
    cupy, _ = require_cuda()
    ref, attrs = node.op.ref, dict(node.attrs)
    return lambda x: cupy.asarray(ref(x, **attrs))


#: op name -> factory (node) -> callable on CuPy arrays, or None for the host round trip
CUDA_EXTERNS: dict[str, Callable[[Node], Callable | None]] = {
    "einsum": _cupy_matmul, "gemm": _cupy_gemm, "shape_of": _cupy_shape_read,
    "count": _cupy_shape_read}


@dataclass
class CudaCode:
    """A schedule's CUDA code: each kernel step's lowering, the rendered kernels, and the
    module NVRTC compiled from their source (None: no kernel renders)."""

    lowered: dict[int, LoweredKernel]
    rendered: dict[str, CudaKernel]
    source: str
    module: Any


def compile_cuda(schedule: Schedule, label: str = "function",
                 inplace: frozenset[int] = frozenset(), prep: Any = None) -> CudaCode:
    """Lower and render every kernel step of ``schedule`` as CUDA C and compile them as one
    ``cupy.RawModule`` (the cuda device's compile stage; ``inplace``/``prep`` are the cpu's).
    A kernel the renderer rejects runs on the host reference executor."""
    cupy, _ = require_cuda()
    lowered: dict[int, LoweredKernel] = {}
    rendered: dict[str, CudaKernel] = {}
    for step in schedule.steps:
        if isinstance(step, Kernel):
            try:
                lk = lower_kernel(step)
                ck = rendered.get(lk.program.name) or render_cuda(lk.program)
            except SymkError as e:
                log(1, f"kernel {step.name} runs on the host reference executor: {e}")
                continue
            lowered[id(step)] = lk
            rendered[ck.name] = ck
    source = module_source(list(rendered.values())) if rendered else ""
    module = cupy.RawModule(code=source, options=("--std=c++17",)) if source else None
    log(4, f"CUDA source of '{label}':\n{source}")
    return CudaCode(lowered, rendered, source, module)


class CudaPlan(Plan):
    """A Plan whose values are CuPy arrays and whose kernel steps launch the CUDA kernels of
    the schedule's ``CudaCode`` (``compile_cuda``)."""

    def __init__(self, schedule: Schedule, fed: Sequence[Node], code: CudaCode) -> None:
        self.cupy, self.props = require_cuda()
        self.lowered, self.rendered = code.lowered, code.rendered
        self.source, self.module = code.source, code.module
        super().__init__(schedule, fed)

    def run(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        cp = self.cupy
        return super().run([cp.asarray(f) for f in feeds])

    def node_step(self, n: Node) -> Callable[[list[Any]], None]:
        factory = CUDA_EXTERNS.get(n.op.name)
        fast = factory(n) if factory is not None else None
        i = self.slot[id(n)]
        ins = [self.slot[id(x)] for x in n.inputs]
        if fast is None and n.op.any_array:  # its reference runs on device arrays (NCCL)
            op, attrs, cp = n.op, n.attrs, self.cupy

            def fast(*args: Any) -> Any:
                return op.ref(*[cp.asarray(a) for a in args], **attrs)
        if fast is not None:
            self.n_ops += 1

            def run(vals: list[Any]) -> None:
                vals[i] = fast(*[vals[j] for j in ins])
            return run
        host = super().node_step(n)  # the numpy reference, on host copies
        cp = self.cupy

        def round_trip(vals: list[Any]) -> None:
            saved = [vals[j] for j in ins]
            for j in ins:
                vals[j] = to_host(vals[j])
            host(vals)
            for j, v in zip(ins, saved):
                vals[j] = v
            vals[i] = cp.asarray(vals[i])
        return round_trip

    def group_step(self, nodes: list[Node]) -> Callable[[list[Any]], None]:
        """Collectives (``allreduce_group``) take and give device arrays: their communicator
        reduces them with NCCL, or stages them through the host; other groups as on host."""
        if not nodes[0].op.any_array:
            return super().group_step(nodes)
        op, cp = cast(GroupOp, nodes[0].op), self.cupy
        outs = [self.slot[id(x)] for x in nodes]
        ins = [self.slot[id(x)] for x in nodes[0].inputs]
        self.n_ops += 1

        def run(vals: list[Any]) -> None:
            vs = op.ref_group(nodes, *[cp.asarray(vals[j]) for j in ins])
            for i, v in zip(outs, vs):
                vals[i] = v
        return run

    def kernel_step(self, k: Kernel) -> Callable[[list[Any]], None]:
        lk = self.lowered.get(id(k))
        if lk is None:
            return self._host_kernel(k)
        ck = self.rendered[lk.program.name]
        assert self.module is not None  # it holds every rendered kernel
        fn = self.module.get_function(ck.name)
        cp = self.cupy
        in_slots = [self.slot[id(x)] for x in lk.inputs]
        in_dt = [np.dtype(x.dtype) for x in lk.inputs]
        out_slots = [self.slot[id(o)] for o in lk.outputs]
        out_dt = [np.dtype(o.dtype) for o in lk.outputs]
        props = self.props

        def run(vals: list[Any]) -> None:
            ins = [cp.ascontiguousarray(cp.asarray(vals[s], dtype=d))
                   for s, d in zip(in_slots, in_dt)]
            sizes = [int(d) for d in kernel_sizes_checked(lk, [a.shape for a in ins], k.nodes)]
            calls = counter_args(self, lk, k.nodes)
            outs = [cp.empty(tuple(d if d is not None else sizes[j] for d, j in dims), dt)
                    for dims, dt in zip(lk.out_dims, out_dt)]
            scratch = [cp.empty(tuple(d if d is not None else sizes[j] for d, j in dims), dt)
                       for dt, dims in (lk.scratch or [])]
            grid, block = launch_config(ck, sizes, props)
            fn((grid,), (block,), (*ins, *outs, *scratch,
                                   *[np.int64(s) for s in sizes + calls]))
            for s, o in zip(out_slots, outs):
                vals[s] = o
        return run

    def _host_kernel(self, k: Kernel) -> Callable[[list[Any]], None]:
        parts = [super(CudaPlan, self).node_step(n) for n in k.nodes]
        ext = [self.slot[id(x)] for x in k.inputs]
        outs = [self.slot[id(o)] for o in k.outputs]
        cp = self.cupy

        def run(vals: list[Any]) -> None:
            saved = [vals[j] for j in ext]
            for j in ext:
                vals[j] = to_host(vals[j])
            for p in parts:
                p(vals)
            for j, v in zip(ext, saved):
                vals[j] = v
            for j in outs:
                vals[j] = cp.asarray(vals[j])
        return run

    def kernel_sources(self, step: Kernel) -> dict[str, Any]:
        lk = self.lowered.get(id(step))
        if lk is None:
            return {}
        ck = self.rendered[lk.program.name]
        return {"kir": lk.program.text(), "cuda_source": ck.source, "mode": ck.mode}


def finish(fn: Any, plan: Any, vals: list[Any]) -> list[np.ndarray]:
    """A cuda call's outputs copied to the host; its updated variables keep device (CuPy)
    arrays (``Device.finish`` of the cuda device, called by ``CompiledFunction._call``)."""
    import cupy

    outs = [np.array(cupy.asnumpy(vals[s])) for s in plan.out_slots]
    new = [cupy.asarray(vals[s]) for s in plan.upd_slots]  # all computed before any write
    fn.check_update_shapes(plan, new)
    for (var, _), v, leaf in zip(fn.updates, new, plan.upd_leaf):
        if leaf or v.dtype != var.value.dtype:
            v = cupy.array(v, dtype=var.value.dtype, copy=True)
        var.value = v
    return outs
