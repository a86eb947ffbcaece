"""oneDNN, the CPU deep-learning primitive library TensorFlow's and PyTorch's convolutions run
on, as the engine of symk's float32 CPU convolutions (forward, input and kernel gradients).

Why a library: its just-in-time ``brgconv`` kernels reach ~215 GFLOP/s on this machine's 2 cores
(W7 forward 3.7 ms) where symk's im2col + OpenBLAS reaches 130 (6.0 ms) and TensorFlow 4.6 ms.
It comes from PyPI (``onednn-cpu-gomp``, a plain shared library; Linux x86-64) and is called
through ctypes; when it is missing or does not load (another platform, no ``libgomp.so.1``,
``SYMK_ONEDNN=0``), ``available()`` is False and the numpy/BLAS path of
``symk.runtime.conv_cpu`` runs instead.

Threads: every primitive runs single-threaded on the thread that calls it (the OpenMP thread
count of that thread is set to 1 around the call), so the batch shares of
``symk.runtime.conv_cpu`` run on symk's own pool and oneDNN never starts threads of its own.
Each thread keeps its own stream, memory objects and scratchpad (``scratchpad_mode_user``), so
the same primitive runs on several threads at once.

Layouts: arrays are described by their numpy strides (channels-last input ``(N, *S, C)``,
kernel ``(*K, C // groups, F)``), so no copy is made; oneDNN's dims are ``(N, C, *S)`` and
``(F, C, *K)`` or ``(G, F // G, C // G, *K)``.  Primitives are cached per geometry
(``PRIMS_MAX``); a geometry oneDNN only has its reference implementation for is refused (the
caller's path is faster).  The C API's enum values are those of oneDNN 3.x's headers.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import cast

import numpy as np

from symk import config
from symk.errors import SymkError
from symk.runtime.lru import LRU

#: primitives kept (a geometry per conv node, batch share size and direction)
PRIMS_MAX = 256

# oneDNN 3.x C API constants (dnnl_types.h)
_CPU, _STREAM_DEFAULT, _F32 = 1, 1, 3
_FWD_TRAINING, _FWD_INFERENCE = 64, 96
_CONV_DIRECT = 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33
_ARG_DIFF_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 129, 145, 161
_ARG_SCRATCHPAD, _ARG_FROM, _ARG_TO = 80, 1, 17
_Q_IMPL_INFO, _Q_SCRATCHPAD_MD = 8, 136
_Q_WEIGHTS_MD, _Q_DIFF_WEIGHTS_MD = 131, 132
_FORMAT_ANY = 1
_SCRATCHPAD_USER = 1
_MAX_NDIMS = 12
_UNIMPLEMENTED = 3

_P = ctypes.c_void_p
_Dims = ctypes.c_int64 * _MAX_NDIMS


class _Arg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _P)]


class _Lib:
    """The loaded library, its engine and the OpenMP thread-count functions."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.dnnl_primitive_desc_query_md.restype = _P
        lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        self.engine = _P()
        _ok(lib.dnnl_engine_create(ctypes.byref(self.engine), _CPU, ctypes.c_size_t(0)),
            "creating the CPU engine")
        self.attr = _P()
        _ok(lib.dnnl_primitive_attr_create(ctypes.byref(self.attr)), "creating attributes")
        _ok(lib.dnnl_primitive_attr_set_scratchpad_mode(self.attr, _SCRATCHPAD_USER),
            "setting the scratchpad mode")
        self.get_threads = lib.omp_get_max_threads
        self.set_threads = lib.omp_set_num_threads


_state: dict[str, object] = {}
_load_lock = threading.Lock()
_local = threading.local()
_prims: LRU = LRU(PRIMS_MAX)


def _ok(status: int, what: str) -> None:
    if status != 0:
        raise SymkError(f"oneDNN failed {what} (status {status})")


def _candidates() -> list[str]:
    """Where the wheel puts the library (``<prefix>/lib``), then the loader's search path."""
    found: list[str] = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found += sorted(glob.glob(os.path.join(prefix, "lib", "libdnnl.so.3*")), key=len)
    return found + ["libdnnl.so.3"]


def _load() -> _Lib | None:
    for path in _candidates():
        try:
            return _Lib(ctypes.CDLL(path))
        except (OSError, AttributeError, SymkError) as e:
            _state["error"] = f"{path}: {e}"
    return None


def library() -> _Lib | None:
    """The loaded library, or None (missing, unloadable, or ``SYMK_ONEDNN=0``)."""
    if not config.onednn_enabled():
        return None
    lib = _state.get("lib", False)
    if lib is False:
        with _load_lock:
            if "lib" not in _state:
                _state["lib"] = _load()
            lib = _state["lib"]
    return cast("_Lib | None", lib)  # _state["lib"] holds what _load returned


