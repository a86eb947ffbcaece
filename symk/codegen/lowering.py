"""Lowering a fused ``Kernel`` group of the Schedule into Kernel IR.

The kernel iterates over its domain D (the reduction's input shape, or the common shape of an
elementwise kernel) with one loop per axis; the outermost kept axis is the parallel loop.
Broadcast inputs and C-contiguous strides become index arithmetic; ``None`` dims become int64
size parameters read at run time.  Reductions open inner loops over the reduced axes with an
accumulator (float32 sums accumulate in float64, like numpy's pairwise sum keeps error small);
softmax/log_softmax/logsumexp use two or three passes over the reduced axis.  Every elementwise
node is emitted by calling its op's scalar expression with a Kernel-IR scalar builder, so no op
math is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from symk.codegen import kir_verify
from symk.codegen.kir import Program
from symk.codegen.kir_dce import eliminate_dead_code
from symk.errors import SymkError
from symk.graph.node import Node
from symk.graph.op import IndexMap
from symk.graph.ops.leaves import const_array, is_immediate
from symk.graph.ops.reduce import Reduce, accumulator_dtype, identity
from symk.passes.schedule import Kernel

_CMP = ("lt", "le", "gt", "ge", "eq", "ne")
_LOGIC = ("logical_and", "logical_or", "logical_not")


class _ScalarOp(Protocol):
    """What lowering calls on an op it computes as a scalar expression: an elementwise op
    (``Elementwise``) or a counter-based random op (``scalar`` only)."""

    def scalar(self, b: Any, *args: Any, **attrs: Any) -> Any: ...

    def input_dtypes(self, dtypes: Sequence[str], **attrs: Any) -> list[str]: ...

    def out_dtype(self, dtypes: Sequence[str], **attrs: Any) -> str: ...


class KirBuilder:
    """The scalar builder of ``symk.graph.scalar`` that emits Kernel-IR instructions."""

    def __init__(self, prog: Program) -> None:
        self.p = prog

    def dtype(self, x: int) -> str:
        return self.p.ins[x].vdtype

    def const(self, value: Any, dtype: str) -> int:
        return self.p.const(np.asarray(value, dtype=dtype).item(), dtype)

    def c(self, value: Any, like: int) -> int:
        return self.const(value, self.dtype(like))

    def cast(self, x: int, dtype: str) -> int:
        return x if self.dtype(x) == dtype else self.p.emit("cast", dtype, (x,), dtype)

    def __getattr__(self, prim: str) -> Callable[..., int]:
        from symk.graph.scalar import PRIMITIVES

        if prim not in PRIMITIVES:
            raise AttributeError(prim)

        def emit(*args: int) -> int:
            if prim in _CMP or prim in _LOGIC:
                dt = "bool"
            elif prim == "where":
                dt = self.dtype(args[1])
            else:
                dt = self.dtype(args[0])
            return self.p.emit("alu", dt, tuple(args), prim)
        return emit


@dataclass
class LoweredKernel:
    program: Program
    inputs: list[Node]
    outputs: list[Node]
    #: for each size param: (index into inputs, axis of that input) giving its runtime value;
    #: the call-number params of counter-based random nodes follow as (-1, node position)
    size_sources: list[tuple[int, int]]
    #: extent of the parallel loop: ("const", n) or ("size", k) = k-th size param
    outer: tuple[str, int]
    #: for each output, its shape as (static dim or None) and, for None, the size param index
    out_dims: list[list[tuple[int | None, int]]]
    #: the iteration domain (static dims, None for runtime sizes)
    domain: tuple = ()
    #: temporary buffers the caller provides after the outputs: (dtype, dims as out_dims)
    scratch: list | None = None
    #: what the kernel's indexing assumes of its inputs' run-time shapes: (input index, axis,
    #: size param index or -1, static extent) per dimension that is not a broadcast 1; the
    #: caller checks them before the call (an input smaller than assumed would be read past)
    in_checks: list | None = None
    #: size params that must not be 0: the run-time extents of an axis a reduction with no
    #: value over zero elements reduces (``Op.needs_elements``: max, min, argmax, argmin)
    nonempty: list | None = None


def _reduce_axes(r: Node) -> tuple[int, ...]:
    if "axes" in r.attrs:
        return tuple(r.attrs["axes"])
    return (r.attrs["axis"] % r.inputs[0].ndim,)


class _Lowerer:
    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.p = Program(k.name)
        self.b = KirBuilder(self.p)
        self.R = k.reduction
        self.members = {id(n) for n in k.nodes}
        self.pos = {id(n): i for i, n in enumerate(k.nodes)}
        self.D = k.domain
        self.rank = len(self.D)
        if self.R is not None:
            self.red = _reduce_axes(self.R)
            self.O = self.R.shape
        else:
            self.red = ()
            self.O = self.D
        self.kept = [a for a in range(self.rank) if a not in self.red]
        # O axis -> D axis
        self.o_axes = list(range(self.rank)) if len(self.O) == self.rank else self.kept
        self.scopes: list[dict[Any, int]] = [{}]
        #: scratch buffers: (dtype, dims as in out_dims)
        self.scratch: list[tuple[str, list[tuple[int | None, int]]]] = []
        self.loopvar: dict[int, int] = {}
        #: (input node id, D axis of each of its axes) of every input load emitted
        self.loads: dict[tuple[int, tuple[int, ...]], None] = {}
        #: (input node id, its axis, D axis) of each run-time dim an index-map load assumes
        self.map_checks: dict[tuple[int, int, int], None] = {}
        #: an elementwise kernel over a static domain whose every value is the domain's shape
        #: or a broadcast scalar runs one flat loop (see ``_flat``)
        self.flat = False
        #: (axis, lo, hi): the innermost loop runs over [lo, hi) only (see ``_cuts``)
        self.interval: tuple[int, int, int] | None = None

    # ------------------------------------------------------------ params and dims
    def params(self) -> None:
        p = self.p
        # scalar constants become immediates; every other outside value is a buffer param
        self.inputs = [x for x in self.k.inputs if not is_immediate(x)]
        self.in_ids = {id(x): p.param(f"in{i}", "in", x.dtype) for i, x in enumerate(self.inputs)}
        self.out_ids = {id(x): p.param(f"out{i}", "out", x.dtype)
                        for i, x in enumerate(self.k.outputs)}
        self.size_sources: list[tuple[int, int]] = []
        self.dimval: dict[int, int] = {}
        size_index: dict[int, int] = {}
        for a, d in enumerate(self.D):
            if d is None:
                d = self._static_extent(a)
                if d is not None:  # known from now on (out_dims, in_checks, the outer loop)
                    self.D = self.D[:a] + (d,) + self.D[a + 1:]
            if d is not None:
                self.dimval[a] = p.const(d, "int64")
                continue
            src = self._find_source(a)
            size_index[a] = len(self.size_sources)
            self.size_sources.append(src)
            self.dimval[a] = p.param(f"d{a}", "size", "int64")
        self.size_index = size_index
        # counter-based random nodes read their call number from an int64 param after the
        # sizes; its size source is (-1, the node's position in the kernel)
        self.counter_ids: dict[int, int] = {}
        for j, node in enumerate(self.k.nodes):
            if getattr(node.op, "in_kernels", False):
                self.counter_ids[id(node)] = p.param(f"c{j}", "size", "int64")
                self.size_sources.append((-1, j))

    def _static_extent(self, axis: int) -> int | None:
        """The extent of a domain axis the type rules left unknown (None) when a kernel input
        knows it: a dropout mask shaped by ``shape(x)`` is (None, None) and so is its product
        with a (None, 512) value (None dims never broadcast, so the extents agree).  Only used
        when no input has a run-time extent there."""
        if self.R is not None or not any(getattr(n.op, "in_kernels", False)
                                         for n in self.k.nodes):
            return None
        found = None
        for node in self.k.nodes:
            level_axes = list(range(self.rank)) if node is self.R else self._level_axes(node)
            for i, x in enumerate(node.inputs):
                if id(x) in self.members or getattr(node.op, "in_kernels", False):
                    continue
                for d, a in zip(x.shape, self._input_axes(node, i, level_axes)):
                    if a == axis:
                        if d is None:
                            return None
                        if d != 1:
                            found = d
        return found

    def _input_axes(self, node: Node, i: int, level_axes: list[int]) -> list[int | None]:
        """The D axis of each axis of ``node``'s input ``i`` (None: an axis no loop walks, as
        an index a slice fixes): aligned to the right for elementwise ops, through the
        ``IndexMap`` for the input a slice or a transpose reads."""
        x = node.inputs[i]
        im = node.op.index_map(node)
        if im is not None and i == im.source:
            off = len(level_axes) - node.ndim
            return [None if oa is None else level_axes[off + oa] for oa, _, _ in im.axes]
        off = len(level_axes) - x.ndim
        return [level_axes[off + j] if off + j >= 0 else None for j in range(x.ndim)]

    def _find_source(self, axis: int) -> tuple[int, int]:
        for node in self.k.nodes:
            level_axes = list(range(self.rank)) if node is self.R else self._level_axes(node)
            for i, x in enumerate(node.inputs):
                if id(x) in self.members:
                    continue
                for j, a in enumerate(self._input_axes(node, i, level_axes)):
                    if x.shape[j] is None and a == axis:
                        return self.inputs.index(x), j
        raise SymkError(f"internal error: kernel {self.k.name} has no input giving the size of "
                        f"its domain axis {axis}")

    def _level_axes(self, node: Node) -> list[int]:
        """D axis of each axis of ``node``'s shape: nodes shaped like D (or any node when the
        reduction keeps its axes) align to D; the reduction's outputs align to the kept axes."""
        if node.shape == self.D or len(self.O) == self.rank:
            return list(range(self.rank))
        return self.o_axes

    # ------------------------------------------------------------ values
    def lookup(self, node: Node) -> int | None:
        return self.loads_lookup(id(node))

    def loads_lookup(self, key: Any) -> int | None:
        for s in reversed(self.scopes):
            v = s.get(key)
            if v is not None:
                return v
        return None

    def index(self, shape: tuple, level_axes: list[int]) -> int:
        """Flat C-contiguous index of an array of ``shape`` aligned to ``level_axes``."""
        p = self.p
        if self.flat:  # (every shape is the domain's or all 1s, see ``_flat``)
            return self.loopvar[-1] if any(d != 1 for d in shape) else p.const(0, "int64")
        off = len(level_axes) - len(shape)
        idx = None
        stride = None
        for j in range(len(shape) - 1, -1, -1):
            d = shape[j]
            if d == 1:
                continue
            a = level_axes[off + j]
            term = self.loopvar[a] if stride is None else p.emit(
                "alu", "int64", (self.loopvar[a], stride), "mul")
            idx = term if idx is None else p.emit("alu", "int64", (idx, term), "add")
            dv = self.dimval[a]
            stride = dv if stride is None else p.emit("alu", "int64", (stride, dv), "mul")
        return idx if idx is not None else p.const(0, "int64")

    def value(self, node: Node, level_axes: list[int]) -> int:
        v = self.lookup(node)
        if v is not None:
            return v
        if is_immediate(node):
            arr = const_array(node)
            assert arr is not None  # a constant node
            v = self.b.const(arr.reshape(()).item(), node.dtype)
            self.scopes[0][id(node)] = v
            return v
        if id(node) not in self.members:
            key = (id(node), tuple(level_axes))
            v = self.loads_lookup(key)
            if v is None:
                off = len(level_axes) - node.ndim
                self.loads[(id(node), tuple(level_axes[off:]))] = None
                v = self.p.emit("load", node.dtype, (self.in_ids[id(node)],
                                                     self.index(node.shape, level_axes)))
                self.scopes[-1][key] = v
            return v
        # emit the missing internal ancestors first, in topological order (no recursion, so
        # chains of thousands of ops lower fine)
        missing: list[Node] = []
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if id(n) in seen or id(n) not in self.members or self.lookup(n) is not None:
                continue
            seen.add(id(n))
            if not n.op.elementwise and id(n) not in self.counter_ids and \
                    n.op.index_map(n) is None:
                raise SymkError(f"internal error: kernel {self.k.name} needs '{n.op.name}' "
                                "before it is computed")
            missing.append(n)
            stack.extend(n.inputs)
        for n in sorted(missing, key=lambda m: self.pos[id(m)]):
            self._emit_elementwise(n)
        return self.scopes[-1][id(node)]

    def _emit_elementwise(self, node: Node) -> None:
        own = self._level_axes(node)
        im = node.op.index_map(node)
        if im is not None:
            self._emit_index_map(node, im, own)
            return
        op = cast(_ScalarOp, node.op)
        if id(node) in self.counter_ids:  # Philox of (element index, call number)
            index = self.index(node.shape, own)
            v = op.scalar(self.b, index, self.counter_ids[id(node)], **node.attrs)
            self.scopes[-1][id(node)] = self.b.cast(v, node.dtype)
            return
        args = [self.value(i, own) for i in node.inputs]
        ids = op.input_dtypes([i.dtype for i in node.inputs], **node.attrs)
        args = [self.b.cast(a, d) for a, d in zip(args, ids)]
        v = self.b.cast(op.scalar(self.b, *args, **node.attrs),
                        op.out_dtype([i.dtype for i in node.inputs], **node.attrs))
        self.scopes[-1][id(node)] = v

    def _emit_index_map(self, node: Node, im: IndexMap, own: list[int]) -> None:
        """A static slice, its gradient or a transpose as one load of its input at the
        mapped index (``IndexMap``); a gradient's elements outside the slice are zero."""
        p, b = self.p, self.b
        off = len(own) - node.ndim
        zero = p.const(0, "int64")

        def at(a: int) -> int:  # the loop index of the node's axis a (0 on a broadcast 1)
            return zero if node.shape[a] == 1 else self.loopvar[own[off + a]]

        def i64(v: int) -> int:
            return p.const(v, "int64")

        src = node.inputs[im.source]
        pred: int | None = None
        idx: list[int] = []
        for j, (oa, start, step) in enumerate(im.axes):
            if oa is None:
                idx.append(i64(start) if not im.scatter else zero)
            elif im.scatter:  # the source index is i - start, inside [0, extent)
                pos = at(oa) if not start else b.sub(at(oa), i64(start))
                n = im.extents[j]
                cut = self.interval
                if n >= 0 and cut is not None and node.shape[oa] != 1 and \
                        own[off + oa] == cut[0]:
                    if cut[2] <= start or cut[1] >= start + n:  # outside the slice: zero
                        self.scopes[-1][id(node)] = b.const(0, node.dtype)
                        return
                    if start <= cut[1] and cut[2] <= start + n:  # inside: no guard
                        n = -1
                if n >= 0:
                    ok = b.logical_and(b.ge(pos, zero), b.lt(pos, i64(n)))
                    pred = ok if pred is None else b.logical_and(pred, ok)
                    pos = b.where(ok, pos, zero)  # never read outside the source
                idx.append(pos)
            else:  # the source index is start + step * i
                v = at(oa) if step == 1 else b.mul(at(oa), i64(step))
                idx.append(v if not start else b.add(v, i64(start)))
        for a, k in im.pins:
            ok = b.eq(at(a), i64(k))
            pred = ok if pred is None else b.logical_and(pred, ok)
        flat: int | None = None
        stride: int | None = None
        for j in range(src.ndim - 1, -1, -1):
            d = src.shape[j]
            if d == 1:
                continue
            term = idx[j] if stride is None else b.mul(idx[j], stride)
            flat = term if flat is None else b.add(flat, term)
            if d is None:  # read whole (slice_axes): the extent of the node's axis
                oa = im.axes[j][0]
                assert oa is not None  # an axis read whole is an axis of the node
                a = own[off + oa]
                self.map_checks[(id(src), j, a)] = None
                dv = self.dimval[a]
            else:
                dv = i64(d)
            stride = dv if stride is None else b.mul(stride, dv)
        v = p.emit("load", src.dtype, (self.in_ids[id(src)], zero if flat is None else flat))
        if pred is not None:
            v = b.where(pred, v, b.const(0, src.dtype))
        self.scopes[-1][id(node)] = b.cast(v, node.dtype)

    # ------------------------------------------------------------ loops
    def open_loops(self, axes: list[int], parallel_first: bool,
                   bounds: tuple[int, int] | None = None) -> list[int]:
        """Loops over ``axes`` (outermost first), each over its whole extent, or the single
        one over ``bounds``."""
        opened = []
        for n, a in enumerate(axes):
            lo, hi = (self.p.const(0, "int64"), self.dimval[a]) if bounds is None else (
                self.p.const(bounds[0], "int64"), self.p.const(bounds[1], "int64"))
            r = self.p.emit("range", "int64", (lo, hi),
                            {"axis": a, "parallel": parallel_first and n == 0})
            self.loopvar[a] = r
            self.scopes.append({})
            opened.append(r)
        return opened

    def close_loops(self, opened: list[int]) -> None:
        for r in reversed(opened):
            self.p.emit("end", None, (r,))
            self.scopes.pop()

    def store_outputs(self, nodes: list[Node]) -> None:
        for o in nodes:
            la = self._level_axes(o)
            v = self.value(o, la)
            self.p.emit("store", None, (self.out_ids[id(o)], self.index(o.shape, la), v))

    # ------------------------------------------------------------ kernels
    def lower(self) -> LoweredKernel:
        self.params()
        if self.R is None:
            axes = list(range(self.rank))
            if not axes:
                self.dimval[-1] = self.p.const(1, "int64")
                axes = [-1]
            elif self._flat():
                self.flat = True
                flat_n = int(np.prod(self.D))
                self.dimval[-1] = self.p.const(flat_n, "int64")
                axes = [-1]
            cuts = [] if self.flat else self._cuts()
            if cuts:  # one innermost loop per interval between the slices' bounds
                opened = self.open_loops(axes[:-1], True)
                last = axes[-1]
                for lo, hi in zip(cuts, cuts[1:]):
                    self.interval = (last, lo, hi)
                    inner = self.open_loops([last], False, (lo, hi))
                    self.store_outputs(self.k.outputs)
                    self.close_loops(inner)
                self.interval = None
            else:
                opened = self.open_loops(axes, True)
                self.store_outputs(self.k.outputs)
            self.close_loops(opened)
            outer = ("const", flat_n) if self.flat else self._outer(axes[0])
        elif self._column_mode():
            outer = self._column_reduction()
        else:
            outer_axes = self.kept or [-1]
            if not self.kept:
                self.dimval[-1] = self.p.const(1, "int64")
            opened = self.open_loops(outer_axes, True)
            self._reduction()
            self.close_loops(opened)
            outer = self._outer(outer_axes[0])
        out_dims = []
        for o in self.k.outputs:
            la = self._level_axes(o)
            off = len(la) - o.ndim
            dims = [d if d is not None else self.D[la[off + j]] for j, d in enumerate(o.shape)]
            out_dims.append([(d, -1 if d is not None else self.size_index[la[off + j]])
                             for j, d in enumerate(dims)])
        nonempty = sorted({self.size_index[a] for a in self.red if self.D[a] is None}) \
            if self.R is not None and self.R.op.needs_elements else []
        return LoweredKernel(self.p, list(self.inputs), list(self.k.outputs),
                             self.size_sources, outer, out_dims, tuple(self.D), self.scratch,
                             self._in_checks(), nonempty)

    def _cuts(self) -> list[int]:
        """The innermost axis's bounds ``[0, c1, ..., extent]`` at the static bounds of the
        slices that gradients of slices read there (``IndexMap.scatter``), or [] (no such
        slice, a run-time extent, or rank 1: the parallel loop is never cut).  Within each
        interval a slice's gradient is a plain load or zero, so the loops vectorize instead
        of gathering with a guard per element."""
        last = self.rank - 1
        if self.rank < 2 or self.D[last] is None:
            return []
        cuts = {0, self.D[last]}
        for node in self.k.nodes:
            im = node.op.index_map(node)
            if im is None or not im.scatter:
                continue
            own = self._level_axes(node)
            off = len(own) - node.ndim
            for (oa, start, _), n in zip(im.axes, im.extents):
                if oa is not None and n >= 0 and node.shape[oa] != 1 and own[off + oa] == last:
                    cuts |= {min(max(start, 0), self.D[last]),
                             min(max(start + n, 0), self.D[last])}
        return sorted(cuts) if len(cuts) > 2 else []

    def _flat(self) -> bool:
        """Whether an elementwise kernel can run as one loop over all its elements: a static
        domain of rank >= 2 and every input, node and output shaped like it or all 1s, so
        each element's index is the same flat position everywhere (a (256, 10) Adam update
        then vectorizes over 2560 elements instead of 256 rows of 10)."""
        if self.rank < 2 or any(d is None for d in self.D):
            return False
        if any(n.op.index_map(n) is not None for n in self.k.nodes):
            return False
        values = [x for x in self.k.inputs if not is_immediate(x)] + list(self.k.nodes)
        return all(tuple(x.shape) == self.D or all(d == 1 for d in x.shape) for x in values)

    def _in_checks(self) -> list[tuple[int, int, int, int]]:
        """The run-time extent each input load assumes, per input axis that is indexed (a
        static 1 is broadcast and never indexed); the size params' own sources are skipped."""
        pos = {id(x): i for i, x in enumerate(self.inputs)}
        sources = set(self.size_sources)
        checks: dict[tuple[int, int, int, int], None] = {}
        for (nid, axes) in self.loads:
            j = pos[nid]
            for ax, (d, a) in enumerate(zip(self.inputs[j].shape, axes)):
                if d == 1 or (j, ax) in sources:
                    continue
                if self.D[a] is None:
                    checks[(j, ax, self.size_index[a], 0)] = None
                elif d is None:
                    checks[(j, ax, -1, self.D[a])] = None
        for nid, ax, a in self.map_checks:
            j = pos[nid]
            if (j, ax) in sources:
                continue
            checks[(j, ax, self.size_index[a], 0) if self.D[a] is None
                   else (j, ax, -1, self.D[a])] = None
        return list(checks)

    def _outer(self, axis: int) -> tuple[str, int]:
        if axis == -1:
            return ("const", 1)
        d = self.D[axis]
        return ("const", d) if d is not None else ("size", self.size_index[axis])

    @property
    def reduction(self) -> Node:
        """The kernel's reduction (what the reduction building blocks work on)."""
        assert self.R is not None, "a reduction building block in a kernel without one"
        return self.R

    def reduce(self, kind: str, acc_dtype: str, fn: Callable[[int], int]) -> int:
        """(A building block of the hooks.) A pass over the reduced axes accumulating
        ``fn(x)`` (``x``: the input's value) by ``kind`` in ``acc_dtype``: the accumulated
        value."""
        acc = self.p.emit("acc", acc_dtype, (), kind)
        opened = self.open_loops(list(self.red), False)
        x = self.value(self.reduction.inputs[0], list(range(self.rank)))
        self.p.emit("acc_update", None, (acc, self.b.cast(fn(x), acc_dtype)))
        self.close_loops(opened)
        return self.p.emit("acc_read", acc_dtype, (acc,))

    def _column_mode(self) -> bool:
        """A plain reduction that keeps the innermost axis, whose outputs are the reduction or
        values on its output side (its epilogue): accumulate into an output-shaped buffer
        walking memory contiguously, then compute the outputs in one pass over the kept axes."""
        R = self.reduction
        if not (R.op.combine is not None and self.rank >= 2 and self.rank - 1 in self.kept):
            return False
        prologue: set[int] = set()  # the reduction's input side, computed in its loop
        stack = [R.inputs[0]]
        while stack:
            n = stack.pop()
            if id(n) in self.members and id(n) not in prologue:
                prologue.add(id(n))
                stack.extend(n.inputs)
        return not any(id(o) in prologue for o in self.k.outputs)

    def _column_reduction(self) -> tuple[str, int]:
        R, p, b = self.reduction, self.p, self.b
        op = R.op
        # column mode: a reduction that combines elementwise (only ``Reduce`` ops do)
        assert isinstance(op, Reduce) and op.combine is not None
        kind = op.combine
        acc_dt = accumulator_dtype(kind, R.dtype)
        o_axes = self._level_axes(R)
        if acc_dt == R.dtype and id(R) in self.out_ids:
            acc_buf = self.out_ids[id(R)]
        else:  # a scratch buffer shaped like the reduction's output
            off = len(o_axes) - R.ndim
            self.scratch.append((acc_dt, [(d, -1 if d is not None else
                                           self.size_index[o_axes[off + j]])
                                          for j, d in enumerate(R.shape)]))
            acc_buf = p.param(f"scratch{len(self.scratch) - 1}", "scratch", acc_dt)
            # scratch params must follow the outputs: move it before the size params
            p.params.remove(acc_buf)
            p.params.insert(len(self.inputs) + len(self.k.outputs) + len(self.scratch) - 1,
                            acc_buf)
        first = self.kept[0]
        par = first if first != self.rank - 1 else -1
        if par == -1:
            self.dimval[-1] = p.const(1, "int64")
        opened = self.open_loops([par], True)
        rest = [a for a in self.kept if a != par]
        inner = self.open_loops(rest, False)  # 1: identity everywhere
        p.emit("store", None, (acc_buf, self.index(R.shape, o_axes),
                               b.const(identity(kind, acc_dt), acc_dt)))
        self.close_loops(inner)
        inner = self.open_loops([a for a in range(self.rank) if a != par], False)  # 2: combine
        x = self.value(R.inputs[0], list(range(self.rank)))
        x = b.cast(x, "bool") if kind in ("any", "all") else b.cast(x, acc_dt)
        p.emit("store_reduce", None, (acc_buf, self.index(R.shape, o_axes), x), kind)
        self.close_loops(inner)
        if op.averages or self.k.outputs != [R] or acc_buf != self.out_ids[id(R)]:
            # 3: scale by 1/count, cast, then the epilogue and the stores
            inner = self.open_loops(rest, False)
            v = p.emit("load", acc_dt, (acc_buf, self.index(R.shape, o_axes)))
            if op.averages:
                v = b.div(v, b.cast(self.count(), acc_dt))
            self.scopes[-1][id(R)] = b.cast(v, R.dtype)
            self.store_outputs(self.k.outputs)
            self.close_loops(inner)
        self.close_loops(opened)
        return self._outer(par)

    def scan(self, kind: str) -> None:
        """(A building block of the hooks.) One pass along the scan axis (backwards with
        ``reverse``) carrying the running combination by ``kind``; outputs (and the epilogue)
        are stored inside the pass."""
        R = self.reduction
        (a,) = self.red
        acc = self.p.emit("acc", R.dtype, (), kind)
        opened = self.open_loops([a], False)
        if R.attrs.get("reverse"):
            last = self.p.emit("alu", "int64", (self.dimval[a], self.p.const(1, "int64")), "sub")
            self.loopvar[a] = self.p.emit("alu", "int64", (last, opened[0]), "sub")
        x = self.b.cast(self.value(R.inputs[0], list(range(self.rank))), R.dtype)
        self.scopes[-1][id(R)] = self.p.emit("acc_scan", R.dtype, (acc, x))
        self.store_outputs(self.k.outputs)
        self.close_loops(opened)

    def _reduction(self) -> None:
        """The reduction-like op lowers itself (``op.lower_reduction``) from the building
        blocks below: passes over the reduced axes, then its result."""
        R = self.reduction
        hook = getattr(R.op, "lower_reduction", None)
        if hook is None:
            raise SymkError(f"internal error: no Kernel-IR lowering for reduction "
                            f"'{R.op.name}'")
        hook(R, self)

    # ---------------------------------------------------------- building blocks of the hooks
    def count(self) -> int:
        """The number of reduced elements (int64)."""
        count: int | None = None
        for a in self.red:
            count = self.dimval[a] if count is None else self.p.emit(
                "alu", "int64", (count, self.dimval[a]), "mul")
        assert count is not None, "a reduction over no axis"
        return count

    def result(self, value: int) -> None:
        """The reduction's value on the kept axes: its outputs (and epilogue) are stored."""
        self.scopes[-1][id(self.reduction)] = value
        self.store_outputs(self.k.outputs)

    def per_element(self, fn: Any) -> None:
        """A last pass over the reduced axes whose value at each element is ``fn(x)`` (an op
        that keeps its input's shape, as softmax): its outputs are stored in the pass."""
        opened = self.open_loops(list(self.red), False)
        R = self.reduction
        self.scopes[-1][id(R)] = fn(self.value(R.inputs[0], list(range(self.rank))))
        self.store_outputs(self.k.outputs)
        self.close_loops(opened)

    def arg(self, kind: str) -> int:
        """The index (int64) of the first maximum (``argmax``) or minimum (``argmin``) along
        the one reduced axis."""
        acc = self.p.emit("argacc", "int64", (), kind)
        (a,) = self.red
        opened = self.open_loops([a], False)
        x = self.value(self.reduction.inputs[0], list(range(self.rank)))
        self.p.emit("argacc_update", None, (acc, x, self.loopvar[a]))
        self.close_loops(opened)
        return self.p.emit("acc_read", "int64", (acc,))



