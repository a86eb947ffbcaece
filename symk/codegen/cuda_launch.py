"""Launch configuration of rendered CUDA kernels: grid and block sizes from a kernel's launch
description (``CudaKernel.mode/work/inner``), its runtime sizes and the device's properties.

- thread mode: 256-thread blocks (fewer, a multiple of 32, for tiny kernels), enough blocks to
  cover the work once, capped at ``8 * SM count`` (the kernels are grid-stride loops).
- row mode: one block per row (capped at 65535 blocks; rows are grid-strided); the block has
  the next power of two >= the per-row work, between 32 and 256 threads, or up to 1024 when
  there are fewer rows than SMs (a full reduction is one row on one big block).
- serial mode: one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from symk.codegen.cuda_render import CudaKernel, Extent


@dataclass(frozen=True)
class DeviceProps:
    name: str = "default (no device queried: an sm_80 with 108 SMs)"
    sm_count: int = 108
    max_threads: int = 1024
    compute_capability: str = "80"


DEFAULT_PROPS = DeviceProps()


def _prod(exts: Sequence[Extent], sizes: Sequence[int]) -> int:
    n = 1
    for kind, v in exts:
        n *= v if kind == "const" else int(sizes[v])
    return n


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def launch_config(k: CudaKernel, sizes: Sequence[int] = (),
                  props: DeviceProps = DEFAULT_PROPS) -> tuple[int, int]:
    """(grid, block) for one launch of ``k`` with the given runtime sizes."""
    if k.mode == "serial":
        return 1, 1
    work = max((_prod(w, sizes) for w in k.work), default=1)
    if k.mode == "thread":
        block = min(256, max(32, _pow2(work)))
        grid = max(1, min(-(-work // block), 8 * props.sm_count))
        return grid, block
    inner = max((_prod(w, sizes) for w in k.inner), default=1)
    cap = props.max_threads if work < props.sm_count else 256
    block = min(cap, max(32, _pow2(inner)))
    return max(1, min(work, 65535)), block


def describe(k: CudaKernel) -> str:
    """The launch rule in words (what ``symk.compile(..., build=False)`` reports)."""
    def ex(ws: list[list[Extent]]) -> str:
        if not ws:
            return "1"
        w = max(ws, key=len)
        return " * ".join(str(v) if kind == "const" else f"d{v}" for kind, v in w) or "1"
    if k.mode == "serial":
        return "grid 1, block 1 (serial)"
    if k.mode == "thread":
        return f"grid-stride over {ex(k.work)} elements, blocks of up to 256 threads"
    return f"one block per row ({ex(k.work)} rows), threads over {ex(k.inner)} per row"


def code_listing(kernels: Sequence[Any], progs: Sequence[Any]) -> str:
    """The CUDA C of a schedule's kernel programs for ``symk.compile(..., build=False)``: fills
    each ``KernelCode`` (source, thread mapping, launch rule, and the launch configuration when
    it needs no run-time size) and returns the whole compilation unit."""
    from symk.codegen.cuda_render import module_source, render_cuda

    rendered = []
    for kc, prog in zip(kernels, progs):
        ck = render_cuda(prog)
        rendered.append(ck)
        kc.source, kc.mode, kc.launch = ck.source, ck.mode, describe(ck)
        if not any(e[0] == "size" for w in ck.work + ck.inner for e in w):
            kc.grid_block = launch_config(ck)
    return module_source(list({c.name: c for c in rendered}.values()))
