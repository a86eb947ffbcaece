"""The ``cpu`` device's native driver: runs of schedule steps executed by one native call.

A *segment* is a maximal run of consecutive steps that native code can run on its own: native
kernels, 2-D matrix products and ``gemm`` accumulations (CBLAS through the addresses numpy's
OpenBLAS exports), views (reshape, expand_dims, squeeze: an address copy) and ops of the input
shapes only (``shape_of``, ``count``: constants per input shape).  Its generated driver
(``symk.codegen.driver_render``) calls them in schedule order on a *frame*: an ``int64`` array
of addresses and sizes.

Per call, Python does only what depends on the call: it reads the addresses and shapes of the
segment's *external* inputs (fed arrays, variables, values of earlier Python steps), takes
output buffers from the plan's rings for the values that *escape* the segment (roots and
values later Python steps read), draws the call numbers of random nodes, and makes one native
call.  Everything that depends only on the input shapes -- every kernel's size parameters and
the checks of its indexing assumptions (``KernelCall.in_checks``), product dimensions, buffers
of the values that never leave the segment, the shape-only ops' results -- is computed once per
*signature* (the tuple of the external inputs' shapes) and kept in that signature's frame.

Values that only one later step packing its inputs reads (the gradients a step's
``allreduce_group`` sums) are written into one flat buffer of that step (``Pack``), which the
collective then reduces in place instead of packing them (``collective.donate``).

A kernel large enough to split across threads makes the driver return to Python, which runs it
on the thread pool and resumes the driver at the next step.  When a signature cannot be sized
(the shapes disagree, a product has an empty dimension) or an in-place accumulation would
alias an operand, the call runs the segment's steps one by one instead, which raises the
usual error or computes the result the usual way.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from symk.codegen.driver_render import (
    HEADER,
    NO_TRANS,
    ROW_MAJOR,
    TRANS,
    CallGemm,
    CallKernel,
    CopyAddress,
    Step,
    render_driver,
)
from symk.errors import ShapeError
from symk.graph.node import Node
from symk.graph.ops import collective
from symk.graph.ops.linalg import matmul2d_layout
from symk.graph.types import Type
from symk.passes.schedule import Extern, Kernel, Schedule, View
from symk.runtime import threads
from symk.runtime.blas import gemm_fn
from symk.runtime.cpu_pool import Ring, on_pool
from symk.runtime.externs import SPLIT_MIN_COLS, SPLIT_MIN_ROWS, gemm_shares, own_split
from symk.runtime.shape_check import kernel_sizes_checked

#: driver ABI: ``i64 driver(ptr frame, i64 start)``
DFUNC = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)
#: signatures (input-shape tuples) kept per segment
SIGNATURES_KEPT = 16
#: kernels with fewer domain elements than this run on the calling thread only (measured:
#: a 2-way split of a 131k-element kernel right after a GEMM is ~4x slower than one thread,
#: as OpenBLAS's threads are still spinning; from ~400k elements the split pays off)
PARALLEL_MIN_ELEMENTS = 1 << 18
#: in a function that also calls BLAS, a kernel splits only from this many times as many
#: elements: OpenBLAS's worker threads keep spinning on the other cores for a while after each
#: GEMM, and a second kernel thread competing with them was measured to take ~2x longer than
#: one thread (W3's 784x512 SGD update: 371 us split vs 187 us on one thread)
BLAS_SPLIT_FACTOR = 4
#: inputs up to this size have their address remembered by the plan (at most
#: SMALL_INPUTS_KEPT of them, so at most 16 MB of past inputs are kept alive)
SMALL_INPUT_BYTES = 1 << 16
SMALL_INPUTS_KEPT = 256
_REALS = ("float32", "float64")


def _address(fn: Any) -> int:
    """The native address of a ctypes function (0 when it is not one)."""
    try:
        return ctypes.cast(fn, ctypes.c_void_p).value or 0
    except (TypeError, ctypes.ArgumentError):
        return 0


def native_step_ok(by_step: dict[int, Any], step: Any) -> bool:
    """Whether a driver can run ``step`` (``by_step``: step id -> its native ``KernelCall``)."""
    if isinstance(step, Kernel):
        return id(step) in by_step
    n = step.node
    name = n.op.name
    if isinstance(step, View):  # (a reshape to a run-time shape vector has 2 inputs)
        return n.op.reshapes and len(n.inputs) == 1
    if not isinstance(step, Extern):
        return False
    if n.op.shape_only:
        return True
    if not n.op.matrix_product or n.dtype not in _REALS:
        return False
    layout = matmul2d_layout(n.attrs["spec"])
    if layout is None or gemm_fn(np.dtype(n.dtype)) is None:
        return False
    if name == "einsum":
        return len(n.inputs) == 2 and all(x.dtype == n.dtype for x in n.inputs)
    c, a, b, alpha, beta = n.inputs
    if any(x.dtype != n.dtype for x in (c, a, b)) or alpha.dtype not in _REALS:
        return False
    # BLAS does not read C when beta is 0, while 0 * inf must stay nan: constants only
    if beta.op.name != "constant":
        return False
    bv = float(beta.attrs["value"].array)
    return bv != 0.0 and math.isfinite(bv)


def build_segments(schedule: Schedule, by_step: dict[int, Any]) -> list[tuple[int, int]]:
    """``[lo, hi)`` step ranges of ``schedule`` that become segments: maximal runs of
    native-able steps holding at least one kernel or product."""
    steps = schedule.steps
    out: list[tuple[int, int]] = []
    k = 0
    while k < len(steps):
        if not native_step_ok(by_step, steps[k]):
            k += 1
            continue
        lo = k
        while k < len(steps) and native_step_ok(by_step, steps[k]):
            k += 1
        if any(isinstance(s, Kernel) or s.node.op.matrix_product
               for s in steps[lo:k]):
            out.append((lo, k))
    return out


@dataclass
class Sized:
    """What one signature of a segment needs per call."""

    frame: np.ndarray
    ptr: int
    #: the frame as a ctypes array (slice assignment from a list is ~2x numpy's)
    cframe: Any
    #: (ring, shape) of each escaping output, in frame order
    ring_shapes: list[tuple[Any, tuple[int, ...]]]
    #: node id -> run-time shape (for escaping views and constants)
    shapes: dict[int, tuple[int, ...]]
    #: node id -> constant value (results of shape-only ops)
    consts: dict[int, np.ndarray]
    #: driver step (layout index) -> what runs it split across threads (a kernel, a product)
    split: dict[int, Callable[[], None]]
    #: arrays the frame points into (internal buffers, scratch, constants)
    keep: list[np.ndarray] = field(default_factory=list)
    #: whether the frame's header names a set-thread-count function (from the last call)
    managed: bool = False


class Segment:
    """Steps ``[lo, hi)`` of a schedule run by one driver (see the module doc).

    Made at compile time from the schedule alone (``by_step``: step id -> the native
    ``KernelCall`` of each kernel step; ``inplace``: ids of the gemms that may accumulate into
    their variable): its frame layout and driver code (``name``, ``ir``).  ``bind`` then
    attaches it to the plan that runs it: the compiled code, the plan's slots and buffers."""

    def __init__(self, schedule: Schedule, lo: int, hi: int, by_step: dict[int, Any],
                 inplace: frozenset[int]) -> None:
        self.schedule = schedule
        self.plan: Any = None  # the CpuPlan running it (``bind``)
        self.lo, self.hi = lo, hi
        steps = schedule.steps
        self.steps = steps[lo:hi]
        produced: list[Node] = []
        ext: list[Node] = []
        seen: set[int] = set()
        step_of: dict[int, Any] = {}
        for st in self.steps:
            ins = st.inputs if isinstance(st, Kernel) else st.node.inputs
            for x in ins:
                if id(x) not in seen:
                    seen.add(id(x))
                    ext.append(x)
            for o in (st.outputs if isinstance(st, Kernel) else [st.node]):
                seen.add(id(o))
                produced.append(o)
                step_of[id(o)] = st
        # constants never change: their addresses go into the frame once (not per call)
        self.const_arrays = {id(x): np.asarray(x.attrs["value"].array, np.dtype(x.dtype),
                                               order="C")
                             for x in ext if x.op.name == "constant"}
        ext = [x for x in ext if id(x) not in self.const_arrays]
        self.ext = ext
        # values read after the segment (by any step) or returned: they must be arrays in
        # the plan's value list after the call
        later: set[int] = {id(r) for r in schedule.roots}
        for st in steps[:lo] + steps[hi:]:
            for x in (st.inputs if isinstance(st, Kernel) else st.node.inputs):
                later.add(id(x))
        self.kind: dict[int, str] = {}
        self.base: dict[int, Node] = {}  # view id -> its input
        for st in self.steps:
            if isinstance(st, View):
                self.base[id(st.node)] = st.node.inputs[0]
        for o in produced:
            st = step_of[id(o)]
            if isinstance(st, View):
                self.kind[id(o)] = "view"
            elif isinstance(st, Extern) and o.op.shape_only:
                self.kind[id(o)] = "shape"
            elif id(o) in inplace and self._inplace_ok(o):
                self.kind[id(o)] = "inplace"
            else:
                self.kind[id(o)] = "ring" if id(o) in later else "internal"
        # a view that escapes needs its root to escape too (an internal buffer is reused)
        for o in produced:
            if self.kind[id(o)] == "view" and id(o) in later:
                r = self.root(o)
                if self.kind.get(id(r)) == "internal":
                    self.kind[id(r)] = "ring"
        self.escaping = [o for o in produced if id(o) in later]
        rings = [o for o in produced if self.kind[id(o)] == "ring"]
        #: per flat buffer, its members' positions in ``rings`` (their order in the buffer)
        self.pack_groups = [[rings.index(o) for o in members]
                            for members in self._packable(rings)]
        #: the buffers of the ring outputs and of the flat buffers (``bind``)
        self.rings: list[Any] = []
        self.packs: list[tuple[Pack, list[int]]] = []
        # ---- frame layout: [header][externals][ring outputs][counters][the rest]
        pos = HEADER
        self.val: dict[int, int] = {}
        for x in ext:
            self.val[id(x)] = pos
            pos += 1
        for o in rings:
            self.val[id(o)] = pos
            pos += 1
        #: the random nodes whose call numbers the frame holds (``bind`` finds counters)
        self.counter_nodes: list[Node] = []
        self.counters: list[Any] = []
        counter_pos: dict[int, int] = {}
        for st in self.steps:
            if isinstance(st, Kernel):
                call = by_step[id(st)]
                for i, j in call.size_sources:
                    if i < 0:
                        node = st.nodes[j]
                        counter_pos[id(node)] = pos
                        self.counter_nodes.append(node)
                        pos += 1
        self.dyn_lo, self.dyn_hi = HEADER, pos
        for o in produced:
            if id(o) not in self.val:
                self.val[id(o)] = pos
                pos += 1
        for c in self.const_arrays:
            self.val[c] = pos
            pos += 1
        self.ext_dtypes = [np.dtype(x.dtype) for x in ext]
        self.ring_nodes = rings
        self.ext_index = {id(x): j for j, x in enumerate(ext)}
        self.layout: list[Step] = []
        #: per step: what sizing needs (kernel call / gemm positions)
        self.info: list[Any] = []
        self.fns: list[Any] = []  # the ctypes functions the frame points to (kept alive)
        fixed: list[tuple[int, int]] = []
        #: (frame position, kernel name) of the kernels' addresses (``bind``)
        self.kernel_pos: list[tuple[int, str]] = []
        for st in self.steps:
            if isinstance(st, Kernel):
                call = by_step[id(st)]
                fpos, npos, flag, args = pos, pos + 1, pos + 2, pos + 3
                pos += 3 + call.nparams
                n_in, n_io = len(call.inputs), len(call.inputs) + len(call.outputs)
                copies = [(self.val[id(x)], j) for j, x in enumerate(call.inputs)]
                copies += [(self.val[id(o)], j) for j, o in enumerate(call.outputs, n_in)]
                nsizes = sum(1 for i, _ in call.size_sources if i >= 0)
                first = n_io + len(call.scratch) + nsizes
                copies += [(counter_pos[id(st.nodes[j])], first + c) for c, (i, j) in
                           enumerate(s for s in call.size_sources if s[0] < 0)]
                self.kernel_pos.append((fpos, call.name))
                # (its index in the layout is the step the driver returns to split it)
                self.info.append(["kernel", call, len(self.layout), args, npos, flag, None])
                self.layout.append(CallKernel(fpos, args, npos, flag, tuple(copies)))
            elif isinstance(st, View):
                n = st.node
                self.layout.append(CopyAddress(self.val[id(n.inputs[0])], self.val[id(n)]))
                self.info.append(("view", n))
            elif st.node.op.shape_only:  # a constant of the signature: no driver step
                self.info.append(("shape", st.node))
            else:
                n = st.node
                layout = matmul2d_layout(n.attrs["spec"])
                assert layout is not None  # a native-able product (_native_able)
                ta, tb, swap = layout
                fn = gemm_fn(np.dtype(n.dtype))
                self.fns.append(fn)
                fpos, prm = pos, pos + 1
                pos += 9
                fixed.append((fpos, _address(fn)))
                if n.op.name == "einsum":
                    a, b = n.inputs
                    alpha = beta = -1
                    src = -1
                else:
                    acc, a, b, al, be = n.inputs
                    alpha, beta = self.val[id(al)], self.val[id(be)]
                    src = -1 if self.kind[id(n)] == "inplace" else self.val[id(acc)]
                    if self.kind[id(n)] == "inplace":  # the result is the accumulator
                        self.layout.append(CopyAddress(self.val[id(acc)], self.val[id(n)]))
                        self.info.append(("alias", n))
                # stored operands are C-contiguous; the flags orient them (see _gemm_dims)
                fa, fb = (TRANS if ta else NO_TRANS), (TRANS if tb else NO_TRANS)
                pa, pb = self.val[id(a)], self.val[id(b)]
                if swap:  # C = (B')^T (A')^T: the operands trade places, each transposed
                    pa, pb, fa, fb = pb, pa, _flip(fb), _flip(fa)
                self.layout.append(CallGemm(
                    fpos, prm, pa, pb, self.val[id(n)], src, fa, fb, n.dtype, alpha,
                    beta, n.inputs[3].dtype if n.op.name == "gemm" else "float32",
                    n.inputs[4].dtype if n.op.name == "gemm" else "float32"))
                self.info.append(("gemm", n, prm, swap, ta, tb, len(self.layout) - 1))
        self.size = pos
        self.template = np.zeros(pos, np.int64)
        for p, v in fixed:
            self.template[p] = v
        for c, arr in self.const_arrays.items():
            self.template[self.val[c]] = arr.ctypes.data
        self.sized: dict[tuple, Sized | None] = {}
        self.name, self.ir = render_driver(self.layout)
        self.ext_slots: list[int] = []
        self.ext_spec: list[tuple[int, np.dtype]] = []
        self.ring_slots: list[int] = []
        self.fn: Any = None  # set by ``bind`` once the module is compiled
        #: positions of the inplace gemms' accumulators among the externals, with the
        #: externals of their operands (checked per call: the accumulator is written)
        self.inplace_checks = []
        for st in self.steps:
            if not isinstance(st, Kernel) and self.kind.get(id(st.node)) == "inplace":
                acc, a, b = st.node.inputs[:3]
                pos_of = self.ext_index
                self.inplace_checks.append((pos_of[id(acc)], [pos_of[id(x)] for x in (a, b)
                                                            if id(x) in pos_of]))
        self.esc_other = [o for o in self.escaping if self.kind[id(o)] != "ring"]
        self.ring_index = {id(o): j for j, o in enumerate(rings)}

    def _packable(self, rings: list[Node]) -> list[list[Node]]:
        """Groups of this segment's escaping outputs that only one later step packing its
        inputs (``op.packs_inputs``, e.g. the gradients an ``allreduce_group`` sums) reads,
        each output directly or through views, in the step's input order: their kernels may
        write them into its flat buffer."""
        roots = {id(r) for r in self.schedule.roots}
        readers: dict[int, set[Any]] = {}
        groups: dict[Any, tuple[Node, ...]] = {}
        for st in self.schedule.steps[self.hi:]:
            node = None if isinstance(st, Kernel) else st.node
            ins = st.inputs if isinstance(st, Kernel) else st.node.inputs
            packer = node if node is not None and node.op.packs_inputs else None
            group_key = getattr(packer.op, "group_key", None) if packer is not None else None
            key = group_key(packer) if group_key is not None else id(st)
            if packer is not None:
                groups[key] = packer.inputs
            for x in ins:
                readers.setdefault(id(x), set()).add(key)
        ring_ids = {id(o) for o in rings}
        found = []
        for key, ins in groups.items():
            bufs = []
            for x in ins:
                b = self.root(x)  # (a view's buffer is its root's)
                chain = [x]
                while chain[-1] is not b:
                    chain.append(self.base[id(chain[-1])])
                if (id(b) not in ring_ids or readers.get(id(x)) != {key}
                        or any(id(c) in roots or (c is not x and id(c) in readers)
                               for c in chain)):
                    break
                bufs.append(b)
            else:
                if len({id(b) for b in bufs}) == len(bufs) and len(
                        {b.dtype for b in bufs}) == 1:
                    found.append(bufs)
        return found

    def _inplace_ok(self, node: Node) -> bool:
        """An in-place gemm writes its accumulator: a variable read from outside the segment
        (its operands may not be views of it)."""
        if node.op.name != "gemm":
            return False
        c = node.inputs[0]
        return c.op.is_leaf and all(self.root(x) is not c for x in node.inputs[1:3])

    def root(self, node: Node) -> Node:
        while id(node) in self.base:
            node = self.base[id(node)]
        return node

    def bind(self, plan: Any, fns: dict[str, Any]) -> None:
        """Attach the compiled code (``fns``: name -> ctypes function of the plan's module)
        and ``plan``, the CpuPlan running the segment: its slots, random counters and
        buffers (the output rings and flat buffers take their addresses into its ``known``)."""
        self.plan = plan
        self.rings = [Ring(plan.known, np.dtype(o.dtype)) for o in self.ring_nodes]
        self.packs = []
        for at in self.pack_groups:
            pack = Pack(plan.known, np.dtype(self.ring_nodes[at[0]].dtype))
            for j in at:  # (the first one the call reaches takes the buffer)
                self.rings[j] = Member(pack, j == min(at))
            self.packs.append((pack, at))
        self.fn = fns[self.name]
        for pos, name in self.kernel_pos:
            self.fns.append(fns[name])
            self.template[pos] = _address(fns[name])
        for info in self.info:
            if info[0] == "kernel":
                info[6] = fns[info[1].name]
        self.ext_slots = [plan.slot[id(x)] for x in self.ext]
        self.ext_spec = list(zip(self.ext_slots, self.ext_dtypes))
        self.ring_slots = [plan.slot[id(o)] for o in self.ring_nodes]
        self.counters = [plan.counter(n) for n in self.counter_nodes]
        self.known, self.small = plan.known, plan.small

    # ------------------------------------------------------------------ per signature
    def size_for(self, sig: tuple, table: dict | None = None,
                 kept: int = SIGNATURES_KEPT) -> Sized | None:
        """The frame of signature ``sig`` (None: run the steps one by one), remembered in
        ``table`` (the segment's own by default; a loop run beside others on the same segment
        keeps frames of its own), which holds at most ``kept`` signatures."""
        table = self.sized if table is None else table
        if len(table) >= kept:
            table.clear()
        sz = table[sig] = self._size(sig)
        return sz

    def _size(self, sig: tuple) -> Sized | None:
        plan = self.plan
        shapes: dict[int, tuple[int, ...]] = {}
        for x, s in zip(self.ext, sig):
            if len(s) != x.ndim or any(d is not None and d != e for d, e in zip(x.shape, s)):
                return None
            shapes[id(x)] = s
        for c, arr in self.const_arrays.items():
            shapes[c] = arr.shape
        fr = self.template.copy()
        keep: list[np.ndarray] = []
        consts: dict[int, np.ndarray] = {}
        split: dict[int, Callable[[], None]] = {}
        ptr = fr.ctypes.data

        def place(node: Node, shape: tuple[int, ...]) -> None:
            shapes[id(node)] = shape
            if self.kind[id(node)] == "internal":
                buf = np.empty(shape, np.dtype(node.dtype))
                keep.append(buf)
                fr[self.val[id(node)]] = buf.ctypes.data

        for info in self.info:
            what = info[0]
            if what == "kernel":
                _, call, k, args, npos, flag, fn = info
                ins = [shapes[id(x)] for x in call.inputs]
                if any(len(s) != x.ndim for s, x in zip(ins, call.inputs)):
                    return None
                try:  # (a mismatch: the step path raises the error, with its message)
                    sizes = kernel_sizes_checked(call, ins)
                except ShapeError:
                    return None
                for o, dims in zip(call.outputs, call.out_dims):
                    place(o, tuple(d if d is not None else sizes[kk] for d, kk in dims))
                n_io = len(call.inputs) + len(call.outputs)
                for j, (dt, dims) in enumerate(call.scratch):
                    buf = np.empty(tuple(d if d is not None else sizes[kk] for d, kk in dims),
                                   np.dtype(dt))
                    keep.append(buf)
                    fr[args + n_io + j] = buf.ctypes.data
                first = n_io + len(call.scratch)
                for j, s in enumerate(sizes):
                    fr[args + first + j] = s
                kind, v = call.outer
                n = v if kind == "const" else sizes[v]
                total = math.prod(d for d in call.domain if d is not None) * math.prod(sizes)
                big = split_wanted(plan, n, total)
                fr[npos] = n
                fr[flag] = 1 if big else 0
                if big:
                    split[k] = functools.partial(run_split, plan, fn, ptr + 8 * args, n)
            elif what == "view":
                n = info[1]
                s = _view_shape(n, shapes[id(n.inputs[0])])
                if s is None:
                    return None
                shapes[id(n)] = s
            elif what == "alias":
                n = info[1]
                shapes[id(n)] = shapes[id(n.inputs[0])]
            elif what == "shape":
                n = info[1]  # the op's reference on an array of that shape and no data
                ghost = [np.broadcast_to(np.zeros((), x.dtype), shapes[id(x)])
                         for x in n.inputs]
                val = np.array(n.op.ref(*ghost, **n.attrs), np.dtype(n.dtype), order="C")
                consts[id(n)] = val
                keep.append(val)
                shapes[id(n)] = val.shape
                fr[self.val[id(n)]] = val.ctypes.data
            else:
                _, n, prm, swap, ta, tb, k = info
                a, b = (n.inputs if n.op.name == "einsum" else n.inputs[1:3])
                dims = _gemm_dims(shapes[id(a)], shapes[id(b)], ta, tb, swap)
                if dims is None:
                    return None
                m, nn, kk, lda, ldb = dims
                if n.op.name == "gemm" and shapes[id(n.inputs[0])] != (m, nn):
                    return None
                itemsize = np.dtype(n.dtype).itemsize
                gbig = 1 if 2 * m * nn * kk >= threads.MT_MIN_FLOPS else 0
                if gbig and plan.products_owned and plan.nthreads > 1 and (
                        m >= 2 * SPLIT_MIN_ROWS or nn >= 2 * SPLIT_MIN_COLS):
                    gbig = 2  # the driver returns; split_gemm runs it (rows across threads)
                    split[k] = functools.partial(split_gemm, self.layout[k], fr)
                fr[prm:prm + 8] = (m, nn, kk, lda, ldb, nn, m * nn * itemsize, gbig)
                if self.kind[id(n)] != "inplace":
                    place(n, (m, nn))
                else:
                    shapes[id(n)] = (m, nn)
        ring_shapes: list[tuple[Any, Any]] = [
            (r, shapes[id(o)]) for r, o in zip(self.rings, self.ring_nodes)]
        for _, at in self.packs:  # members: (shape, offset, the buffer's size)
            sizes = [math.prod(ring_shapes[r][1]) for r in at]
            for r, off in zip(at, itertools.accumulate(sizes, initial=0)):
                ring_shapes[r] = (self.rings[r], (ring_shapes[r][1], off, sum(sizes)))
        # (ndarray exports the buffer protocol; numpy's stubs say so from Python 3.12 only)
        cfr = (ctypes.c_int64 * len(fr)).from_buffer(fr)  # type: ignore[arg-type]
        return Sized(fr, ptr, cfr, ring_shapes, shapes, consts, split, keep)

    # ------------------------------------------------------------------ per call
    def external(self, a: Any, dt: np.dtype) -> tuple[np.ndarray, int]:
        """(array, address) of an external input's value: a known or remembered small array,
        else ``a`` made C-contiguous and of dtype ``dt`` (``_admit``)."""
        ent = self.known.get(id(a))
        if ent is None or ent[0] is not a:
            ent = self.small.get(id(a))
            if ent is None or ent[0] is not a:
                ent = _admit(a, dt, self.small)
        return ent

    def run(self, vals: list[Any]) -> bool:
        """Run the segment on ``vals`` (the plan's value list); False: nothing was run (the
        caller runs the steps one by one)."""
        known, small = self.known, self.small
        arrs = []
        addrs = []
        shapes = []
        for s, dt in self.ext_spec:
            a = vals[s]
            ent = known.get(id(a))
            if ent is None or ent[0] is not a:  # (inline: ``external`` costs a call)
                ent = small.get(id(a))
                if ent is None or ent[0] is not a:
                    ent = _admit(a, dt, small)
            a = ent[0]
            arrs.append(a)
            addrs.append(ent[1])
            shapes.append(a.shape)
        sig = tuple(shapes)
        sz: Sized | None | Literal[False] = self.sized.get(sig, False)
        if sz is False:
            sz = self.size_for(sig)
        if sz is None:
            return False
        if self.inplace_checks:
            for c, ops in self.inplace_checks:
                if not arrs[c].flags.writeable or any(addrs[c] == addrs[o] for o in ops):
                    return False
        outs = []
        for ring, shape in sz.ring_shapes:
            ent = ring.get(shape)
            outs.append(ent[0])
            addrs.append(ent[1])
        if self.counters:
            for ctr in self.counters:
                addrs.append(ctr.take())
        cfr = sz.cframe
        cfr[self.dyn_lo:self.dyn_hi] = addrs
        managed = _thread_header(sz)
        fn, ptr = self.fn, sz.ptr
        k = fn(ptr, 0)
        while k >= 0:  # a step split across threads, then the rest of the driver
            if managed:
                threads.cur[0] = cfr[2]
            sz.split[k]()
            if managed:
                cfr[2] = threads.cur[0]
            k = fn(ptr, k + 1)
        if managed:
            threads.cur[0] = cfr[2]
        for s, o in zip(self.ring_slots, outs):
            vals[s] = o
        if self.esc_other:
            slot = self.plan.slot
            for o in self.esc_other:
                vals[slot[id(o)]] = self._materialize(o, sz, arrs, outs)
        return True

    def _materialize(self, o: Node, sz: Sized, arrs: list[np.ndarray],
                     outs: list[np.ndarray]) -> np.ndarray:
        kind = self.kind.get(id(o), "external")
        if kind == "view":
            return self._materialize(self.base[id(o)], sz, arrs, outs).reshape(
                sz.shapes[id(o)])
        if kind == "shape":
            return sz.consts[id(o)].copy()
        if kind == "inplace":
            return arrs[self.ext_index[id(o.inputs[0])]]
        if id(o) in self.ring_index:
            return outs[self.ring_index[id(o)]]
        if id(o) in self.const_arrays:
            return self.const_arrays[id(o)]
        return arrs[self.ext_index[id(o)]]


