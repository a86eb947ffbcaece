"""symk owns the threads of a call: one thread budget for kernels and BLAS.

numpy's bundled OpenBLAS runs every product above a small size on all cores, and its worker
threads spin between products.  When another process holds a core, a product split across
threads waits for the thread that has none (a 256x512 product measured ~2.7 ms instead of
~40 us; a Keras MLP epoch up to 68x slower).  So, while a compiled function runs (a *scope*,
entered by ``CpuPlan.run`` and by a scan loop):

* a matrix product below ``MT_MIN_FLOPS`` runs with one BLAS thread; a larger one with the
  *budget* (:func:`budget`, :data:`big`): the free cores, or ``SYMK_NUM_THREADS`` when set
  (never more than the usable cores);
* whether the budget's threads actually beat one for a plan's big products is measured on
  the plan's own calls (:class:`Tuner`: they do or do not per process, on the same machine);
* a large kernel splits its outer loop across the free cores (:func:`kernel_threads`, also
  outside scopes), or across exactly ``SYMK_NUM_THREADS`` threads when it is set;
* *free cores* are the cores of the process's affinity mask minus those other processes
  take: their load is the busy time of the mask's CPUs (``/proc/stat``) minus this process's
  own CPU time (all its threads: BLAS workers, JAX's, symk's kernels), over the wall time
  since the previous sample.  A sample is taken at most every ``SAMPLE_S`` seconds, at a
  scope's entry, and costs one file read (~15 us; the per-thread ``/proc`` reads it replaced
  cost 0.3-0.6 ms with JAX's ~20 threads in the process, and their instantaneous runnable
  count saw a core taken in ~8% of samples on an idle machine).  A core counts as taken
  from half a core's load up and is given back below a quarter (hysteresis); with no recent
  sample (the first, one older than ``_STALE_S``, after a fork) ``/proc/loadavg``'s runnable
  count stands in.  With one core taken, everything runs on one thread;
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
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from symk.config import num_threads_set

#: products with at least this many floating-point operations (2*m*n*k) may use more than one
#: BLAS thread (a :class:`Tuner` then checks that they gain from it).  In a loop of the same
#: product, 2 OpenBLAS threads gain ~1.7x from 32x256 by 256x512 (8.4 MFLOP) up; inside Keras
#: training at batch 32 (4.2 MFLOP products) they gained nothing even when they were fast
#: (benchmarks/RESULTS.md, "threads")
MT_MIN_FLOPS = 8_000_000
#: seconds between two samples of the machine's load
SAMPLE_S = 0.5
#: False: no thread control at all (BLAS as numpy configured it, kernels split over
#: SYMK_NUM_THREADS threads); benchmarks flip it to measure the difference
ENABLED = True

#: the BLAS thread count in force inside the current scope (0: outside any scope, or no API)
cur = [0]
#: BLAS threads for a product of at least MT_MIN_FLOPS inside the current scope
big = [1]
#: test hooks: number of BLAS set calls, the last count set, the last count a Tuner chose
stats = {"sets": 0, "last": 0, "tuned": 0}
#: test hook: a list that every count set is appended to (None: off)
trace: list[int] | None = None

_lock = threading.Lock()
_depth = 0
_saved = 0
#: numpy's BLAS (get, set) threads, None (left alone) or False (not looked up yet)
_api: tuple[Callable[[], int], Callable[[int], None]] | None | Literal[False] = False
_sampled = -1e9
_free = 1
_others_taken = 0
#: the previous load sample: (monotonic s, busy CPU s of the CPUs, this process's CPU s, pid)
_prev: tuple[float, float, float, int] | None = None
#: test hook: the last estimate (other processes' load in cores, cores taken, free cores)
last: dict[str, float] = {"others": 0.0, "taken": 0, "free": 0}
#: a previous sample older than this many seconds says nothing about the load now
_STALE_S = 5.0
_NCPU = os.cpu_count() or 1
_STAT = "/proc/stat"
_LOADAVG = "/proc/loadavg"
try:
    _TCK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):
    _TCK = 100.0


def _mask() -> set[int]:
    """The CPUs this process may run on (its affinity mask; else all of them)."""
    try:
        return os.sched_getaffinity(0) or set(range(_NCPU))
    except (AttributeError, OSError):
        return set(range(_NCPU))


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; else os.cpu_count())."""
    return len(_mask())


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
    return _api


