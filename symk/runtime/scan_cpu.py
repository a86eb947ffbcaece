"""The scan loop on the ``cpu`` device.

A scan's body is optimized, fused and compiled to native kernels once (the same passes and
``CpuPlan`` as ``K.function``; cached per body in memory, and in the plan cache like a
function, so a later process builds it without passes or LLVM), then run once per time step by
a tight Python loop that binds the step's slices and carries to the plan's slots and runs the
plan's drivers and remaining steps (``CpuPlan.execute``): per step there is no input checking
and no plan lookup.  All results of one loop (stacked outputs, final carries, carry
trajectories for the gradient) are produced by one run.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, cast

import numpy as np

from symk import config
from symk.codegen.llvm_compile import target_key
from symk.debug import log
from symk.graph.node import Node
from symk.graph.ops.scan import CARRIES, LAST, SEQ, ScanBody, time_steps
from symk.graph.ops.scan_rows import RowSplit, row_split
from symk.runtime import threads
from symk.runtime.cpu import CpuPlan
from symk.runtime.cpu_pool import Ring, get_pool
from symk.runtime.devices import Device
from symk.runtime.externs import CPU_EXTERNS, register_cpu_group_extern
from symk.runtime.native import compile_native
from symk.runtime.scan_loop import NativeLoop
from symk.runtime.tuning import AlgoTuner

#: the label of a scan body's compilation (logs, dump folders)
LABEL = "scan body"
#: False: never split a loop's rows across threads (benchmarks flip it)
ROW_SPLIT = True
#: a loop's rows are split across threads when it carries at least this many values over all
#: its steps, and each share keeps at least ROW_SPLIT_MIN_ROWS rows
ROW_SPLIT_MIN_WORK = 262_144
ROW_SPLIT_MIN_ROWS = 8
#: calls timed per way (split, whole) before a loop signature keeps the faster one
ROW_SPLIT_TRIES = 2
#: seconds after a plan's products moved to symk's threads before its loops are timed (an
#: OpenBLAS worker spins ~0.1 s after its last threaded product, slowing a split loop)
ROW_SPLIT_SETTLE_S = 0.15
#: loop signatures tuned per scan (beyond: run whole)
ROW_SPLIT_TUNED = 16
_compiled: weakref.WeakKeyDictionary[ScanBody, BodyPlan] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_blas: list[Any] = []  # the threadpoolctl controller, once looked up (None: unavailable)


def blas_threads_limit() -> contextlib.AbstractContextManager[Any]:
    """A context limiting BLAS threads while a loop runs its small per-step products.

    ``SYMK_SCAN_BLAS_THREADS`` (default 1; 0 leaves BLAS as the call's thread scope sets it).
    One thread is the default because a per-step GEMM is small: a second thread gains ~30% on
    an idle machine, but when another process holds a core, OpenBLAS's threads wait for each
    other on every one of the loop's calls and a 100-step loop becomes tens of times slower.
    The loop is a thread scope of ``symk.runtime.threads`` (nested in its function's), capped
    at that many threads; with the thread control off, ``threadpoolctl`` limits BLAS (without
    it BLAS is left alone)."""
    from symk.config import num_threads, scan_blas_threads

    n = scan_blas_threads()
    if threads.ENABLED:
        return _scope(num_threads(), n)
    if n <= 0:
        return contextlib.nullcontext()
    if not _blas:
        try:
            from threadpoolctl import ThreadpoolController

            _blas.append(ThreadpoolController())
        except Exception:  # noqa: BLE001 - optional: any failure means "leave BLAS alone"
            _blas.append(None)
    ctl = _blas[0]
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=n, user_api="blas")


@contextlib.contextmanager
def _scope(cap: int, loop_cap: int) -> Iterator[None]:
    threads.enter(cap)
    old = threads.limit(loop_cap)
    try:
        yield
    finally:
        threads.unlimit(old)
        threads.leave()


class BodyPlan:
    """A scan body compiled for the cpu device, with the slots the loop binds."""

    def __init__(self, body: ScanBody) -> None:
        feeds = list(body.seqs + body.carries + body.consts)
        opt_roots, schedule, self.plan, how = _build(body, feeds)
        plan = self.plan
        ns, nc = len(body.seqs), len(body.carries)
        fed = plan.fed_slots
        self.seq_slots, self.carry_slots, self.const_slots = fed[:ns], fed[ns:ns + nc], \
            fed[ns + nc:]
        roots = [plan.slot[id(r)] for r in opt_roots]
        self.out_slots, self.new_carry_slots = roots[:len(body.outs)], roots[len(body.outs):]
        self.size = len(plan.order)
        self.has_matmul = any(n.op.matrix_product for n in plan.order)
        self.lock = threading.Lock()
        #: the whole time loop in one native call, when the body is one native segment
        native = NativeLoop(self)
        self.native = native if native.ok else None
        #: per share of the rows, the native loop's own frames (``_run_rows``)
        self.row_frames: list[dict] = []
        log(1, f"compiled scan body: {len(schedule.kernels)} kernels, "
               f"{len(schedule.externs)} extern calls ({how})")

    def fresh_vals(self, consts: Sequence[np.ndarray]) -> list[Any]:
        vals: list[Any] = [None] * self.size
        for i, c in self.plan.constants:
            vals[i] = c
        for i, st in self.plan.variables:
            vals[i] = st.value
        for s, c in zip(self.const_slots, consts):
            if s >= 0:
                vals[s] = c
        return vals


class BodyCpuPlan(CpuPlan):
    """A CpuPlan for a scan body, run many times per call with the same shapes.

    Its kernel and matrix-product steps write into small rings of buffers it owns and knows
    the addresses of (``known``: id -> (array, address), also holding the run's constants
    and the current step's sequence slices), so a step call costs a few list and dict look-ups
    rather than ``ndarray.ctypes`` objects, argument arrays and fresh outputs (the kernel and
    matrix-product steps are CpuPlan's own); runs of native steps are run by drivers.
    """

    def node_step(self, n: Node) -> Callable[[list[Any]], None]:
        if n.op.is_random or n.op.name in CPU_EXTERNS:
            return super().node_step(n)
        return self._ref_step(n)

    def _ref_step(self, n: Node) -> Callable[[list[Any]], None]:
        """The op's numpy reference without the executor's per-value type checks (the body
        runs every step with the types its first run had)."""
        i = self.slot[id(n)]
        ins = [self.slot[id(x)] for x in n.inputs]
        fn, attrs = n.op.ref, dict(n.attrs)
        self.n_ops += 1
        asarray = np.asarray

        def run(vals: list[Any]) -> None:
            vals[i] = asarray(fn(*[vals[j] for j in ins], **attrs))
        return run


#: the plan-cache "device" of scan bodies (their plans are BodyCpuPlans, never a function's)
BODY_DEVICE = "cpu:scan-body"
#: the cpu device with scan bodies' plans (not in the device table: no user picks it)
_BODY = Device(BODY_DEVICE, BodyCpuPlan, compile=compile_native,
               cache_target=target_key, native_prep=True)


def _build(body: ScanBody, feeds: list[Node]) -> tuple[list[Node], Any, BodyCpuPlan, str]:
    """(optimized roots, Schedule, plan, how) of a body, built like a function's
    (``runtime/build``): from the plan cache (memory or disk: no passes, no code generation,
    the native module from the object cache), else by running the passes and compiling."""
    from symk.runtime.build import build

    roots = list(body.outs) + list(body.new_carries)
    built = build(roots, feeds, len(roots), _BODY, (), LABEL, lambda _: frozenset())
    return built.roots, built.schedule, built.executor, built.how


def body_plan(body: ScanBody) -> BodyPlan:
    """The compiled plan of ``body`` (compiled outside the lock: a body may hold scans)."""
    with _lock:
        bp = _compiled.get(body)
    if bp is None:
        made = BodyPlan(body)
        with _lock:
            bp = _compiled.setdefault(body, made)
    return bp


@register_cpu_group_extern("scan")
def scan_group(nodes: list[Node], owner: Any = None) -> Callable[..., list[np.ndarray]]:
    """The loop computing every result in ``nodes`` (results of one scan), run by the CpuPlan
    ``owner``."""
    attrs = nodes[0].attrs
    body: ScanBody = attrs["body"]
    reverse: bool = attrs["reverse"]
    results = [n.attrs["result"] for n in nodes]
    # a body whose rows are independent is compiled for any number of rows: the same plan
    # runs the whole batch, or shares of its rows side by side (``_run_rows``)
    rows = row_split(body)
    bp = body_plan(body if rows is None else rows.body)
    if rows is not None and owner is not None and ROW_SPLIT and \
            _static_work(nodes[0]) >= ROW_SPLIT_MIN_WORK:
        owner.own_products()  # known to split now: BLAS's threads never start in the plan
    tuners: dict[tuple, AlgoTuner] = {}
    ns, nc = len(body.seqs), len(body.carries)
    want_seq = sorted({i for k, i in results if k == SEQ})
    want_traj = sorted({i for k, i in results if k == CARRIES})
    seq_slots = [s for s in bp.seq_slots]
    out_slots = [bp.out_slots[i] for i in want_seq]
    carry_slots, new_carry_slots = bp.carry_slots, bp.new_carry_slots
    out_dt = [np.dtype(body.outs[i].dtype) for i in want_seq]
    traj_dt = [np.dtype(body.new_carries[i].dtype) for i in want_traj]
    execute = bp.plan.execute
    # the Python loop's stacked outputs are reused once dropped: fresh ones page-fault on
    # their first touch (a ConvLSTM step copies ~17 MB into them)
    stack_rings = [Ring({}, dt) for dt in out_dt]
    traj_rings = [Ring({}, dt) for dt in traj_dt]

    def run(*args: np.ndarray) -> list[np.ndarray]:
        n_steps = time_steps(body, args)
        # sequences are made contiguous once, so every step's slice is too
        seqs = [np.ascontiguousarray(a) for a in args[:ns]]
        carries = list(args[ns:ns + nc])
        with bp.lock, (blas_threads_limit() if bp.has_matmul else contextlib.nullcontext()):
            consts = [np.ascontiguousarray(c) for c in args[ns + nc:]]
            vals = bp.fresh_vals(consts)
            if bp.native is not None and n_steps > 0 and config.native_scan_loop():
                done = None
                parts = _row_parts(bp, seqs, carries, n_steps) if rows else 1
                tuner = None
                if parts > 1:
                    settled = True
                    if owner is not None:
                        settled = owner.own_products() >= ROW_SPLIT_SETTLE_S
                    # split from the start; timed against whole once BLAS's threads, which
                    # the plan's products used until now, have stopped spinning
                    tuner = _tuner(tuners, n_steps, seqs, carries) if settled else None
                if parts > 1 and (tuner is None or tuner.pick() == "rows"):
                    assert rows is not None  # (parts is 1 without a row split)
                    t0 = time.perf_counter()
                    done = _run_rows(bp, rows, parts, n_steps, reverse, seqs, carries,
                                     consts, vals, want_seq, want_traj)
                    if tuner is not None and done is None:
                        tuner.best = "whole"  # the shapes do not fit: never again
                    elif tuner is not None:
                        tuner.record("rows", time.perf_counter() - t0)
                if done is None:
                    t0 = time.perf_counter()
                    done = bp.native.run(bp, n_steps, reverse, seqs, carries, vals, want_seq,
                                         want_traj)
                    if tuner is not None and done is not None:
                        tuner.record("whole", time.perf_counter() - t0)
                if done is not None:
                    return _results(results, want_seq, want_traj, *done, body)
            known = bp.plan.known
            pinned = [c for c in consts if id(c) not in known]
            for c in pinned:
                known[id(c)] = (c, c.ctypes.data)
            # the slices' addresses are computed, not asked of numpy
            bound = [(s, a, a.ctypes.data, a.strides[0] if a.ndim else 0)
                     for s, a in zip(seq_slots, seqs) if s >= 0]
            slices: list[Any] = []
            stacked: list[np.ndarray] = []  # (set by the first step)
            trajs: list[np.ndarray] = []
            first = True
            try:
                for t in (range(n_steps - 1, -1, -1) if reverse else range(n_steps)):
                    for v in slices:
                        del known[id(v)]
                    slices.clear()
                    for s, a, base, stride in bound:
                        v = vals[s] = a[t, ...]  # a view (0-d array for 1-d sequences)
                        known[id(v)] = (v, base + t * stride)
                        slices.append(v)
                    for s, c in zip(carry_slots, carries):
                        if s >= 0:
                            vals[s] = c
                    execute(vals)  # the body's drivers (a native call or a few), its steps
                    carries = [vals[s] for s in new_carry_slots]
                    if first:
                        stacked = [r.get((n_steps,) + np.shape(vals[s]))[0]
                                   for s, r in zip(out_slots, stack_rings)]
                        trajs = [r.get((n_steps,) + np.shape(carries[i]))[0]
                                 for i, r in zip(want_traj, traj_rings)]
                        first = False
                    for buf, s in zip(stacked, out_slots):
                        buf[t] = vals[s]
                    for buf, i in zip(trajs, want_traj):
                        buf[t] = carries[i]
            finally:
                for v in slices + pinned:
                    known.pop(id(v), None)
            del vals, slices, pinned
        if first:  # no steps: empty stacks of the static element shapes
            stacked = [np.zeros((0,) + _static(body.outs[i]), dt)
                       for i, dt in zip(want_seq, out_dt)]
            trajs = [np.zeros((0,) + np.shape(carries[i]), dt)
                     for i, dt in zip(want_traj, traj_dt)]
        return _results(results, want_seq, want_traj, stacked, trajs, carries, body)

    return run


def _row_parts(bp: BodyPlan, seqs: Sequence[np.ndarray], carries: Sequence[Any],
               n_steps: int) -> int:
    """Into how many shares of its rows a loop is split (1: not split): one per free core,
    when the loop carries enough values (ROW_SPLIT_MIN_WORK over all steps) and each share
    keeps ROW_SPLIT_MIN_ROWS rows."""
    if not ROW_SPLIT or not carries:
        return 1
    first = np.shape(carries[0])
    rows = first[0] if first else 0
    work = _loop_work(n_steps, [np.shape(c) for c in carries])
    if rows < 2 * ROW_SPLIT_MIN_ROWS or work < ROW_SPLIT_MIN_WORK:
        return 1
    return min(threads.kernel_threads(bp.plan.nthreads), rows // ROW_SPLIT_MIN_ROWS)


def _loop_work(n_steps: int, carry_shapes: Sequence[tuple[int, ...]]) -> int:
    """The values a loop carries over all its steps."""
    return n_steps * sum(math.prod(s) for s in carry_shapes)


def _static_work(node: Node) -> int:
    """:func:`_loop_work` of a scan node from its static shapes (0 when a dim is unknown
    until run time)."""
    body: ScanBody = node.attrs["body"]
    ns, nc = len(body.seqs), len(body.carries)
    seqs, carries = node.inputs[:ns], node.inputs[ns:ns + nc]
    dims = [s.shape[0] for s in seqs[:1]] + [d for c in carries for d in c.shape]
    if not seqs or not carries or any(d is None for d in dims):
        return 0
    # (every dim is known here)
    return _loop_work(cast(int, seqs[0].shape[0]),
                      [cast("tuple[int, ...]", c.shape) for c in carries])


def _tuner(tuners: dict[tuple, AlgoTuner], n_steps: int, seqs: Sequence[np.ndarray],
           carries: Sequence[Any]) -> AlgoTuner | None:
    """Whether a loop of this signature runs split by rows or whole: each is timed on
    ROW_SPLIT_TRIES calls and the faster kept (a split pays when the shares' work outweighs
    the threads' start and the per-share set-up, which depends on the machine)."""
    key = (n_steps, tuple(a.shape for a in seqs), tuple(np.shape(c) for c in carries))
    t = tuners.get(key)
    if t is None and len(tuners) < ROW_SPLIT_TUNED:
        t = tuners[key] = AlgoTuner(["rows", "whole"], tries=ROW_SPLIT_TRIES)
    return t


def _run_rows(rp: BodyPlan, split: RowSplit, parts: int, n_steps: int, reverse: bool,
              seqs: Sequence[np.ndarray], carries: Sequence[Any], consts: Sequence[np.ndarray],
              vals: list[Any], want_seq: list[int], want_traj: list[int],
              ) -> tuple[list, list, list] | None:
    """The loop run as ``parts`` loops over shares of the rows, side by side on the pool's
    threads (no exchange between them: each row depends on its own row only, ``split``,
    whose body is compiled as ``rp``), writing their shares of the stacked results in place;
    None when the shapes do not fit."""
    native = rp.native
    assert native is not None  # only a body with a native loop runs by rows
    rb = split.body
    carries = [np.asarray(c) for c in carries]
    per_row = [(rp.const_slots[i], consts[i]) for i in split.row_consts]
    rows = carries[0].shape[0] if carries and carries[0].ndim else -1
    if any(c.ndim == 0 or c.shape[0] != rows for c in carries) or any(
            a.ndim < 2 or a.shape[1] != rows for a in seqs) or any(
            c.ndim == 0 or c.shape[0] != rows for _, c in per_row):
        return None
    elems = [rb.outs[i].shape[1:] for i in want_seq] + \
        [rb.new_carries[i].shape[1:] for i in want_traj]
    if any(d is None for e in elems for d in e):
        return None
    full = [np.empty((n_steps, rows) + e, np.dtype(n.dtype)) for e, n in zip(
        elems, [rb.outs[i] for i in want_seq] + [rb.new_carries[i] for i in want_traj])]
    ns = len(want_seq)
    bounds = [rows * k // parts for k in range(parts + 1)]
    frames = rp.row_frames
    while len(frames) < parts:
        frames.append({})
    threads.one_now()
    pool = get_pool(rp.plan.nthreads)
    jobs: list[Any] = []
    futs: list[Future[Any]] = []
    # the last shares first: their threads start while the first share is prepared
    for k in range(parts - 1, -1, -1):
        lo, hi = bounds[k], bounds[k + 1]
        share = [f[:, lo:hi] for f in full]
        share_vals = vals
        if per_row:
            share_vals = list(vals)
            for slot, c in per_row:
                share_vals[slot] = c[lo:hi]
        job = native.prepare(rp, n_steps, reverse, [a[:, lo:hi] for a in seqs],
                                [c[lo:hi] for c in carries], share_vals, want_seq,
                                want_traj, into=(share[:ns], share[ns:]), frames=frames[k])
        if job is None:
            for f in futs:
                f.result()
            return None
        jobs.append(job)
        if k:
            futs.append(pool.submit(job.call))
    jobs[-1].call()
    for f in futs:
        f.result()
    finals = [j.finish()[2] for j in reversed(jobs)]
    last = [np.concatenate([f[i] for f in finals]) for i in range(len(carries))]
    return full[:ns], full[ns:], last


def _results(results: list, want_seq: list[int], want_traj: list[int], stacked: list,
             trajs: list, carries: list, body: ScanBody) -> list[np.ndarray]:
    """The scan's results in the order of ``results`` ((kind, index) pairs)."""
    out = []
    for kind, i in results:
        if kind == SEQ:
            out.append(stacked[want_seq.index(i)])
        elif kind == CARRIES:
            out.append(trajs[want_traj.index(i)])
        else:
            assert kind == LAST
            c = np.asarray(carries[i])
            out.append(np.array(c, dtype=body.new_carries[i].dtype, copy=True))
    return out


def _static(n: Node) -> tuple[int, ...]:
    return tuple(0 if d is None else d for d in n.shape)