class Pack:
    """The flat buffer a call's packed outputs are written into: taken from a ``Ring`` of them
    (reused once nothing holds it nor a view of it) and donated to the collectives
    (``collective.donate``), which then reduce it in place."""

    __slots__ = ("ring", "cur")

    def __init__(self, known: dict[int, tuple[np.ndarray, int]], dtype: np.dtype) -> None:
        self.ring = Ring(known, dtype)
        #: (buffer, address) of the current call (the ring's own entry: no extra reference)
        self.cur: tuple[np.ndarray, int] = (np.empty(0, dtype), 0)

    def take(self, size: int) -> None:
        """Make ``cur`` a free buffer of ``size`` elements."""
        self.cur = self.ring.get((size,))
        collective.donate(self.cur[0])


class Member:
    """One output written into a :class:`Pack`'s buffer, in a ring's place (``get``: its view
    and address); the member a call reaches first takes the call's buffer."""

    __slots__ = ("pack", "first")

    def __init__(self, pack: Pack, first: bool) -> None:
        self.pack, self.first = pack, first

    def get(self, where: tuple[tuple[int, ...], int, int]) -> tuple[np.ndarray, int]:
        shape, off, size = where
        if self.first:
            self.pack.take(size)
        buf, addr = self.pack.cur
        return buf[off:off + math.prod(shape)].reshape(shape), addr + off * buf.itemsize


