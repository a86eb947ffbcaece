"""Direct CBLAS ``?gemm`` calls into the BLAS that numpy already loaded.

``numpy.matmul`` cannot accumulate into an existing array (BLAS's ``beta``), which a ``gemm``
node needs to add a product into a weight in place.  numpy's wheels bundle OpenBLAS built with
64-bit integers and export ``scipy_cblas_sgemm64_``/``..._dgemm64_``; those (or the plain
``cblas_?gemm64_`` names) are looked up in the libraries beside numpy.  Anywhere else (conda's
MKL, macOS Accelerate) :func:`gemm_fn` returns None and callers use numpy instead.
ctypes releases the GIL during the call, like numpy does.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable
from typing import TypeVar

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_NAMES = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")
_cache: dict[str, Callable | None] = {}
T = TypeVar("T")


def _libraries() -> list[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    found: list[str] = []
    for pat in ("numpy.libs/*blas*", "numpy/.dylibs/*blas*", "numpy.libs/*.dll"):
        found.extend(sorted(glob.glob(os.path.join(root, pat))))
    return found


def find_in_blas(pick: Callable[[ctypes.CDLL], T | None], loaded: bool = False) -> T | None:
    """The first non-None ``pick(library)`` over the BLAS libraries beside numpy (and, with
    ``loaded``, the OpenBLAS libraries already mapped into the process), or None."""
    paths = _libraries()
    if loaded:
        try:
            with open("/proc/self/maps") as f:
                paths += sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower()})
        except OSError:
            pass
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        found = pick(lib)
        if found is not None:
            return found
    return None


def _load(prefix: str) -> Callable | None:
    from symk.config import cblas_enabled

    if not cblas_enabled():
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    real = ctypes.c_float if prefix == "s" else ctypes.c_double

    def pick(lib: ctypes.CDLL) -> Callable | None:
        for name in _NAMES:
            fn = getattr(lib, name.format(prefix), None)
            if fn is not None:
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real, ptr,
                               i64, ptr, i64, real, ptr, i64]
                return fn
        return None
    return find_in_blas(pick)


def gemm_fn(dtype: np.dtype) -> Callable | None:
    """``cblas_?gemm`` for float32/float64 (64-bit integer interface), or None."""
    prefix = {"float32": "s", "float64": "d"}.get(np.dtype(dtype).name)
    if prefix is None:
        return None
    if prefix not in _cache:
        _cache[prefix] = _load(prefix)
    return _cache[prefix]


def operand(x: np.ndarray) -> tuple[int, int, int]:
    """(transpose flag, leading dimension, address) of a 2-D operand for a row-major call:
    C-contiguous arrays as they are, transposed views of C-contiguous arrays as ``TRANS``."""
    s0, s1 = x.strides
    it = x.itemsize
    if s1 == it and s0 >= max(1, x.shape[1]) * it and s0 % it == 0:
        return NO_TRANS, s0 // it, x.ctypes.data
    if s0 == it and s1 >= max(1, x.shape[0]) * it and s1 % it == 0:
        return TRANS, s1 // it, x.ctypes.data
    raise ValueError("not a strided matrix")
