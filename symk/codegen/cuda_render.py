"""Render Kernel IR as CUDA C: one ``extern "C" __global__`` function per kernel, plus the
launch description the runtime turns into a grid and block size.

The renderer reads the loop structure of the Kernel IR (the same IR the LLVM renderer gets; no
second lowering) and picks a thread mapping; every instruction inside is rendered by its rule
in ``CudaRenderer.code_for_ins`` (a ``renderer.Renderer``), primitives by the table of
``cuda_math.CudaC``:

- **thread mode** (no accumulators): one grid-stride loop per loop nest of the parallel loop,
  over the flattened iteration space of the parallel loop and the nest's loops (the innermost
  loop varies fastest across threads, so accesses coalesce).  In a nest holding
  ``store_reduce`` (column reductions) only the loops its target index depends on are spread
  over threads; the others run in order inside each thread, so every output element is
  combined by one thread in loop order, and sibling nests (init / combine / finalize) that map
  the same loops give each element to the same thread (no barrier needed).
- **row mode** (accumulators): one block per output row (the parallel loop flattened with the
  kept loops nested in it, grid-stride over rows).  Reduction loops are spread over the block's
  threads, each keeping a partial accumulator that ``acc_read`` combines with a block
  reduction (warp shuffles + shared memory); argmax/argmin reduce (value, index) pairs keeping
  the first extreme; ``acc_scan`` loops run in tiles of ``blockDim.x`` with a block scan and a
  carry; row-level stores are done by thread 0.  A full reduction is a single row: one block
  of up to 1024 threads reduces it (each thread first folds a strided part of the input) --
  the documented equivalent of a two-pass reduction, with no scratch buffer or second launch.
- **serial mode** (structure the renderer does not recognise): each thread runs whole parallel
  iterations in order, which is always correct.

Index arithmetic is 64-bit (``long long``) unless the kernel has no runtime sizes and fewer
than 2**30 domain elements, where it is 32-bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from symk.codegen import cuda_math as cm
from symk.codegen.kir import Ins, Program
from symk.errors import SymkError

#: an extent: ("const", n) or ("size", k) = the k-th size param
Extent = tuple[str, int]


@dataclass
class CudaKernel:
    """A rendered kernel: its source and what its launch configuration depends on."""

    name: str
    source: str
    #: "thread" | "row" | "serial"
    mode: str
    #: thread mode: the largest flattened work (product of extents) of any nest;
    #: row mode: the number of rows; serial: the parallel loop's extent
    work: list[list[Extent]] = field(default_factory=list)
    #: row mode: per-row work of each reduction loop nest (picks the block size)
    inner: list[list[Extent]] = field(default_factory=list)
    #: whether the block size must be a multiple of 32 (block collectives)
    collective: bool = False


@dataclass
class _Loop:
    r: int  # index of the range instruction
    body: list  # of int (instruction index) or _Loop


def _tree(prog: Program) -> list:
    root: list = []
    stack = [root]
    for i, ins in enumerate(prog.ins):
        if ins.op == "range":
            lp = _Loop(i, [])
            stack[-1].append(lp)
            stack.append(lp.body)
        elif ins.op == "end":
            stack.pop()
        else:
            stack[-1].append(i)
    if len(stack) != 1:
        raise SymkError(f"kernel {prog.name}: unbalanced range/end in its Kernel IR")
    return root


def _walk(items: list) -> Iterator[int]:
    for it in items:
        if isinstance(it, _Loop):
            yield it.r
            yield from _walk(it.body)
        else:
            yield it


class CudaRenderer(cm.CudaC):
    """One kernel's ``__global__`` function: the thread mapping (``render``) around
    instructions rendered by the rules of ``code_for_ins`` (primitives: ``cuda_math.CudaC``)."""

    def __init__(self, prog: Program) -> None:
        super().__init__(prog)
        self.lines: list[str] = []
        self.depth = 1
        self.names: dict[int, str] = {}
        self.sizes = [pi for pi in prog.params if prog.ins[pi].arg[1] == "size"]
        self.index_vals = self._index_values()
        self.idx_t = "int" if self._small() else "long long"

    # ------------------------------------------------------------ analysis
    def _index_values(self) -> set[int]:
        """Instructions holding index arithmetic (loop indices, sizes and their sums and
        products): rendered with the kernel's index type."""
        out: set[int] = set()
        for i, ins in enumerate(self.ins):
            if ins.op == "range" or (ins.op == "param" and ins.arg[1] == "size"):
                out.add(i)
            elif ins.op == "alu" and ins.dtype == "int64" and ins.arg in (
                    "add", "sub", "mul") and all(
                    a in out or (self.ins[a].op == "const" and self.ins[a].dtype == "int64")
                    for a in ins.args) and any(a in out for a in ins.args):
                out.add(i)
        return out

    def _small(self) -> bool:
        if self.sizes:
            return False
        ext: dict = {}
        for ins in self.ins:
            if ins.op == "range":
                end = self.ins[ins.args[1]]
                if end.op != "const":
                    return False
                ext[ins.arg.get("axis")] = int(end.arg)
        total = 1
        for v in ext.values():
            total *= max(v, 1)
        return total < (1 << 30)

    def extent(self, r: int) -> Extent | None:
        """The extent of range ``r`` when it is uniform (start 0, end a constant or a size)."""
        start, end = (self.ins[a] for a in self.ins[r].args)
        if start.op != "const" or int(start.arg) != 0:
            return None
        if end.op == "const":
            return ("const", int(end.arg))
        if end.op == "param" and end.arg[1] == "size":
            return ("size", self.sizes.index(self.ins[r].args[1]))
        return None

    def deps(self, i: int, memo: dict[int, frozenset]) -> frozenset:
        """Range instructions the value ``i`` depends on."""
        if i in memo:
            return memo[i]
        ins = self.ins[i]
        if ins.op == "range":
            out = frozenset([i])
        elif ins.op in ("param", "const"):
            out = frozenset()
        else:
            out = frozenset().union(*[self.deps(a, memo) for a in ins.args])
        memo[i] = out
        return out

    # ------------------------------------------------------------ text helpers
    def line(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def open(self, text: str) -> None:
        self.line(text + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def ref(self, i: int) -> str:
        ins = self.ins[i]
        if ins.op == "const":
            return self.literal(ins.arg, ins.vdtype)
        return self.names[i]

    def vtype(self, i: int) -> str:
        return self.idx_t if i in self.index_vals else cm.ctype(self.ins[i].vdtype)

    def define(self, i: int, expr: str) -> None:
        self.names[i] = f"v{i}"
        self.line(f"const {self.vtype(i)} v{i} = {expr};")

    # ------------------------------------------------------------ instructions
    # An instruction's rule is called as rule(self, i, ins, ctx): ``ctx`` is "thread" (plain),
    # "row0" (row level of a block: stores by thread 0) or "scan" (inside a scan tile: guarded
    # by ``act``).
    def nothing(self, i: int, ins: Ins, ctx: str) -> None:
        pass

    def load(self, i: int, ins: Ins, ctx: str) -> None:
        buf, idx = ins.args
        v = f"{self.ref(buf)}[{self.ref(idx)}]"
        if ins.dtype == "bool":
            v = f"({v} != 0)"
        if ctx == "scan":
            v = f"(act ? {v} : {self.literal(0, ins.vdtype)})"
        self.define(i, v)

    def store(self, i: int, ins: Ins, ctx: str) -> None:
        """``store`` and ``store_reduce``."""
        buf, idx, val = ins.args
        dt = self.ins[buf].vdtype
        target = f"{self.ref(buf)}[{self.ref(idx)}]"
        v = self.ref(val)
        if ins.op == "store_reduce":
            old = f"({target} != 0)" if dt == "bool" else target
            v = cm.combine(ins.arg, old, f"(({cm.ctype(dt)}){v})")
        guard = {"row0": "if (threadIdx.x == 0) ", "scan": "if (act) "}.get(ctx, "")
        self.line(f"{guard}{target} = ({cm.MEMTYPE[dt]})({v});")

    def alu(self, i: int, ins: Ins, ctx: str) -> None:
        prim = ins.arg
        in_dt = self.operand_dtype(ins)
        if i in self.index_vals:  # index arithmetic never overflows: plain C in idx_t
            args = [str(int(self.ins[a].arg)) + ("" if self.idx_t == "int" else "LL")
                    if self.ins[a].op == "const" else self.ref(a) for a in ins.args]
            self.define(i, f"({args[0]} {cm.ARITH[prim]} {args[1]})")
        else:
            self.define(i, self.primitive(prim, in_dt, [self.ref(a) for a in ins.args]))

    def cast(self, i: int, ins: Ins, ctx: str) -> None:
        src = self.ins[ins.args[0]].vdtype
        self.define(i, cm.cast(self.ref(ins.args[0]), src, ins.vdtype))

    def acc(self, i: int, ins: Ins, ctx: str) -> None:
        self.names[i] = f"a{i}"
        self.line(f"{cm.ctype(ins.vdtype)} a{i} = {self.identity(ins.arg, ins.vdtype)};")

    def argacc(self, i: int, ins: Ins, ctx: str) -> None:
        upd = next(u for u in self.ins if u.op == "argacc_update" and u.args[0] == i)
        vdt = self.ins[upd.args[1]].vdtype
        self.names[i] = f"a{i}"
        self.line(f"{cm.ctype(vdt)} ab{i} = {self.identity(ins.arg, vdt)};")
        self.line(f"long long a{i} = 0;")

    # an update at a row's own level (a rank-0 reduction: no loop to share out) is thread 0's:
    # acc_read then combines the block's partials, which other threads leave at identity
    def acc_update(self, i: int, ins: Ins, ctx: str) -> None:
        acc, v = ins.args
        guard = "if (threadIdx.x == 0) " if ctx == "row0" else ""
        self.line(f"{guard}a{acc} = {cm.combine(self.ins[acc].arg, f'a{acc}', self.ref(v))};")

    def argacc_update(self, i: int, ins: Ins, ctx: str) -> None:
        acc, v, idx = ins.args
        mx = "true" if self.ins[acc].arg == "argmax" else "false"
        guard = "threadIdx.x == 0 && " if ctx == "row0" else ""
        self.line(f"if ({guard}symk_arg_better<{mx}>({self.ref(v)}, (long long){self.ref(idx)}, "
                  f"ab{acc}, a{acc})) {{ ab{acc} = {self.ref(v)}; "
                  f"a{acc} = {self.ref(idx)}; }}")

    def acc_scan(self, i: int, ins: Ins, ctx: str) -> None:
        acc, v = ins.args
        kind = self.ins[acc].arg
        if ctx == "scan":
            ct = cm.ctype(self.ins[acc].vdtype)
            ident = self.identity(kind, self.ins[acc].vdtype)
            self.line(f"{ct} t{i};")
            self.define(i, f"{cm.OPS[kind]}::f(a{acc}, symk_block_scan<{cm.OPS[kind]}>("
                           f"act ? {self.ref(v)} : {ident}, {ident}, &t{i}))")
            self.line(f"a{acc} = {cm.OPS[kind]}::f(a{acc}, t{i});")
        else:
            self.line(f"a{acc} = {cm.combine(kind, f'a{acc}', self.ref(v))};")
            self.define(i, f"a{acc}")

    def acc_read(self, i: int, ins: Ins, ctx: str) -> None:
        acc = self.ins[ins.args[0]]
        a = ins.args[0]
        if ctx == "row0" and acc.op == "acc":
            self.define(i, f"symk_block_reduce<{cm.OPS[acc.arg]}>(a{a})")
        elif ctx == "row0":
            mx = "true" if acc.arg == "argmax" else "false"
            self.define(i, f"symk_block_arg<{mx}>(ab{a}, a{a})")
        else:
            self.define(i, f"a{a}")

    code_for_ins = {
        "param": nothing, "const": nothing, "load": load, "store": store, "store_reduce": store,
        "alu": alu, "cast": cast, "acc": acc, "argacc": argacc, "acc_update": acc_update,
        "argacc_update": argacc_update, "acc_scan": acc_scan, "acc_read": acc_read,
    }

    def serial(self, items: list, ctx: str = "thread") -> None:
        for it in items:
            if isinstance(it, _Loop):
                r = it.r
                lo, hi = (self.ref(a) for a in self.ins[r].args)
                self.names[r] = f"i{r}"
                self.open(f"for ({self.idx_t} i{r} = {lo}; i{r} < {hi}; ++i{r})")
                self.serial(it.body, ctx)
                self.close()
            else:
                self.instr(it, ctx)

    # ------------------------------------------------------------ structure
    def ext_expr(self, e: Extent) -> str:
        return str(e[1]) if e[0] == "const" else f"(({self.idx_t})d{e[1]})"

    def decompose(self, flat: str, ranges: list[int], exts: list[Extent]) -> None:
        """Define the loop variables of ``ranges`` from a flat index (last fastest)."""
        rest = flat
        for k in range(len(ranges) - 1, -1, -1):
            r = ranges[k]
            self.names[r] = f"i{r}"
            if k == 0:
                self.line(f"const {self.idx_t} i{r} = {rest};")
            else:
                e = self.ext_expr(exts[k])
                self.line(f"const {self.idx_t} i{r} = {rest} % {e};")
                self.line(f"const {self.idx_t} q{r} = {rest} / {e};")
                rest = f"q{r}"

    def product(self, exts: list[Extent]) -> str:
        return " * ".join(self.ext_expr(e) for e in exts) if exts else "1"

    def chain(self, lp: _Loop) -> tuple[list[_Loop], list] | None:
        """A perfect nest starting at ``lp`` (each body: constants and one loop), with uniform
        bounds: (its loops, the innermost body); None otherwise."""
        loops = [lp]
        while True:
            body = loops[-1].body
            subs = [x for x in body if isinstance(x, _Loop)]
            rest = [x for x in body if not isinstance(x, _Loop)]
            if len(subs) == 1 and all(self.ins[x].op == "const" for x in rest):
                loops.append(subs[0])
                continue
            break
        if any(self.extent(x.r) is None for x in loops):
            return None
        return loops, loops[-1].body

    def render(self) -> CudaKernel:
        tree = _tree(self.p)
        top_loops = [x for x in tree if isinstance(x, _Loop)]
        ok_top = len(top_loops) == 1 and all(
            self.ins[x].op in ("param", "const") for x in tree if not isinstance(x, _Loop))
        P = top_loops[0] if ok_top else None
        if P is not None and not self.ins[P.r].arg.get("parallel"):
            P = None
        if P is not None and self.extent(P.r) is None:
            P = None
        self._bind_params()
        body_start = len(self.lines)
        kinds = {self.ins[i].op for i in _walk(tree)}
        work: list[list[Extent]]
        inner: list[list[Extent]]
        if P is None:
            mode, work, inner = "serial", [[("const", 1)]], []
            self.open("if (blockIdx.x == 0 && threadIdx.x == 0)")
            self.serial(tree)
            self.close()
        elif kinds & {"acc", "argacc", "acc_scan"}:
            mode, work, inner = self.row_mode(P)
        else:
            mode, work, inner = self.thread_mode(P)
        body = self.lines[body_start:]
        sig = []
        for pi in self.p.params:
            name, kind = self.ins[pi].arg
            dt = self.ins[pi].vdtype
            if kind == "size":
                k = self.sizes.index(pi)
                sig.append(f"long long d{k}")
                self.names[pi] = f"(({self.idx_t})d{k})"
            elif kind == "in":
                sig.append(f"const {cm.MEMTYPE[dt]}* __restrict__ {name}")
            else:
                sig.append(f"{cm.MEMTYPE[dt]}* __restrict__ {name}")
        head = f'extern "C" __global__ void {self.p.name}({", ".join(sig)}) {{'
        src = "\n".join([head, *body, "}"])
        return CudaKernel(self.p.name, src, mode, work, inner,
                          collective=mode == "row")

    def _bind_params(self) -> None:
        for pi in self.p.params:
            name, kind = self.ins[pi].arg
            if kind == "size":
                self.names[pi] = f"(({self.idx_t})d{self.sizes.index(pi)})"
            else:
                self.names[pi] = name

    # thread mode --------------------------------------------------------------------------
    def uniform_extent(self, r: int) -> Extent:
        """The extent of range ``r``, already found uniform (``extent`` is not None)."""
        e = self.extent(r)
        assert e is not None, f"range %{r} has no uniform extent"
        return e

    def thread_mode(self, P: _Loop) -> tuple[str, list[list[Extent]], list[list[Extent]]]:
        pe = self.uniform_extent(P.r)
        self.line(f"const {self.idx_t} gtid = ({self.idx_t})blockIdx.x * blockDim.x + "
                  "threadIdx.x;")
        self.line(f"const {self.idx_t} gstride = ({self.idx_t})gridDim.x * blockDim.x;")
        nests = [x for x in P.body if isinstance(x, _Loop)]
        found: list[tuple[_Loop, list[_Loop], list[int]]] = []
        memo: dict[int, frozenset] = {}
        for lp in nests:
            ch = self.chain(lp)
            if ch is None:
                break
            loops, _ = ch
            has_sr = any(self.ins[i].op == "store_reduce" for i in _walk([lp]))
            if has_sr:
                dep: frozenset = frozenset()
                for i in _walk([lp]):
                    if self.ins[i].op in ("store", "store_reduce"):
                        dep |= self.deps(self.ins[i].args[1], memo)
                mapped = [x.r for x in loops if x.r in dep]
            else:
                mapped = [x.r for x in loops]
            found.append((lp, loops, mapped))
        # None when some nest is not a perfect nest of uniform loops
        plans = found if len(found) == len(nests) else None
        side_effects = any(self.ins[x].op in ("store", "store_reduce")
                           for x in P.body if not isinstance(x, _Loop))
        if plans is not None and len(plans) > 1:
            sigs = {tuple(self.extent(r) for r in m) for _, _, m in plans}
            if len(sigs) > 1:
                plans = None
        if not nests or plans is None or side_effects:
            # grid-stride over the parallel loop only; everything inside runs in order
            self.open(f"for ({self.idx_t} f = gtid; f < {self.ext_expr(pe)}; f += gstride)")
            self.names[P.r] = f"i{P.r}"
            self.line(f"const {self.idx_t} i{P.r} = f;")
            self.serial(P.body)
            self.close()
            return "thread", [[pe]], []
        work: list[list[Extent]] = []
        prefix: list = []
        for it in P.body:
            if not isinstance(it, _Loop):
                prefix.append(it)
                continue
            lp, loops, mapped = next(pl for pl in plans if pl[0] is it)
            exts = [pe] + [self.uniform_extent(r) for r in mapped]
            work.append(exts)
            self.open(f"for ({self.idx_t} f = gtid; f < {self.product(exts)}; f += gstride)")
            self.decompose("f", [P.r] + mapped, exts)
            self.serial(prefix)
            self._nest(loops, set(mapped))
            self.close()
        return "thread", [max(work, key=len)], []

    def _nest(self, loops: list[_Loop], mapped: set[int], ctx: str = "thread") -> None:
        """Render a perfect nest whose ``mapped`` loop variables are already defined."""
        opened = 0
        for k, lp in enumerate(loops):
            if lp.r not in mapped:
                lo, hi = (self.ref(a) for a in self.ins[lp.r].args)
                self.names[lp.r] = f"i{lp.r}"
                self.open(f"for ({self.idx_t} i{lp.r} = {lo}; i{lp.r} < {hi}; ++i{lp.r})")
                opened += 1
            if k == len(loops) - 1:
                self.serial(lp.body, ctx)
        for _ in range(opened):
            self.close()

    # row mode -----------------------------------------------------------------------------
    def row_mode(self, P: _Loop) -> tuple[str, list[list[Extent]], list[list[Extent]]]:
        rows = [P]
        while True:
            body = rows[-1].body
            subs = [x for x in body if isinstance(x, _Loop)]
            rest = [x for x in body if not isinstance(x, _Loop)]
            if len(subs) == 1 and all(self.ins[x].op == "const" for x in rest) and \
                    self.extent(subs[0].r) is not None:
                rows.append(subs[0])
                continue
            break
        exts = [self.uniform_extent(x.r) for x in rows]
        self.open(f"for ({self.idx_t} row = blockIdx.x; row < {self.product(exts)}; "
                  "row += gridDim.x)")
        self.decompose("row", [x.r for x in rows], exts)
        inner: list[list[Extent]] = []
        for it in rows[-1].body:
            if not isinstance(it, _Loop):
                self.instr(it, "row0")
                continue
            kinds = {self.ins[i].op for i in _walk([it])}
            ch = self.chain(it)
            if "acc_scan" in kinds and ch is not None and len(ch[0]) == 1 and \
                    not (kinds & {"acc", "argacc", "store_reduce"}):
                e = self.uniform_extent(it.r)
                inner.append([e])
                n = self.ext_expr(e)
                self.open(f"for ({self.idx_t} base = 0; base < {n}; base += blockDim.x)")
                self.names[it.r] = f"i{it.r}"
                self.line(f"const {self.idx_t} i{it.r} = base + threadIdx.x;")
                self.line(f"const bool act = i{it.r} < {n};")
                self.serial(it.body, "scan")
                self.close()
            elif ch is not None and not (kinds & {"acc", "argacc", "acc_scan", "store_reduce"}):
                loops, _ = ch
                le = [self.uniform_extent(x.r) for x in loops]
                inner.append(le)
                self.open(f"for ({self.idx_t} g = threadIdx.x; g < {self.product(le)}; "
                          "g += blockDim.x)")
                self.decompose("g", [x.r for x in loops], le)
                self._nest(loops, {x.r for x in loops})
                self.close()
            else:  # unknown shape: thread 0 runs it in order (other partials stay identity)
                self.open("if (threadIdx.x == 0)")
                self.serial([it], "thread")
                self.close()
        self.close()
        return "row", [exts], inner


def render_cuda(prog: Program) -> CudaKernel:
    """Render one kernel (its source does not include ``cuda_math.PRELUDE``)."""
    return CudaRenderer(prog).render()


def module_source(kernels: list[CudaKernel]) -> str:
    """One compilation unit: the prelude and every kernel."""
    return "\n\n".join([cm.PRELUDE, *[k.source for k in kernels]]) + "\n"


__all__ = ["CudaKernel", "render_cuda", "module_source", "Ins"]