def _thread_header(sz: Sized) -> int:
    """Write the frame header's BLAS thread fields for a call of the driver on ``sz``: the
    set-count function, the big-product count and the count in force inside a thread scope
    (returned; the caller copies the driver's final count, ``cframe[2]``, back to
    ``threads.cur``), or 0 outside one, where the driver leaves BLAS alone."""
    managed = threads.cur[0]
    if managed:
        sz.cframe[0:3] = (_set_threads_address(), threads.big[0], managed)
        sz.managed = True
    elif sz.managed:
        sz.cframe[0] = 0
        sz.managed = False
    return managed


def split_gemm(st: CallGemm, fr: np.ndarray) -> None:
    """Run the product of driver step ``st`` (its frame ``fr``, sized: ``big`` is 2) itself:
    in shares of C on symk's threads (``externs.own_split``), or as one call with the scope's
    big-product count."""
    m, n, k, lda, ldb, ldc = (int(v) for v in fr[st.prm:st.prm + 6])
    real = np.dtype(st.real)
    call = gemm_fn(real)
    assert call is not None  # the product was driven natively (_native_able)
    al, be = _scalar_at(fr, st.alpha, st.alpha_t, 1.0), _scalar_at(fr, st.beta, st.beta_t, 0.0)
    a, b, c = int(fr[st.a]), int(fr[st.b]), int(fr[st.c])
    flops = 2 * m * n * k
    parts, axis = own_split(flops, m, n)
    if parts > 1:
        gemm_shares(call, st.ta, st.tb, m, n, k, al, a, lda, b, ldb, be, c, ldc,
                    real.itemsize, parts, axis)
        return
    threads.product(flops)
    call(ROW_MAJOR, st.ta, st.tb, m, n, k, al, a, lda, b, ldb, be, c, ldc)