def lower_kernel(k: Kernel) -> LoweredKernel:
    """The Kernel IR of ``k`` with its dead instructions removed (``kir_dce``), verified when
    ``kir_verify.ENABLED`` (the test suite)."""
    lk = _Lowerer(k).lower()
    eliminate_dead_code(lk.program)
    if kir_verify.ENABLED:
        kir_verify.verify_lowered(lk)
    return lk


def kernel_sizes(lk: LoweredKernel, inputs: Sequence[np.ndarray]) -> list[int]:
    """Runtime values of the kernel's size params, read from its inputs."""
    return [int(inputs[i].shape[ax]) if i >= 0 else 0 for i, ax in lk.size_sources]


def output_shapes(lk: LoweredKernel, sizes: Sequence[int]) -> list[tuple[int, ...]]:
    return [tuple(d if d is not None else sizes[k] for d, k in dims) for dims in lk.out_dims]


def scratch_buffers(lk: LoweredKernel, sizes: Sequence[int]) -> list[np.ndarray]:
    """Fresh scratch arrays for one run of the kernel (passed after the outputs)."""
    return [np.empty(tuple(d if d is not None else sizes[k] for d, k in dims), dt)
            for dt, dims in (lk.scratch or [])]


def outer_extent(lk: LoweredKernel, sizes: Sequence[int]) -> int:
    kind, v = lk.outer
    return v if kind == "const" else sizes[v]
