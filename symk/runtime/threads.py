"""symk owns the threads of a call: one thread budget for kernels and BLAS.

numpy's bundled OpenBLAS runs every product above a small size on all cores, and its worker
threads spin between products.  When another process holds a core, a product split across
threads waits for the thread that has none (a 256x512 product measured ~2.7 ms instead of
~40 us; a Keras MLP epoch up to 68x slower).  So, while a compiled function runs (a *scope*,
entered by ``CpuPlan.run`` and by a scan loop):

* a matrix product below ``MT_MIN_FLOPS`` runs with one BLAS thread; a larger one with the
  *budget* (:func:`budget`, :data:`big`): the free cores, or ``SYMK_NUM_THREADS`` when set
  (never more than the usable cores);
* a large kernel splits its outer loop across the free cores (:func:`kernel_threads`, also
  outside scopes), or across exactly ``SYMK_NUM_THREADS`` threads when it is set;
* *free cores* are the cores of the process's affinity mask minus the tasks of other
  processes that were runnable in the last two samples of ``/proc/loadavg`` (taken at most
  every ``SAMPLE_S`` seconds, at a scope's entry): with one core taken, everything runs on
  one thread;
* the BLAS thread count is set through the BLAS's own API (OpenBLAS's
  ``openblas_set_num_threads`` found beside numpy, ~0.3 us a call, made only when the wanted
  count differs from the current one), else through ``threadpoolctl`` when installed, else
  left alone; and numpy's own count is restored when the outermost scope ends, so numpy's
  threading outside symk's calls is never changed.

:data:`ENABLED` (False: the behaviour before this module, for benchmarks) switches it all off.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

import numpy as np

from symk.config import num_threads_set

#: products with at least this many floating-point operations (2*m*n*k) may use more than one
#: BLAS thread (idle 2-core machine, OpenBLAS 0.3.31 float32: 2 threads gain ~1.7x from 32x256
#: by 256x512 (8.4 MFLOP) up; see benchmarks/RESULTS.md, "threads")
MT_MIN_FLOPS = 4_000_000
#: seconds between two samples of the machine's load
SAMPLE_S = 0.5
#: False: no thread control at all (BLAS as numpy configured it, kernels split over
#: SYMK_NUM_THREADS threads); benchmarks flip it to measure the difference
ENABLED = True

#: the BLAS thread count in force inside the current scope (0: outside any scope, or no API)
cur = [0]
#: BLAS threads for a product of at least MT_MIN_FLOPS inside the current scope
big = [1]
#: test hooks: number of BLAS set calls, and the last count set
stats = {"sets": 0, "last": 0}
#: test hook: a list that every count set is appended to (None: off)
trace: list[int] | None = None

_lock = threading.Lock()
_depth = 0
_saved = 0
_api: tuple[Callable[[], int], Callable[[int], None]] | None | bool = False
_sampled = -1e9
_others: list[int] = [0, 0]
_free = 1


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _openblas_api() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) of the thread count of the OpenBLAS beside numpy (or already loaded)."""
    from symk.runtime.blas import find_in_blas

    def pick(lib: ctypes.CDLL) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    put.restype, put.argtypes = None, [ctypes.c_int]
                    return get, put
        return None
    return find_in_blas(pick, loaded=True)


def _threadpoolctl_api() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    try:
        from threadpoolctl import ThreadpoolController

        ctls = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:  # noqa: BLE001 - optional: any failure means "leave BLAS alone"
        return None
    if not ctls:
        return None
    ctl = ctls[0]
    return (lambda: int(ctl.num_threads)), ctl.set_num_threads


def blas_api() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get_num_threads, set_num_threads) of numpy's BLAS, or None (then BLAS is left
    alone).  Looked up once."""
    global _api
    if _api is False:
        _ = np.__version__  # numpy (and its BLAS) are loaded
        _api = _openblas_api() or _threadpoolctl_api()
    return _api  # type: ignore[return-value]


def _running_others() -> int:
    """Runnable tasks of other processes now (``/proc/loadavg``'s running count minus this
    process's running threads), or 0 when unknown."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if st[st.rfind(")") + 2:st.rfind(")") + 3] == "R":
                own += 1
        return max(0, running - max(own, 1))
    except (OSError, ValueError, IndexError):
        return 0


def free_cores() -> int:
    """Usable cores not taken by other processes in the last two load samples (>= 1)."""
    global _sampled, _free
    now = time.monotonic()
    if now - _sampled >= SAMPLE_S:
        _sampled = now
        _others[0], _others[1] = _others[1], _running_others()
        cores = usable_cores()
        _free = max(1, min(cores, (os.cpu_count() or cores) - max(_others)))
    return _free


def kernel_threads(cap: int) -> int:
    """Threads a large kernel splits across: ``cap`` (a plan's SYMK_NUM_THREADS) when the
    variable is set (or the thread control is off), else the free cores, at most ``cap``."""
    if not ENABLED or num_threads_set():
        return cap
    return min(cap, free_cores())


def budget(cap: int) -> int:
    """BLAS threads for a large product: SYMK_NUM_THREADS when set, else the free cores; at
    most ``cap`` (a plan's SYMK_NUM_THREADS) and never more than the usable cores."""
    n = num_threads_set()
    if n:
        return max(1, min(cap, n, usable_cores()))
    return max(1, min(cap, free_cores()))


def _set(n: int) -> None:
    api = _api
    if api:
        api[1](n)  # type: ignore[index]
        stats["sets"] += 1
        stats["last"] = n
        if trace is not None:
            trace.append(n)
    cur[0] = n


def enter(cap: int) -> None:
    """Start a scope (a compiled function's call, a loop): ``cap`` is SYMK_NUM_THREADS.
    Always pair with :func:`leave` (try/finally)."""
    global _depth, _saved
    with _lock:
        if _depth == 0 and ENABLED:
            api = blas_api() if _api is False else _api
            big[0] = budget(cap)
            if api:
                _saved = api[0]()  # type: ignore[index]
                cur[0] = _saved
        _depth += 1


def leave() -> None:
    """End a scope; the outermost one restores numpy's BLAS thread count."""
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            if cur[0] and cur[0] != _saved:
                _set(_saved)
            cur[0] = 0


def product(flops: int) -> None:
    """Before a matrix product of ``flops`` operations: the BLAS thread count it gets."""
    c = cur[0]
    if c:
        n = big[0] if flops >= MT_MIN_FLOPS else 1
        if n != c:
            _set(n)


def limit(n: int) -> int:
    """Cap the big-product thread count of the current scope at ``n`` (a loop's per-step
    products); returns the previous cap for :func:`unlimit`."""
    old = big[0]
    if n > 0:
        big[0] = min(old, n)
    return old


def unlimit(old: int) -> None:
    big[0] = old


def single(fn: Callable[[], object]) -> object:
    """Run ``fn`` with one BLAS thread (the caller splits the work across threads itself)."""
    c = cur[0]
    if c:
        if c != 1:
            _set(1)
        return fn()
    api = blas_api()
    if not api:
        return fn()
    with _lock:
        old = api[0]()
        api[1](1)
    try:
        return fn()
    finally:
        api[1](old)