def available() -> bool:
    return library() is not None


def why_unavailable() -> str | None:
    """Why ``available()`` is False (None when it is True)."""
    if not config.onednn_enabled():
        return "SYMK_ONEDNN=0"
    if library() is not None:
        return None
    return str(_state.get("error", "libdnnl.so.3 not found"))


class _Desc:
    """A memory descriptor (dims and strides in elements; no strides: the layout the primitive
    chooses, oneDNN's format ``any``), destroyed with the object."""

    def __init__(self, lib: _Lib, dims: Sequence[int], strides: Sequence[int] | None) -> None:
        self.lib = lib.lib
        self.h = _P()
        d = _Dims(*dims)
        if strides is None:
            st = self.lib.dnnl_memory_desc_create_with_tag(ctypes.byref(self.h), len(dims), d,
                                                           _F32, _FORMAT_ANY)
        else:
            st = self.lib.dnnl_memory_desc_create_with_strides(
                ctypes.byref(self.h), len(dims), d, _F32, _Dims(*strides))
        _ok(st, "describing an array")

    def __del__(self) -> None:
        if self.h:
            self.lib.dnnl_memory_desc_destroy(self.h)


def _act_desc(lib: _Lib, shape: Sequence[int], strides: Sequence[int]) -> _Desc:
    """An activation ``(N, *S, C)`` as oneDNN's ``(N, C, *S)``."""
    return _Desc(lib, (shape[0], shape[-1], *shape[1:-1]),
                 (strides[0], strides[-1], *strides[1:-1]))


