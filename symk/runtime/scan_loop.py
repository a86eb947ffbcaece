"""A scan's whole time loop in one native call, for bodies that are one native segment.

When a scan body's schedule is a single driver segment (``CpuPlan.driver_numpy_free``: only
native kernels, products and views) the loop needs no Python per time step: the generated
``D_scan_loop`` (``symk.codegen.driver_render.render_scan_loop``) calls the body's driver
once per step, after pointing the frame at that step's sequence slices and output rows,
and hands each new carry to the next step by address.  The body writes its outputs
straight into the stacked results (row ``t``), its new carries into the carry trajectories
when those are wanted, else into two buffers used in turn; nothing is copied per step.

The body is sized once per call (the segment's signature of step 0's shapes); a body whose
new carries change shape, whose kernels would split across threads, or that draws random
numbers keeps the Python loop of ``scan_cpu``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from symk.codegen.driver_render import render_scan_loop
from symk.runtime import threads
from symk.runtime.driver import SIGNATURES_KEPT, _address, _thread_header
from symk.runtime.native import build_native

_lock = threading.Lock()
_fn: list[Any] = []  # the compiled loop function, once built
#: signatures a share's own frame table keeps (``NativeLoop.prepare``)
OWN_FRAMES_KEPT = 4


def loop_function() -> Any:
    """The ctypes function of ``D_scan_loop`` (compiled once per process, object-cached)."""
    with _lock:
        if not _fn:
            name, ir = render_scan_loop()
            mod, _, _ = build_native([], "scan loop", None, [(name, ir)])
            assert mod is not None  # a module is built for the driver
            _fn.append(mod.fns[name])
        return _fn[0]


class NativeLoop:
    """The native loop of one compiled body (``scan_cpu.BodyPlan``), or ``ok`` False."""

    def __init__(self, bp: Any) -> None:
        plan = bp.plan
        self.ok = False
        if not plan.driver_numpy_free:
            return
        seg = plan.segments[0]
        if seg.counters or seg.esc_other or seg.fn is None:
            return
        ring_at = {s: j for j, s in enumerate(seg.ring_slots)}
        wanted = list(bp.out_slots) + list(bp.new_carry_slots)
        if any(s not in ring_at for s in wanted):
            return  # a result the segment does not compute (a pass-through carry, ...)
        self.seg, self.ring_at = seg, ring_at
        ext_at = {s: j for j, s in enumerate(seg.ext_slots)}
        #: (external index, sequence index) of the sequences the body reads
        self.seq_ext = [(ext_at[s], i) for i, s in enumerate(bp.seq_slots) if s in ext_at]
        #: (external index, carry index) of the carries the body reads
        self.carry_ext = [(ext_at[s], i) for i, s in enumerate(bp.carry_slots) if s in ext_at]
        loop_ext = {j for j, _ in self.seq_ext} | {j for j, _ in self.carry_ext}
        #: external indices of everything else (constants, variables: fixed for the loop)
        self.fixed_ext = [j for j in range(len(seg.ext_slots)) if j not in loop_ext]
        self.ok = True

    def run(self, bp: Any, n_steps: int, reverse: bool, seqs: Sequence[np.ndarray],
            carries: Sequence[np.ndarray], vals: list[Any], want_seq: list[int],
            want_traj: list[int]) -> tuple[list, list, list] | None:
        """(stacked outputs of ``want_seq``, trajectories of ``want_traj``, final carries),
        or None when this call needs the Python loop."""
        job = self.prepare(bp, n_steps, reverse, seqs, carries, vals, want_seq, want_traj)
        if job is None:
            return None
        job.call()
        return job.finish()

    def prepare(self, bp: Any, n_steps: int, reverse: bool, seqs: Sequence[np.ndarray],
                carries: Sequence[np.ndarray], vals: list[Any], want_seq: list[int],
                want_traj: list[int], into: tuple[list, list] | None = None,
                frames: dict | None = None) -> LoopJob | None:
        """The loop of one call, ready to run (None: this call needs the Python loop).

        ``into``: (stacked outputs, trajectories) to write, views whose step rows are each
        contiguous (a share of a larger result's rows); ``frames``: a signature -> frame
        table of the caller's own (a loop run beside others on the same body), whose products
        leave the BLAS thread count alone."""
        seg = self.seg
        spec = seg.ext_spec
        arrs: list[Any] = [None] * len(spec)
        addrs = [0] * len(spec)
        shapes: list[tuple] = [()] * len(spec)
        for j, i in self.seq_ext:
            a = seqs[i]
            if a.dtype != spec[j][1] or not _steps_contiguous(a) or a.ndim == 0:
                return None
            arrs[j], addrs[j], shapes[j] = a, a.ctypes.data, a.shape[1:]
        for j, i in self.carry_ext:
            c = np.asarray(carries[i])  # (ascontiguousarray would make a 0-d carry 1-d)
            if not c.flags.c_contiguous:
                c = c.copy()
            if c.dtype != spec[j][1]:
                return None
            arrs[j], addrs[j], shapes[j] = c, c.ctypes.data, c.shape
        for j in self.fixed_ext:
            a, addrs[j] = seg.external(vals[spec[j][0]], spec[j][1])
            arrs[j], shapes[j] = a, a.shape
        sig = tuple(shapes)
        table = seg.sized if frames is None else frames
        sz = table.get(sig, False)
        if sz is False:
            sz = seg.size_for(sig, table, SIGNATURES_KEPT if frames is None else OWN_FRAMES_KEPT)
        if sz is None or sz.split:
            return None
        rings = seg.ring_nodes
        ring_shape = [sz.shapes[id(o)] for o in rings]
        new_at = [self.ring_at[s] for s in bp.new_carry_slots]
        for j, i in self.carry_ext:
            if ring_shape[new_at[i]] != shapes[j]:
                return None  # the carry changes shape: the Python loop handles (or rejects) it
        # where each value the body computes goes: stacked rows, trajectory rows, or two
        # buffers in turn; (array, by parity) per ring value
        home: list[tuple[np.ndarray, int] | None] = [None] * len(rings)
        results: tuple[list, list] = ([], [])
        for kind, (want, slot_of) in enumerate(
                ((want_seq, lambda i: self.ring_at[bp.out_slots[i]]),
                 (want_traj, lambda i: new_at[i]))):
            for k, i in enumerate(want):
                r = slot_of(i)
                shape = (n_steps,) + ring_shape[r]
                if into is None:
                    buf = np.empty(shape, rings[r].dtype)
                else:
                    buf = into[kind][k]
                    if buf.shape != shape or not _steps_contiguous(buf):
                        return None
                results[kind].append(buf)
                if home[r] is None:
                    home[r] = (buf, 0)
        # the others: two buffers in turn
        placed = [h if h is not None else (np.empty((2,) + ring_shape[r], rings[r].dtype), 1)
                  for r, h in enumerate(home)]
        cfr = sz.cframe
        at = [seg.val[id(x)] for x in seg.ext]  # frame positions of the externals
        for j in self.fixed_ext:
            cfr[at[j]] = addrs[j]
        for j, _ in self.carry_ext:
            cfr[at[j]] = addrs[j]
        binds: list[int] = []
        for j, _ in self.seq_ext:
            binds += (at[j], addrs[j], arrs[j].strides[0], 0)
        for r, (buf, par) in enumerate(placed):
            binds += (seg.val[id(rings[r])], buf.ctypes.data, buf.strides[0], par)
        links: list[int] = []
        for j, i in self.carry_ext:
            links += (at[j], seg.val[id(rings[new_at[i]])])
        head = [_address(seg.fn), sz.ptr, n_steps, int(reverse), len(binds) // 4,
                len(links) // 2]
        job = LoopJob()
        job.spec = np.array(head + binds + links, np.int64)
        job.sz, job.own_frame, job.keep = sz, frames is not None, arrs
        job.home, job.stacked, job.trajs = placed, results[0], results[1]
        job.homes = ([self.ring_at[bp.out_slots[i]] for i in want_seq],
                     [new_at[i] for i in want_traj], new_at)
        job.n_steps, job.reverse = n_steps, reverse
        return job


def _steps_contiguous(a: np.ndarray) -> bool:
    """Whether each ``a[t]`` is C-contiguous (``a`` may be a share of a larger array's rows)."""
    if a.flags.c_contiguous:
        return True
    step = a.itemsize
    for d, st in zip(a.shape[:0:-1], a.strides[:0:-1]):
        if d != 1 and st != step:
            return False
        step *= d
    return True


class LoopJob:
    """One prepared native loop: :meth:`call` runs it (any thread; no Python objects are
    touched), :meth:`finish` returns its results."""

    spec: np.ndarray
    sz: Any
    own_frame: bool
    keep: list
    home: list
    stacked: list
    trajs: list
    homes: tuple[list, list, list]
    n_steps: int
    reverse: bool

    def call(self) -> None:
        sz = self.sz
        if self.own_frame:
            managed = 0
            sz.cframe[0] = 0  # beside other loops: the BLAS thread count is left alone
        else:
            managed = _thread_header(sz)
        r = loop_function()(self.spec.ctypes.data, 0)
        if managed:
            threads.cur[0] = sz.cframe[2]
        if r >= 0:  # pragma: no cover - sized without splits
            raise RuntimeError(f"internal error: scan body asked to return at step {r}")

    def finish(self) -> tuple[list, list, list]:
        """(stacked outputs, trajectories, final carries)."""
        home = self.home
        out_at, traj_at, new_at = self.homes
        # the copies a result needs when another result of the same value holds its rows
        for buf, r in zip(self.stacked, out_at):
            if home[r][0] is not buf:
                buf[...] = home[r][0]
        for buf, r in zip(self.trajs, traj_at):
            if home[r][0] is not buf:
                buf[...] = home[r][0]
        last = self.n_steps - 1
        final = []
        for r in new_at:
            buf, par = home[r]
            final.append(buf[last % 2] if par else buf[0 if self.reverse else last])
        return self.stacked, self.trajs, final