def _scalar_at(fr: np.ndarray, pos: int, dtype: str, default: float) -> float:
    """The 0-d value of ``dtype`` whose address is ``fr[pos]`` (``pos`` -1: ``default``)."""
    if pos < 0:
        return default
    ct = ctypes.c_float if dtype == "float32" else ctypes.c_double
    return float(ct.from_address(int(fr[pos])).value)


def _flip(flag: int) -> int:
    return NO_TRANS if flag == TRANS else TRANS


def _gemm_dims(sa: tuple, sb: tuple, ta: bool, tb: bool, swap: bool,
               ) -> tuple[int, int, int, int, int] | None:
    """(m, n, k, lda, ldb) of the CBLAS call for C-contiguous operands of shapes ``sa``/``sb``
    (lda/ldb in the call's operand order), or None when the sizes disagree or one is 0."""
    if len(sa) != 2 or len(sb) != 2:
        return None
    am, ak = (sa[1], sa[0]) if ta else sa
    bk, bn = (sb[1], sb[0]) if tb else sb
    if ak != bk or not (am and bn and ak):
        return None
    lda, ldb = sa[1], sb[1]
    if swap:  # C (N x M) = B'^T A'^T
        return bn, am, ak, ldb, lda
    return am, bn, ak, lda, ldb


