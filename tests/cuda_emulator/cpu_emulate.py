"""Run CUDA C kernels on the CPU for numerical testing (no GPU, no CUDA driver).

    run_cuda_on_cpu(source, kernel_name, grid, block, args, shared_mem=0, ...)

The *same* kernel source that is handed to NVRTC/nvcc/cupy.RawKernel is compiled with
g++ into a shared library, with cpuemu_shim.h force-included (it defines __global__,
threadIdx/blockIdx/blockDim/gridDim, __syncthreads, warp shuffles/votes, atomics, ...),
loaded with ctypes and launched over the grid.  Kernels containing barriers or warp
collectives run every CUDA thread as a ucontext fiber; others run as plain loops.

Arguments follow cupy.RawKernel conventions: numpy arrays are passed as device pointers
(the kernel works on them in place), numpy scalars by value.  Python int/float are
converted to the kernel parameter's width.  Parameter sizes/kinds are read back from the
compiled kernel signature, so a float32 passed for a `double` parameter is an error rather
than silent garbage.

Only the stdlib, numpy and a g++ (C++17) are needed.  Adapted for symk's tests from the
shared tool: ``launch`` runs a kernel of an already compiled library (many kernels per g++ run),
and the demo is gone.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SHIM = Path(__file__).with_name("cpuemu_shim.h")
CACHE_DIR = Path(os.environ.get("CPUEMU_CACHE", Path(tempfile.gettempdir()) / "cpuemu-cache"))
CXX = os.environ.get("CXX", "g++")
BASE_FLAGS = ["-std=c++17", "-O1", "-fPIC", "-shared", "-fno-strict-aliasing", "-ffp-contract=off",
              "-Wno-unknown-pragmas", "-pthread"]

_NEEDS_FIBERS = re.compile(
    r"__syncthreads|__syncwarp|__shfl|__ballot_sync|__any_sync|__all_sync|__reduce_\w+_sync|"
    r"__activemask|__match_\w+_sync|cooperative_groups|\bcg::")
# extern __shared__ [__align__(n)] T name[];   -> T* name = (T*)dyn smem
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>,\s]*?)\s*"
    r"(?:__align__\s*\(\s*\d+\s*\)\s*)?\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")
_SCHEDULES = {"forward": 0, "reverse": 1, "random": 2}


class CudaEmulationError(RuntimeError):
    """Compilation or execution of a kernel under CPU emulation failed."""


def _rewrite(source: str) -> str:
    return _EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* const {m.group(2)} = "
                  f"reinterpret_cast<{m.group(1)}*>(cpuemu::dyn_smem());",
        source)


def _sym(kernel_name: str) -> str:
    return re.sub(r"\W", "_", kernel_name)


_lib_cache: dict[str, ctypes.CDLL] = {}
_EXTERN_C_KERNEL = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(\w+)\s*\(')


def _shim_include(flags) -> list[str]:
    """-include flags for the shim; builds a precompiled header once per shim/flags (cuts
    a g++ run from ~1 s to ~0.3 s).  Falls back to the plain header if that fails."""
    key = hashlib.sha256("\0".join([SHIM.read_text(), CXX, *flags]).encode()).hexdigest()[:16]
    d = CACHE_DIR / f"pch_{key}"
    hdr, gch = d / "cpuemu_shim.h", d / "cpuemu_shim.h.gch"
    if not gch.exists():
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHIM, hdr)
        tmp = d / f"tmp{os.getpid()}.gch"
        r = subprocess.run([CXX, *[f for f in flags if f != "-shared"], "-x", "c++-header",
                            str(hdr), "-o", str(tmp)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return ["-include", str(SHIM)]
        os.replace(tmp, gch)
    return ["-include", str(hdr)]


def compile_kernels(source: str, kernel_names=(), options=()) -> ctypes.CDLL:
    """Compile `source` into a cached .so with launch/introspection stubs for every
    `extern "C" __global__` kernel plus kernel_names (e.g. template instances 'f<float>')."""
    if isinstance(kernel_names, str):
        kernel_names = [kernel_names]
    names = list(dict.fromkeys([*_EXTERN_C_KERNEL.findall(source), *kernel_names]))
    stubs = []
    for k in names:
        s = _sym(k)
        stubs.append(
            f'extern "C" int __cpuemu_launch_{s}(void** a, const unsigned* g, '
            f'const unsigned* b, size_t sm,'
            f' int nw, size_t st, int sch, int poison, int fib, char* e, size_t el)'
            f' {{ return cpuemu::launch(&{k}, a, g, b, sm, nw, st, sch, poison, fib, e, el); }}\n'
            f'extern "C" int __cpuemu_args_{s}(size_t* sz, char* kd, int cap)'
            f' {{ return cpuemu::arg_info(&{k}, sz, kd, cap); }}\n')
    text = _rewrite(source) + "\n\n// ---- cpuemu stubs\n" + "".join(stubs)
    flags = BASE_FLAGS + list(options)
    key = hashlib.sha256("\0".join([SHIM.read_text(), text, CXX, *flags]).encode()).hexdigest()[:24]
    if key in _lib_cache:
        return _lib_cache[key]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    so = CACHE_DIR / f"k_{key}.so"
    if not so.exists():
        if shutil.which(CXX) is None:
            raise CudaEmulationError(f"C++ compiler {CXX!r} not found (set $CXX)")
        with tempfile.TemporaryDirectory() as td:
            src = Path(td) / "kernel.cpp"
            src.write_text(text)
            tmp = Path(td) / "k.so"
            cmd = [CXX, *flags, *_shim_include(flags), str(src), "-o", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise CudaEmulationError("g++ failed to compile kernel source for CPU "
                                         f"emulation:\n{r.stderr[-4000:]}")
            shutil.move(str(tmp), so)
    lib = ctypes.CDLL(str(so))
    _lib_cache[key] = lib
    return lib


def _dim3(v):
    if isinstance(v, (int, np.integer)):
        v = (int(v),)
    v = tuple(int(x) for x in v) + (1,) * (3 - len(v))
    if len(v) != 3 or min(v) < 1:
        raise ValueError(f"bad grid/block dims {v}")
    return (ctypes.c_uint * 3)(*v)


_INT_BY_SIZE = {1: ctypes.c_int8, 2: ctypes.c_int16, 4: ctypes.c_int32, 8: ctypes.c_int64}
_FLT_BY_SIZE = {4: ctypes.c_float, 8: ctypes.c_double}


def _marshal(i, a, size, kind):
    """Return a ctypes object holding argument i (kept alive by the caller)."""
    where = f"argument {i}"
    if kind == "p":
        if isinstance(a, np.ndarray):
            if not (a.flags.c_contiguous or a.flags.f_contiguous):
                raise TypeError(f"{where}: array must be contiguous")
            return ctypes.c_void_p(a.ctypes.data)
        if a is None:
            return ctypes.c_void_p(0)
        if isinstance(a, int):
            return ctypes.c_void_p(a)
        raise TypeError(f"{where}: kernel expects a pointer, got {type(a).__name__}")
    if isinstance(a, np.ndarray):
        raise TypeError(f"{where}: kernel expects a {size}-byte "
                        f"{'float' if kind == 'f' else 'value'}, got an array")
    if isinstance(a, np.generic):
        if a.dtype.itemsize != size:
            raise TypeError(f"{where}: kernel parameter is {size} bytes, got {a.dtype} "
                            f"({a.dtype.itemsize} bytes)")
        if kind == "f" and a.dtype.kind != "f" or kind == "i" and a.dtype.kind not in "iub":
            raise TypeError(f"{where}: kernel parameter kind {kind!r} does not match {a.dtype}")
        return ctypes.create_string_buffer(a.tobytes(), size)
    if isinstance(a, (bool, int)) and kind == "i":
        return _INT_BY_SIZE[size](int(a))
    if isinstance(a, (int, float)) and kind == "f":
        return _FLT_BY_SIZE[size](float(a))
    if isinstance(a, (bytes, bytearray)) or isinstance(a, ctypes.Structure):
        b = bytes(a)
        if len(b) != size:
            raise TypeError(f"{where}: struct parameter is {size} bytes, got {len(b)}")
        return ctypes.create_string_buffer(b, size)
    raise TypeError(f"{where}: cannot pass {type(a).__name__} to a parameter of kind {kind!r}, "
                    f"size {size}")


def run_cuda_on_cpu(source: str, kernel_name: str, grid, block, args, shared_mem: int = 0, *,
                    workers: int = 1, stack_size: int = 256 * 1024, schedule: str = "forward",
                    poison_shared: bool = True, fibers: bool | None = None, options=()):
    """Launch ``kernel_name<<<grid, block, shared_mem>>>(*args)`` from CUDA C ``source`` on the
    CPU.

    schedule: order in which the threads of a block run between barriers ('forward',
    'reverse', 'random'); a race-free kernel gives the same result for all of them.
    workers: number of OS threads running blocks concurrently (atomics are real atomics).
    poison_shared: fill dynamic shared memory with 0xFF bytes (NaN) before every block.
    fibers: None = decide from the source (barriers / warp collectives present -> fibers).
    """
    lib = compile_kernels(source, [kernel_name], options=options)
    if fibers is None:
        fibers = bool(_NEEDS_FIBERS.search(source))
    launch(lib, kernel_name, grid, block, args, shared_mem, workers=workers,
           stack_size=stack_size, schedule=schedule, poison_shared=poison_shared, fibers=fibers)


def launch(lib: ctypes.CDLL, kernel_name: str, grid, block, args, shared_mem: int = 0, *,
           workers: int = 1, stack_size: int = 256 * 1024, schedule: str = "forward",
           poison_shared: bool = True, fibers: bool = True) -> None:
    """Launch a kernel of an already compiled library (see ``compile_kernels``)."""
    s = _sym(kernel_name)
    cap = 64
    sizes = (ctypes.c_size_t * cap)()
    kinds = ctypes.create_string_buffer(cap)
    nparam = getattr(lib, f"__cpuemu_args_{s}")(sizes, kinds, cap)
    if nparam != len(args):
        raise TypeError(f"{kernel_name} takes {nparam} arguments, {len(args)} given")
    holders = [_marshal(i, a, sizes[i], kinds.raw[i:i + 1].decode()) for i, a in enumerate(args)]
    argv = (ctypes.c_void_p * max(1, nparam))(
        *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
    err = ctypes.create_string_buffer(512)
    fn = getattr(lib, f"__cpuemu_launch_{s}")
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                   ctypes.c_int, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                   ctypes.c_char_p, ctypes.c_size_t]
    rc = fn(argv, _dim3(grid), _dim3(block), int(shared_mem), int(workers), int(stack_size),
            _SCHEDULES[schedule], int(poison_shared), int(fibers), err, len(err))
    if rc != 0:
        raise CudaEmulationError(f"{kernel_name}: {err.value.decode(errors='replace')}")