def _kernel_dims(shape: Sequence[int], strides: Sequence[int], groups: int
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A kernel ``(*K, Cg, F)`` as ``(F, Cg, *K)``, or ``(G, F // G, Cg, *K)`` with groups:
    dims and strides."""
    ks, kst = shape[:-2], strides[:-2]
    cg, f, scg, sf = shape[-2], shape[-1], strides[-2], strides[-1]
    if groups == 1:
        return (f, cg, *ks), (sf, scg, *kst)
    m = f // groups
    return (groups, m, cg, *ks), (m * sf, sf, scg, *kst)


def _aligned(nbytes: int) -> tuple[np.ndarray, int]:
    """A buffer of ``nbytes`` and its 64-byte aligned address."""
    buf = np.empty(nbytes + 64, np.uint8)
    addr = buf.ctypes.data
    return buf, addr + (-addr) % 64


class _Prim:
    """One primitive, the memory descriptor of each argument and its scratchpad size; owns its
    primitive descriptor (``keep`` holds the descriptors it was made from)."""

    def __init__(self, lib: _Lib, pd: _P, args: list[tuple[int, _P]], keep: tuple = ()) -> None:
        self.lib, self.args, self.keep = lib, args, keep
        self.pd: _P | None = pd
        self.h = _P()
        try:
            _ok(lib.lib.dnnl_primitive_create(ctypes.byref(self.h), pd), "creating a primitive")
        except SymkError:
            lib.lib.dnnl_primitive_desc_destroy(pd)
            self.pd = None
            raise
        md = lib.lib.dnnl_primitive_desc_query_md(pd, _Q_SCRATCHPAD_MD, 0)
        self.scratch_md = md
        self.scratch = int(lib.lib.dnnl_memory_desc_get_size(_P(md))) if md else 0

    def impl(self) -> str:
        info = ctypes.c_char_p()
        self.lib.lib.dnnl_primitive_desc_query(self.pd, _Q_IMPL_INFO, 0, ctypes.byref(info))
        return (info.value or b"").decode()

    def __del__(self) -> None:
        if self.h:
            self.lib.lib.dnnl_primitive_destroy(self.h)
        if self.pd:
            self.lib.lib.dnnl_primitive_desc_destroy(self.pd)


class _Exec:
    """One thread's memory objects and scratchpad for one primitive."""

    def __init__(self, prim: _Prim, stream: _P) -> None:
        lib = prim.lib
        self.prim, self.lib, self.stream = prim, lib.lib, stream
        self.mems: list[_P] = []
        n = len(prim.args) + (1 if prim.scratch else 0)
        self.args = (_Arg * n)()
        for i, (arg, md) in enumerate(prim.args):
            m = _P()
            _ok(lib.lib.dnnl_memory_create(ctypes.byref(m), md, lib.engine, None),
                "creating a memory object")
            self.mems.append(m)
            self.args[i] = _Arg(arg, m)
        if prim.scratch:
            self.pad, addr = _aligned(prim.scratch)
            m = _P()
            _ok(lib.lib.dnnl_memory_create(ctypes.byref(m), _P(prim.scratch_md), lib.engine,
                                           _P(addr)), "creating a scratchpad")
            self.mems.append(m)
            self.args[n - 1] = _Arg(_ARG_SCRATCHPAD, m)

    def run(self, addrs: Sequence[int]) -> None:
        lib = self.lib
        for m, a in zip(self.mems, addrs):
            lib.dnnl_memory_set_data_handle(m, _P(a))
        _ok(lib.dnnl_primitive_execute(self.prim.h, self.stream, len(self.args), self.args),
            "running a primitive")
        _ok(lib.dnnl_stream_wait(self.stream), "waiting for a primitive")

    def __del__(self) -> None:
        for m in self.mems:
            self.lib.dnnl_memory_destroy(m)


class _Conv:
    """A convolution primitive whose kernel is in the layout oneDNN chose for it, and the
    reorder between that layout and the caller's (before the run for "fwd"/"bwd_data", after
    it for "bwd_weights"), or None when they agree."""

    def __init__(self, main: _Prim, reorder: _Prim | None, kernel_bytes: int,
                 after: bool) -> None:
        self.main, self.reorder, self.kernel_bytes, self.after = main, reorder, kernel_bytes, after

    def impl(self) -> str:
        return self.main.impl()


class _ConvExec:
    """One thread's executions of a :class:`_Conv` and its reordered kernel buffer."""

    def __init__(self, conv: _Conv) -> None:
        stream = _stream(conv.main.lib)
        self.conv = conv
        self.main = _Exec(conv.main, stream)
        self.reorder = None if conv.reorder is None else _Exec(conv.reorder, stream)
        if self.reorder is not None:
            self.kbuf, self.kaddr = _aligned(conv.kernel_bytes)

    def run(self, x: int, w: int, y: int) -> None:
        if self.reorder is None:
            self.main.run((x, w, y))
        elif self.conv.after:
            self.main.run((x, self.kaddr, y))
            self.reorder.run((self.kaddr, w))
        else:
            self.reorder.run((w, self.kaddr))
            self.main.run((x, self.kaddr, y))


def _stream(lib: _Lib) -> _P:
    s = getattr(_local, "stream", None)
    if s is None:
        s = _P()
        _ok(lib.lib.dnnl_stream_create(ctypes.byref(s), lib.engine, _STREAM_DEFAULT),
            "creating a stream")
        _local.stream = s
    return s


def _geometry_args(strides: Sequence[int], dilation: Sequence[int],
                   pads: Sequence[tuple[int, int]]) -> tuple[ctypes.Array[ctypes.c_int64], ...]:
    return (_Dims(*strides), _Dims(*(d - 1 for d in dilation)),
            _Dims(*(p[0] for p in pads)), _Dims(*(p[1] for p in pads)))


def _fwd_pd(lib: _Lib, prop: int, src: _P, wei: _P, dst: _P, geo: tuple) -> _P | None:
    pd = _P()
    st = lib.lib.dnnl_convolution_forward_primitive_desc_create(
        ctypes.byref(pd), lib.engine, prop, _CONV_DIRECT, src, wei, None, dst, *geo, lib.attr)
    return pd if st == 0 else None


def _main_pd(lib: _Lib, kind: str, src: _P, wei: _P, dst: _P, g: tuple) -> _P | None:
    if kind == "fwd":
        return _fwd_pd(lib, _FWD_INFERENCE, src, wei, dst, g)
    hint = _fwd_pd(lib, _FWD_TRAINING, src, wei, dst, g)
    if hint is None:
        return None
    pd = _P()
    if kind == "bwd_data":
        st = lib.lib.dnnl_convolution_backward_data_primitive_desc_create(
            ctypes.byref(pd), lib.engine, _CONV_DIRECT, src, wei, dst, *g, hint, lib.attr)
    else:
        st = lib.lib.dnnl_convolution_backward_weights_primitive_desc_create(
            ctypes.byref(pd), lib.engine, _CONV_DIRECT, src, wei, None, dst, *g, hint, lib.attr)
    lib.lib.dnnl_primitive_desc_destroy(hint)
    return pd if st == 0 else None


#: each kind's (src, weights, dst) argument ids, and the query of its kernel's descriptor
_ARGS = {"fwd": ((_ARG_SRC, _ARG_WEIGHTS, _ARG_DST), _Q_WEIGHTS_MD),
         "bwd_data": ((_ARG_DIFF_SRC, _ARG_WEIGHTS, _ARG_DIFF_DST), _Q_WEIGHTS_MD),
         "bwd_weights": ((_ARG_SRC, _ARG_DIFF_WEIGHTS, _ARG_DIFF_DST), _Q_DIFF_WEIGHTS_MD)}


def _build(kind: str, shapes: tuple, strides: tuple, geom: tuple) -> _Conv | None:
    """The convolution ``kind`` ("fwd", "bwd_data", "bwd_weights") of arrays with these
    shapes and element strides (x, w, y order), or None where oneDNN has no fast one."""
    lib = library()
    if lib is None:
        return None
    conv_strides, dilation, pads, groups = geom
    (xs, ws, ys), (xst, wst, yst) = shapes, strides
    src, dst = _act_desc(lib, xs, xst), _act_desc(lib, ys, yst)
    wdims, wstrides = _kernel_dims(ws, wst, groups)
    user_w, any_w = _Desc(lib, wdims, wstrides), _Desc(lib, wdims, None)
    pd = _main_pd(lib, kind, src.h, any_w.h, dst.h,
                  _geometry_args(conv_strides, dilation, pads))
    if pd is None:
        return None
    (a_x, a_w, a_y), q_w = _ARGS[kind]
    w_md = _P(lib.lib.dnnl_primitive_desc_query_md(pd, q_w, 0))
    main = _Prim(lib, pd, [(a_x, src.h), (a_w, w_md), (a_y, dst.h)], (src, dst))
    if main.impl().startswith("ref"):
        return None
    reorder = None
    if not lib.lib.dnnl_memory_desc_equal(w_md, user_w.h):
        after = kind == "bwd_weights"
        frm, to = (w_md, user_w.h) if after else (user_w.h, w_md)
        rpd = _P()
        _ok(lib.lib.dnnl_reorder_primitive_desc_create(ctypes.byref(rpd), frm, lib.engine, to,
                                                       lib.engine, lib.attr),
            "creating a kernel reorder")
        reorder = _Prim(lib, rpd, [(_ARG_FROM, frm), (_ARG_TO, to)], (user_w, main))
    return _Conv(main, reorder, int(lib.lib.dnnl_memory_desc_get_size(w_md)),
                 kind == "bwd_weights")


def _elem_strides(a: np.ndarray) -> tuple[int, ...] | None:
    size = a.itemsize
    if any(s < 0 or s % size for s in a.strides):
        return None
    return tuple(s // size for s in a.strides)


def _exec_for(prim: _Conv) -> _ConvExec:
    execs = getattr(_local, "execs", None)
    if execs is None:
        execs = _local.execs = {}
    ex = execs.get(id(prim))
    if ex is None or ex.conv is not prim:
        if len(execs) >= PRIMS_MAX:
            execs.clear()
        ex = execs[id(prim)] = _ConvExec(prim)
    return ex


def _conv_for(kind: str, arrays: tuple[np.ndarray, ...], geom: tuple) -> _Conv | None:
    """The cached primitive of these arrays' shapes and strides (call with one thread set)."""
    if any(a.dtype != np.float32 for a in arrays):
        return None
    st = tuple(_elem_strides(a) for a in arrays)
    if any(s is None for s in st):
        return None
    key = (kind, tuple(a.shape for a in arrays), st, geom)
    prim = _prims.get(key, False)
    if prim is False:
        prim = _prims[key] = _build(kind, key[1], st, geom)
    return prim


@contextlib.contextmanager
def _one_thread(lib: _Lib) -> Iterator[None]:
    """One OpenMP thread on this thread inside the block: oneDNN fixes a primitive's thread
    count when it builds it, and both building and running must see one."""
    old = lib.get_threads()
    if old != 1:
        lib.set_threads(1)
    try:
        yield
    finally:
        if old != 1:
            lib.set_threads(old)


def run(kind: str, x: np.ndarray, w: np.ndarray, y: np.ndarray, geom: tuple) -> bool:
    """Run one convolution on this thread: ``kind`` "fwd" writes ``y`` from ``x`` and ``w``,
    "bwd_data" writes ``x`` (the input gradient) from ``y`` and ``w``, "bwd_weights" writes
    ``w`` (the kernel gradient) from ``x`` and ``y``.  ``geom`` is (strides, dilation, resolved
    (lo, hi) pads, groups).  False (nothing written) when oneDNN cannot run it fast."""
    lib = library()
    if lib is None:
        return False
    with _one_thread(lib):
        prim = _conv_for(kind, (x, w, y), geom)
        if prim is None:
            return False
        _exec_for(prim).run(x.ctypes.data, w.ctypes.data, y.ctypes.data)
    return True


def impl_name(kind: str, x: np.ndarray, w: np.ndarray, y: np.ndarray, geom: tuple) -> str | None:
    """The oneDNN implementation that runs this convolution (tests and benchmarks)."""
    lib = library()
    if lib is None:
        return None
    with _one_thread(lib):
        prim = _conv_for(kind, (x, w, y), geom)
    return None if prim is None else prim.impl()
