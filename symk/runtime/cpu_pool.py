"""What the ``cpu`` device's executors share: its thread pool and its output buffer rings.

``on_pool`` runs pieces of work on symk's one thread pool (kernels split across cores by
``symk.runtime.cpu``, convolution and matrix-product shares, row-split scans); ``Ring`` keeps a
few output buffers of one kernel output for reuse.  ``cpu``, its extern modules (``conv_cpu``,
``scan_cpu``) and ``externs`` use them; this module imports nothing else of the runtime, so
they need not import each other for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from symk import config

#: pooled output arrays kept per kernel output
POOL_DEPTH = 3

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def num_threads() -> int:
    """``SYMK_NUM_THREADS`` (validated by ``symk.config``; default: the number of cores)."""
    return config.num_threads()


def get_pool(n: int) -> ThreadPoolExecutor:
    """symk's thread pool with ``n`` workers (a new one when the count changed)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != n:  # noqa: SLF001
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="symk")
        return _pool


def on_pool(nthreads: int, work: Callable[[int, int], Any],
            ranges: Sequence[tuple[int, int]]) -> list[Any]:
    """``[work(lo, hi) for lo, hi in ranges]``, the first range on the calling thread and
    the others on symk's pool (of ``nthreads`` workers) at the same time."""
    pool = get_pool(nthreads)
    futs = [pool.submit(work, lo, hi) for lo, hi in ranges[1:]]
    first = work(*ranges[0])
    return [first] + [f.result() for f in futs]


class Ring:
    """A few output buffers of one kernel output, reused once nobody else holds them (fresh
    large arrays page-fault on first touch, which costs more than the kernel; several per
    output so that values swapped into variables ping-pong between two).  While a buffer is in
    the ring its address is registered in ``known`` (id -> (array, address)), so the kernels
    reading it skip numpy's ``ctypes`` round trip (~1 us per array)."""

    __slots__ = ("known", "dtype", "bufs")

    def __init__(self, known: dict[int, tuple[np.ndarray, int]], dtype: np.dtype) -> None:
        self.known, self.dtype = known, dtype
        self.bufs: list[tuple[np.ndarray, int]] = []

    def get(self, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
        for ent in self.bufs:
            o = ent[0]
            # a free buffer is referenced by its tuple, `o` and getrefcount's argument
            if o.shape == shape and sys.getrefcount(o) <= 3:
                return ent
        o = np.empty(shape, self.dtype)
        ent = (o, o.ctypes.data)
        if len(self.bufs) >= POOL_DEPTH:
            old = self.bufs.pop(0)
            self.known.pop(id(old[0]), None)
        self.bufs.append(ent)
        self.known[id(o)] = ent
        return ent
