"""The Kernel-IR verifier: checks that a ``Program`` is well formed before any target sees it.

``verify`` raises a ``KirVerifyError`` naming the kernel and the instruction (as the ``.kir``
listing prints it) on the first violation of:

- **SSA and scope**: every operand is an earlier instruction that defines a value (not a store,
  an ``end`` or an accumulator update), still in scope: not defined inside a loop that has been
  closed (constants excepted: every target renders them as immediates, and lowering reuses a
  scalar constant emitted in one loop in the next).  ``range``/``end`` nest properly and
  every loop is closed.  A value is an instruction index, so no value can be defined twice;
  what can be is a name: the params list must name each ``param`` instruction exactly once
  and param names must be distinct.
- **types**: dtypes are supported ones; each op's operand kinds and dtypes follow its rule
  (documented in ``kir``; an ``alu``'s result dtype is its first operand's, or its second's for
  ``where``, or bool for comparisons and logic, and operands agree as the renderers assume);
  loads read in/out/scratch buffers and have the buffer's dtype, stores write out/scratch
  buffers a value of the buffer's dtype; indices, loop bounds and sizes are int64.
- **accumulators**: updates come from the accumulator's scope, at its depth (a reduction over
  no loop: a rank-0 input) or deeper (``acc_scan`` and ``argacc_update`` from exactly one loop
  deeper), once; ``acc_read`` at the accumulator's own
  level after its update; the parallel loop is the only one and outermost.
- **bounds** (only with ``dims``, the declared shape of buffers by param name): a load or store
  whose index is affine in the loop indices (see ``kir_bounds``) must stay within
  ``[0, number of elements)``.  An access is *proven* in bounds symbolically, or *violated*
  when some sizes (all sizes set to 0, 1, 2, 3 or 7, every enclosing loop running) or the static
  shapes put the exact extreme of its index outside the buffer (an error), or else *unchecked*:
  a non-affine index (guarded index maps' ``where``, ``floordiv``/``mod``, random bits), a
  coefficient of unproven sign, or an extent unknown to the kernel.  Only the flat index is
  checked, not each axis separately.

``verify_lowered`` derives ``dims`` from a ``LoweredKernel``.  Lowering runs it on every kernel
when ``ENABLED`` is set (the test suite sets it in ``tests/conftest.py``; production leaves it
off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from symk.codegen import kir_bounds as kb
from symk.codegen.kir import Ins, Program
from symk.errors import DTypeError, SymkError
from symk.graph.scalar import PRIMITIVES
from symk.graph.types import as_dtype

if TYPE_CHECKING:
    from symk.codegen.lowering import LoweredKernel

#: run ``verify_lowered`` on every kernel ``lower_kernel`` returns (switched on by the tests)
ENABLED = False

KINDS = ("sum", "prod", "max", "min", "any", "all")
PARAM_KINDS = ("in", "out", "scratch", "size")
#: ops that define no value (nothing may use them as an operand)
NO_VALUE = frozenset({"end", "store", "store_reduce", "acc_update", "argacc_update"})
ACCS = frozenset({"acc", "argacc"})
_CMP = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
_LOGIC = frozenset({"logical_and", "logical_or", "logical_not"})
_UNARY = frozenset({"neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "log1p", "expm1",
                    "erf", "floor", "ceil", "rint", "sign", "logical_not"})
_FLOAT_ONLY = frozenset({"exp", "log", "sqrt", "sin", "cos", "tanh", "log1p", "expm1", "erf"})
_SAMPLES = (0, 1, 2, 3, 7)

#: a buffer's declared dims: static extents, names of size params, or None (unknown)
Dims = Sequence[int | str | None]


class KirVerifyError(SymkError):
    """A Kernel-IR program breaks a rule of the IR (a bug of lowering or of a hand-built IR)."""


@dataclass
class VerifyStats:
    """How many buffer accesses the bounds check proved, and how many it could not decide."""

    proven: int = 0
    unchecked: int = 0


def describe(prog: Program, i: int) -> str:
    """Instruction ``i`` as the listing (``Program.text``) prints it."""
    ins = prog.ins[i]
    args = ", ".join(f"%{a}" for a in ins.args)
    extra = "" if ins.arg is None else f" [{ins.arg}]"
    ty = f" : {ins.dtype}" if ins.dtype else ""
    return f"%{i} = {ins.op}({args}){extra}{ty}"


class _Verifier:
    def __init__(self, prog: Program, dims: Mapping[str, Dims] | None) -> None:
        self.p = prog
        self.dims = dims
        self.i = -1
        self.open: list[int] = []  # the open ranges, outermost first
        self.scope: dict[int, int] = {}  # value -> the innermost range open at its definition
        self.depth: dict[int, int] = {}
        self.updates: dict[int, int] = {}  # accumulator -> number of updates so far
        self.scanned: set[int] = set()  # accumulators of an acc_scan (never read)
        self.aff: dict[int, kb.Affine | None] = {}
        self.bounds: dict[int, tuple[kb.Poly, kb.Poly] | None] = {}
        self.numel: dict[int, kb.Poly] = {}
        self.stats = VerifyStats()

    def fail(self, msg: str) -> NoReturn:
        raise KirVerifyError(f"Kernel IR of kernel '{self.p.name}', instruction "
                             f"{describe(self.p, self.i)}: {msg}")

    # ------------------------------------------------------------ operands
    def ins(self, a: int) -> Ins:
        return self.p.ins[a]

    def operand(self, a: int) -> Ins:
        """Check that operand ``a`` is defined before the current instruction and in scope."""
        if not isinstance(a, int) or a < 0 or a >= len(self.p.ins):
            self.fail(f"operand %{a} is not an instruction of the kernel")
        if a >= self.i:
            self.fail(f"uses %{a} before its definition")
        s = self.scope[a]
        if s >= 0 and s not in self.open:
            self.fail(f"uses %{a} outside the loop %{s} that defines it")
        return self.ins(a)

    def value(self, a: int, dtype: str | None = None) -> str:
        """An operand that is a scalar value (of ``dtype`` if given); returns its dtype."""
        x = self.operand(a)
        if x.op in NO_VALUE or x.op in ACCS or (x.op == "param" and x.arg[1] != "size"):
            what = "a buffer" if x.op == "param" else f"'{x.op}'"
            self.fail(f"operand %{a} is {what}, not a value")
        if dtype is not None and x.dtype != dtype:
            self.fail(f"operand %{a} has dtype {x.dtype}, expected {dtype}")
        return x.vdtype

    def buffer(self, a: int, kinds: tuple[str, ...]) -> Ins:
        x = self.operand(a)
        if x.op != "param" or x.arg[1] not in kinds:
            self.fail(f"operand %{a} is not a buffer param of kind {' or '.join(kinds)}")
        return x

    def acc(self, a: int, ops: frozenset[str]) -> Ins:
        x = self.operand(a)
        if x.op not in ops:
            self.fail(f"operand %{a} is '{x.op}', not an accumulator ({' or '.join(sorted(ops))})")
        return x

    def arity(self, ins: Ins, n: int) -> None:
        if len(ins.args) != n:
            self.fail(f"'{ins.op}' takes {n} operand(s), got {len(ins.args)}")

    def dtype_ok(self, dt: Any) -> None:
        try:
            ok = isinstance(dt, str) and as_dtype(dt) == dt
        except DTypeError:
            ok = False
        if not ok:
            self.fail(f"unsupported dtype {dt!r}")

    # ------------------------------------------------------------ the walk
    def run(self) -> VerifyStats:
        p = self.p
        seen: set[int] = set()
        for pi in p.params:
            if not isinstance(pi, int) or not 0 <= pi < len(p.ins) or p.ins[pi].op != "param":
                raise KirVerifyError(f"Kernel IR of kernel '{p.name}': its params list names "
                                     f"%{pi}, which is not a param instruction")
            if pi in seen:
                self.i = pi
                self.fail("defined twice: the params list names it twice")
            seen.add(pi)
        names: dict[str, int] = {}
        parallel = None
        for i, ins in enumerate(p.ins):
            self.i = i
            if not isinstance(ins, Ins):
                raise KirVerifyError(f"Kernel IR of kernel '{p.name}': %{i} is not an Ins")
            # (a constant is an immediate in every target: in scope anywhere after it)
            self.scope[i] = self.open[-1] if self.open and ins.op != "const" else -1
            self.depth[i] = len(self.open)
            if ins.op == "param":
                self.param(ins, names, seen)
            elif ins.op == "range":
                if not isinstance(ins.arg, dict):
                    self.fail("a range's arg is a dict ({'axis': ..., 'parallel': ...})")
                if ins.arg.get("parallel"):
                    if parallel is not None or self.open:
                        self.fail("a parallel loop must be the kernel's one outermost loop")
                    parallel = i
                self.range(ins)
            elif ins.op == "end":
                self.arity(ins, 1)
                r = ins.args[0]
                if not self.open or r != self.open[-1]:
                    self.fail(f"closes %{r}, which is not the innermost open loop")
                if ins.dtype is not None:
                    self.fail("'end' defines no value (dtype must be None)")
                self.open.pop()
            else:
                rule = getattr(self, f"op_{ins.op}", None)
                if rule is None:
                    self.fail(f"unknown Kernel IR op '{ins.op}'")
                rule(ins)
        if self.open:
            self.i = self.open[-1]
            self.fail("this loop is never closed (no matching 'end')")
        return self.stats

    def param(self, ins: Ins, names: dict[str, int], listed: set[int]) -> None:
        arg = ins.arg
        if not (isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], str)
                and arg[1] in PARAM_KINDS):
            self.fail(f"a param's arg is (name, kind) with kind in {PARAM_KINDS}")
        self.arity(ins, 0)
        self.dtype_ok(ins.dtype)
        if self.open:
            self.fail("params belong to the kernel's top level, not inside a loop")
        if arg[0] in names:
            self.fail(f"param name '{arg[0]}' defined twice (also %{names[arg[0]]})")
        names[arg[0]] = self.i
        if self.i not in listed:
            self.fail("a param missing from the program's params list")
        if arg[1] == "size":
            if ins.dtype != "int64":
                self.fail("a size param is int64")
            self.aff[self.i] = kb.Affine(kb.sym(arg[0]))
        elif self.dims is not None and arg[0] in self.dims:
            n = kb.const(1)
            for k, d in enumerate(self.dims[arg[0]]):
                n = kb.mul(n, kb.const(d) if isinstance(d, int) else
                           kb.sym(d if d is not None else f"{arg[0]}.shape[{k}]"))
            self.numel[self.i] = n

    def range(self, ins: Ins) -> None:
        self.arity(ins, 2)
        if ins.dtype != "int64":
            self.fail("a loop index is int64")
        for a in ins.args:
            self.value(a, "int64")
        lo, hi = (self.aff.get(a) for a in ins.args)
        self.bounds[self.i] = (lo.c, hi.c) if lo is not None and hi is not None and \
            not lo.terms and not hi.terms else None
        self.aff[self.i] = kb.Affine({}, {self.i: kb.const(1)})
        self.open.append(self.i)
        self.scope[self.i] = self.i

    # ------------------------------------------------------------ op rules
    def op_const(self, ins: Ins) -> None:
        self.arity(ins, 0)
        self.dtype_ok(ins.dtype)
        v = ins.arg
        if not isinstance(v, (bool, int, float, np.generic)):
            self.fail(f"a constant is a scalar, got {type(v).__name__}")
        if ins.dtype != "bool" and np.dtype(ins.dtype).kind in "iu":
            if isinstance(v, float) and not float(v).is_integer():
                self.fail(f"{v!r} is not an integer constant")
            info = np.iinfo(np.dtype(ins.dtype))
            if not info.min <= int(v) <= info.max:
                self.fail(f"{v!r} does not fit {ins.dtype}")
            if ins.dtype == "int64":
                self.aff[self.i] = kb.Affine(kb.const(int(v)))

    def op_cast(self, ins: Ins) -> None:
        self.arity(ins, 1)
        self.dtype_ok(ins.dtype)
        self.value(ins.args[0])
        if ins.arg != ins.dtype:
            self.fail(f"a cast's arg ({ins.arg!r}) is its dtype ({ins.dtype})")

    def op_alu(self, ins: Ins) -> None:
        prim = ins.arg
        if prim not in PRIMITIVES or prim in ("const", "cast"):
            self.fail(f"unknown primitive {prim!r}")
        self.arity(ins, 3 if prim == "where" else 1 if prim in _UNARY else 2)
        self.dtype_ok(ins.dtype)
        dts = [self.value(a) for a in ins.args]
        if prim == "where":
            if dts[0] != "bool":
                self.fail(f"the condition of 'where' is bool, got {dts[0]}")
            want = dts[1]
            operands = dts[1:]
        else:
            want = "bool" if prim in _CMP or prim in _LOGIC else dts[0]
            operands = dts
        if len(set(operands)) != 1:
            self.fail(f"operands of '{prim}' have different dtypes {operands}")
        if ins.dtype != want:
            self.fail(f"'{prim}' of {operands[0]} operands has dtype {want}, not {ins.dtype}")
        if prim in _LOGIC and operands[0] != "bool":
            self.fail(f"'{prim}' takes bool operands, got {operands[0]}")
        if prim in _FLOAT_ONLY and np.dtype(operands[0]).kind != "f":
            self.fail(f"'{prim}' takes floating-point operands, got {operands[0]}")
        if prim in ("bitxor", "shr") and np.dtype(operands[0]).kind != "u":
            self.fail(f"'{prim}' takes unsigned integer operands, got {operands[0]}")
        if ins.dtype == "int64":
            self.aff[self.i] = kb.combine(prim, [self.aff.get(a) for a in ins.args])

    def op_load(self, ins: Ins) -> None:
        self.arity(ins, 2)
        buf = self.buffer(ins.args[0], ("in", "out", "scratch"))
        self.value(ins.args[1], "int64")
        if ins.dtype != buf.dtype:
            self.fail(f"a load of a {buf.dtype} buffer has that dtype, not {ins.dtype}")
        self.in_bounds(ins.args[0], ins.args[1])

    def op_store(self, ins: Ins) -> None:
        self.arity(ins, 3)
        buf = self.buffer(ins.args[0], ("out", "scratch"))
        self.value(ins.args[1], "int64")
        self.value(ins.args[2], buf.dtype)
        if ins.dtype is not None:
            self.fail(f"'{ins.op}' defines no value (dtype must be None)")
        if ins.op == "store_reduce" and ins.arg not in KINDS:
            self.fail(f"unknown reduction kind {ins.arg!r}")
        self.in_bounds(ins.args[0], ins.args[1])

    op_store_reduce = op_store

    def op_acc(self, ins: Ins) -> None:
        self.arity(ins, 0)
        self.dtype_ok(ins.dtype)
        if ins.arg not in KINDS:
            self.fail(f"unknown accumulator kind {ins.arg!r}")
        self.updates[self.i] = 0

    def op_argacc(self, ins: Ins) -> None:
        self.arity(ins, 0)
        if ins.arg not in ("argmax", "argmin") or ins.dtype != "int64":
            self.fail("an argacc is 'argmax' or 'argmin' of dtype int64")
        self.updates[self.i] = 0

    def _update(self, ins: Ins, ops: frozenset[str], exact: bool) -> Ins:
        a = ins.args[0]
        acc = self.acc(a, ops)
        d, da = self.depth[self.i], self.depth[a]
        if d < da or (exact and d != da + 1):
            where = "exactly one loop deeper than" if exact else "at the depth of or deeper than"
            self.fail(f"updates %{a} from depth {d}: must be {where} it ({da})")
        self.updates[a] += 1
        if self.updates[a] > 1:
            self.fail(f"a second update of %{a} (one update per accumulator)")
        return acc

    def op_acc_update(self, ins: Ins) -> None:
        self.arity(ins, 2)
        acc = self._update(ins, frozenset({"acc"}), False)
        self.value(ins.args[1], acc.dtype)
        if ins.dtype is not None:
            self.fail("'acc_update' defines no value (dtype must be None)")

    def op_acc_scan(self, ins: Ins) -> None:
        self.arity(ins, 2)
        acc = self._update(ins, frozenset({"acc"}), True)
        self.scanned.add(ins.args[0])
        if acc.arg not in ("sum", "prod"):
            self.fail(f"a scan accumulates 'sum' or 'prod', not {acc.arg!r}")
        self.value(ins.args[1], acc.dtype)
        if ins.dtype != acc.dtype:
            self.fail(f"a scan has its accumulator's dtype {acc.dtype}")

    def op_argacc_update(self, ins: Ins) -> None:
        self.arity(ins, 3)
        self._update(ins, frozenset({"argacc"}), True)
        self.value(ins.args[1])
        self.value(ins.args[2], "int64")
        if ins.dtype is not None:
            self.fail("'argacc_update' defines no value (dtype must be None)")

    def op_acc_read(self, ins: Ins) -> None:
        self.arity(ins, 1)
        a = ins.args[0]
        acc = self.acc(a, ACCS)
        if self.depth[self.i] != self.depth[a]:
            self.fail(f"reads %{a} at depth {self.depth[self.i]}, not at its own ({self.depth[a]})")
        if self.updates[a] != 1 or a in self.scanned:
            self.fail(f"reads %{a}, which no acc_update/argacc_update updated before")
        if ins.dtype != acc.dtype:
            self.fail(f"reads a {acc.dtype} accumulator as {ins.dtype}")

    # ------------------------------------------------------------ bounds
    def in_bounds(self, buf: int, idx: int) -> None:
        if self.dims is None or buf not in self.numel:
            return
        a = self.aff.get(idx)
        loops = {r: b for r in self.open if (b := self.bounds[r]) is not None}
        if a is None or len(loops) != len(self.open):
            self.stats.unchecked += 1
            return
        positive = set()
        for lo, hi in loops.values():
            if not lo and len(hi) == 1:
                ((mono, c),) = hi.items()
                if c >= 1:
                    positive |= set(mono)
        rng = kb.index_range(a, loops, positive)
        if rng is None:
            self.stats.unchecked += 1
            return
        lo, hi = rng
        n = self.numel[buf]
        room = kb.add(kb.add(n, kb.const(1), -1), hi, -1)
        if kb.nonneg(lo, positive) and kb.nonneg(room, positive):
            self.stats.proven += 1
            return
        names = set().union(*(kb.symbols(x) for x in (lo, hi, n)),
                            *(kb.symbols(x) for b in loops.values() for x in b))
        sizes = {self.ins(pi).arg[0] for pi in self.p.params if self.ins(pi).arg[1] == "size"}
        if names <= sizes:
            for v in _SAMPLES if names else (1,):
                env = {s: v for s in names}
                if any(kb.evaluate(h, env) <= kb.evaluate(lo_, env) for lo_, h in loops.values()):
                    continue
                a_lo, a_hi, size = (kb.evaluate(x, env) for x in (lo, hi, n))
                if a_lo < 0 or a_hi >= size:
                    at = f" with sizes {env}" if env else ""
                    self.fail(f"index %{idx} ranges over [{a_lo}, {a_hi}]{at}, outside buffer "
                              f"'{self.ins(buf).arg[0]}' of {size} elements (index "
                              f"{kb.show(lo)} .. {kb.show(hi)}, elements {kb.show(n)})")
        self.stats.unchecked += 1


def verify(prog: Program, dims: Mapping[str, Dims] | None = None) -> VerifyStats:
    """Check ``prog`` (see the module docstring); ``dims`` gives buffer shapes by param name
    (static extents, size param names, None for unknown).  Raises ``KirVerifyError``."""
    return _Verifier(prog, dims).run()


def lowered_dims(lk: LoweredKernel) -> dict[str, list[int | str | None]]:
    """The shape of each buffer param of a lowered kernel, as ``verify`` takes it."""
    p = lk.program
    sizes = [p.ins[pi].arg[0] for pi in p.params if p.ins[pi].arg[1] == "size"]
    bufs = [p.ins[pi].arg[0] for pi in p.params if p.ins[pi].arg[1] != "size"]
    source = {src: k for k, src in enumerate(lk.size_sources) if src[0] >= 0}
    checked = {(j, ax): (sizes[k] if k >= 0 else d) for j, ax, k, d in lk.in_checks or []}
    dims: dict[str, list[int | str | None]] = {}
    for j, x in enumerate(lk.inputs):
        dims[bufs[j]] = [d if d is not None else sizes[source[(j, ax)]] if (j, ax) in source
                         else checked.get((j, ax)) for ax, d in enumerate(x.shape)]
    nin = len(lk.inputs)
    for j, od in enumerate([*lk.out_dims, *[d for _, d in lk.scratch or []]]):
        dims[bufs[nin + j]] = [d if d is not None else sizes[k] for d, k in od]
    return dims


def verify_lowered(lk: LoweredKernel) -> VerifyStats:
    """``verify`` a lowered kernel with the shapes of its buffers."""
    return verify(lk.program, lowered_dims(lk))