def _read_loadavg_running() -> int | None:
    """Runnable tasks on the machine now (``/proc/loadavg``'s 4th field), or None."""
    try:
        with open(_LOADAVG, "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _busy_seconds(mask: set[int]) -> tuple[float, int] | None:
    """(busy CPU seconds since boot, number of CPUs) of the CPUs in ``mask`` that
    ``/proc/stat`` lists (its aggregate line when ``mask`` holds every online CPU), or None
    when unknown.  Busy is every state but idle and iowait (steal included: a core the
    hypervisor took is not ours either).  ~15 us."""
    whole = len(mask) >= _NCPU
    try:
        fd = os.open(_STAT, os.O_RDONLY)
        try:
            data = os.read(fd, 256 if whole else 1 << 16)
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        rows = [lines[0].split()]
        if not whole:
            rows = [f for f in map(bytes.split, lines[1:])
                    if f and f[0].startswith(b"cpu") and int(f[0][3:]) in mask] or rows
            whole = len(rows) == 1 and rows[0][0] == b"cpu"  # no ids like the mask's: all
        ticks = 0
        for fields in rows:
            vals = [int(v) for v in fields[1:9]]
            ticks += sum(vals) - vals[3] - vals[4]
    except (OSError, ValueError, IndexError):
        return None
    return ticks / _TCK, _NCPU if whole else len(rows)


def _sample(now: float, mask: set[int]) -> tuple[float, int]:
    """(cores' worth of busy time of other processes on this process's CPUs, CPUs counted)
    since the previous sample: the CPUs' busy seconds from ``/proc/stat`` minus this
    process's CPU seconds (``time.process_time``, all its threads: BLAS workers spinning, JAX,
    symk's kernels), over the wall time.  Without a usable previous sample (the first one, or
    one older than ``_STALE_S``, or another process: after a fork) it is the runnable tasks of
    ``/proc/loadavg`` minus the caller; (0, cores) when nothing is known."""
    global _prev
    cpus = _busy_seconds(mask)
    own = time.process_time()
    prev, pid = _prev, os.getpid()
    _prev = None if cpus is None else (now, cpus[0], own, pid)
    n = cpus[1] if cpus else _NCPU
    if cpus is not None and prev is not None and prev[3] == pid \
            and SAMPLE_S * 0.5 <= now - prev[0] <= _STALE_S:
        others = (cpus[0] - prev[1] - (own - prev[2])) / (now - prev[0])
        return max(0.0, others), n
    running = _read_loadavg_running()
    return (0.0 if running is None else float(max(0, running - 1))), n


def _taken(others: float, taken: int) -> int:
    """Cores taken by other processes, from ``others`` (cores' worth of their busy time) and
    the previous count ``taken``, with hysteresis: a core is taken from half a core's load
    up, and given back only below a quarter (so a load near the threshold does not switch
    the thread count at every sample)."""
    up = int(others + 0.5)
    if up > taken:
        return up
    down = int(others + 0.75)
    return down if down < taken else taken


def free_cores() -> int:
    """Usable cores not taken by other processes (>= 1): re-estimated at most every
    ``SAMPLE_S`` seconds from the busy time of this process's CPUs (see :func:`_sample`)."""
    global _sampled, _free, _others_taken
    now = time.monotonic()
    if now - _sampled >= SAMPLE_S:
        _sampled = now
        mask = _mask()
        others, n = _sample(now, mask)
        _others_taken = _taken(others, _others_taken)
        _free = max(1, min(len(mask), n - _others_taken))
        last["others"], last["taken"], last["free"] = others, _others_taken, _free
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
        api[1](n)
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
                _saved = api[0]()
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


def one_now() -> None:
    """Set one BLAS thread now (inside a scope), before threads of symk's own call BLAS side by
    side: BLAS must not split their products again."""
    if cur[0] and cur[0] != 1:
        _set(1)


_T = TypeVar("_T")


def single(fn: Callable[[], _T]) -> _T:
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


class _Signature:
    """What a :class:`Tuner` knows about one call signature."""

    __slots__ = ("budget", "calls", "many", "one", "choice", "ref", "slow")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.calls = 0  # calls since the measurement (or the choice) began
        self.many: list[float] = []  # call times with the budget's threads
        self.one: list[float] = []  # call times with one thread
        self.choice = 0  # the chosen count (0: measuring)
        self.ref = 0.0  # the chosen count's median call time
        self.slow = 0  # consecutive calls slower than SLOWER * ref

    def measure(self) -> None:
        self.calls, self.many, self.one, self.choice, self.slow = 0, [], [], 0, 0


class Tuner:
    """Measures, per call signature, whether a plan's big products run faster on the budget's
    threads or on one, and keeps the faster.

    Whether a product gains from a second thread is not a property of its size.  On the idle
    2-core machine of benchmarks/RESULTS.md ("Tuned BLAS threads"), a Keras MLP step at batch
    256 ran in one of two modes per fresh process with 2 BLAS threads (epoch 0.0064-0.0072 s
    or 0.0097-0.012 s; the same with symk splitting a product over two one-thread BLAS calls,
    and with OpenBLAS's workers sleeping between products; consistently fast with address
    space randomization off, so it depends on the process's memory layout), and in one mode
    with one thread (0.0090-0.0096 s).  So a plan whose calls may use more than one thread
    times them: after ``WARM`` calls, ``SAMPLES`` calls with the budget and then ``SAMPLES``
    with one thread (each block after one unrecorded call, so a block does not pay for the
    other's cache state), and it keeps the count with the lower median (one thread unless the
    budget wins by ``MARGIN``).  It keeps timing the calls (~0.1 us) and measures again when
    ``SLOW_CALLS`` calls in a row take ``SLOWER`` times the chosen count's median, or after
    ``KEEP`` calls.  A signature is the first fed array's shape and the budget (a change of
    free cores starts a new measurement)."""

    WARM = 2
    SAMPLES = 5
    MARGIN = 0.95
    SLOWER = 1.3
    SLOW_CALLS = 8
    KEEP = 5000
    #: signatures kept per plan (a plan fed ever-new shapes stops tuning new ones)
    MAX_KEYS = 32

    __slots__ = ("states",)

    def __init__(self) -> None:
        self.states: dict[tuple, _Signature] = {}

    def pick(self, key: tuple) -> tuple[_Signature | None, int]:
        """(the signature to :meth:`record` this call's time in, or None; the BLAS threads
        for this call's big products).  ``key[-1]`` is the budget."""
        st = self.states.get(key)
        if st is None:
            if len(self.states) >= self.MAX_KEYS:
                return None, 1
            st = self.states[key] = _Signature(key[-1])
        c = st.calls = st.calls + 1
        if st.choice:
            if c < self.KEEP:
                return st, st.choice
            st.measure()
            c = st.calls = self.WARM + 1
        block = self.SAMPLES + 1
        if c <= self.WARM:
            return None, st.budget
        if c <= self.WARM + block:  # the budget's block; its first call is not recorded
            return (st if c > self.WARM + 1 else None), st.budget
        return (st if c > self.WARM + block + 1 else None), 1

    def record(self, st: _Signature, n: int, seconds: float) -> None:
        """Store one call's time with ``n`` threads: choose once both blocks are measured;
        after the choice, watch for it turning slow."""
        if st.choice:
            if seconds <= st.ref * self.SLOWER:
                st.slow = 0
                return
            st.slow += 1
            if st.slow >= self.SLOW_CALLS:
                st.measure()
            return
        (st.one if n == 1 else st.many).append(seconds)
        if len(st.one) >= self.SAMPLES:
            many, one = _median(st.many), _median(st.one)
            st.choice = 1 if many >= one * self.MARGIN else st.budget
            st.ref = one if st.choice == 1 else many
            st.calls = 0
            stats["tuned"] = st.choice


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def tuned(tuner: Tuner, feeds: Sequence[Any], run: Callable[[Sequence[Any]], Any]) -> Any:
    """``run(feeds)`` in the current (outermost) scope with the BLAS thread count for big
    products that ``tuner`` chooses, timing the call while it measures or watches."""
    n = big[0]
    if n < 2 or _depth != 1 or not cur[0]:
        return run(feeds)
    f0 = feeds[0] if feeds else None
    st, k = tuner.pick((getattr(f0, "shape", None), n))
    big[0] = k
    if st is None:
        return run(feeds)
    t0 = time.perf_counter()
    out = run(feeds)
    tuner.record(st, k, time.perf_counter() - t0)
    return out


_sample(time.monotonic(), _mask())  # the baseline: the first estimate covers the build