def _view_shape(n: Node, s: tuple[int, ...]) -> tuple[int, ...] | None:
    """The run-time shape of a view node of input shape ``s``: its op's type rule on that
    shape (None: it does not apply)."""
    try:
        t = n.op.infer([Type(n.inputs[0].dtype, s)], **n.attrs)
    except ShapeError:
        return None
    out = tuple(d for d in t.shape if d is not None)
    return out if len(out) == len(t.shape) else None


def _admit(a: Any, dt: np.dtype, small: dict) -> tuple[np.ndarray, int]:
    """(array, address) of an external input: C-contiguous, of the kernel's dtype (copied
    when it is not); small ones that need no copy are remembered (see ``CpuPlan.small``)."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype != dt or not a.flags.c_contiguous:
        a = a.astype(dt, order="C")
        return a, a.ctypes.data
    ent = (a, a.ctypes.data)
    if a.nbytes <= SMALL_INPUT_BYTES:
        if len(small) >= SMALL_INPUTS_KEPT:
            small.clear()
        small[id(a)] = ent
    return ent


_set_addr: list[int] = []
_SETFN = ctypes.CFUNCTYPE(None, ctypes.c_int)


@_SETFN
def _traced_set(n: int) -> None:
    """The drivers' set-thread-count function while ``threads.trace`` is on (tests): the
    same ``threads._set`` the Python steps use, so its hooks see every change."""
    threads._set(n)  # noqa: SLF001


def _set_threads_address() -> int:
    """The address of the BLAS's set-thread-count function (0: none with a C entry); a
    callback into ``threads`` while its test hook ``trace`` is on."""
    if threads.trace is not None:
        return _address(_traced_set)
    if not _set_addr:
        api = threads.blas_api()
        _set_addr.append(_address(api[1]) if api else 0)
    return _set_addr[0]


def split_wanted(plan: Any, n: int, total: int) -> bool:
    """Whether a kernel of ``n`` outer iterations over ``total`` elements is split across
    ``plan``'s threads (see PARALLEL_MIN_ELEMENTS and BLAS_SPLIT_FACTOR)."""
    return plan.nthreads > 1 and n >= 2 and total >= PARALLEL_MIN_ELEMENTS * plan.split_factor


def run_split(plan: Any, fn: Any, ptr: int, n: int) -> None:
    """Run a kernel (argument block at ``ptr``) over ``[0, n)`` split across the free cores,
    at most the plan's thread count (on the calling thread alone when that is one)."""
    parts = min(threads.kernel_threads(plan.nthreads), n)
    if parts <= 1:
        fn(ptr, 0, n)
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    on_pool(plan.nthreads, lambda lo, hi: fn(ptr, lo, hi), list(zip(bounds, bounds[1:])))
