"""Render Kernel IR as LLVM IR text (opaque pointers, llvmlite >= 0.45).

Each kernel becomes ``void @<name>(ptr %args, i64 %start, i64 %end)``: ``args`` holds the buffer
addresses and int64 sizes in parameter order, ``[start, end)`` bounds the parallel loop so the
runtime can split it across threads.  The wrapper calls ``@<name>_body`` whose buffer params are
``noalias`` so the loop vectorizer needs no runtime alias checks.  Transcendentals call the
inline, vectorizable functions of ``llvm_math``; no libm call is ever emitted.

``LLVMRenderer`` is a ``renderer.Renderer``: one rule per Kernel IR op (``code_for_ins``) and
per scalar primitive (``code_for_op``), literals and accumulation identities from the base.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Any

from symk.codegen.kir import Ins, Program
from symk.codegen.renderer import (
    COMPARISONS,
    TRANSCENDENTALS,
    Renderer,
    is_float,
    is_unsigned,
)
from symk.errors import SymkError
from symk.graph.ops.reduce import identity as identity_value

LLTYPE = {"float16": "half", "float32": "float", "float64": "double", "int8": "i8", "int16": "i16",
          "int32": "i32", "int64": "i64", "uint8": "i8", "uint16": "i16", "uint32": "i32",
          "uint64": "i64", "bool": "i1"}
MEMTYPE = {**LLTYPE, "bool": "i8"}
_FCMP = {"lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge", "eq": "oeq", "ne": "une"}
_ICMP = {"lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge", "eq": "eq", "ne": "ne"}
_UCMP = {"lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge", "eq": "eq", "ne": "ne"}
_BITS = {"i1": 1, "i8": 8, "i16": 16, "i32": 32, "i64": 64, "half": 16, "float": 32,
         "double": 64}
# no fast-math flags on elementwise arithmetic: never nnan/ninf (IEEE special values must
# survive), and no contract either, so a*b+c rounds twice like numpy (no FMA): plain
# arithmetic gives bit-identical results on every device
FLAGS = ""
ACC_FLAGS = "reassoc contract"  # accumulators may be reassociated (vectorized reductions)


def fconst(value: float, dt: str) -> str:
    """Exact LLVM literal of a float (hex of the double; float32 values are exact doubles)."""
    v = float(value)
    if dt == "float16":
        import numpy as np

        with np.errstate(over="ignore"):  # a limit beyond float16's range is inf, as meant
            h = np.asarray(v, np.float16)
        return f"0xH{int(h.view(np.uint16)):04X}"
    if dt == "float32":
        v = struct.unpack("f", struct.pack("f", v))[0]
    return f"0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016X}"


class LLVMRenderer(Renderer):
    """One kernel's ``<name>_body`` function: SSA temporaries ``%t<n>``, one basic block per
    loop part, accumulators in ``alloca`` slots (promoted to registers by LLVM)."""

    target = "LLVM"

    def __init__(self, prog: Program) -> None:
        super().__init__(prog)
        self.lines: list[str] = []
        self.n = 0
        self.val: dict[int, str] = {}
        self.decls: set[str] = set()
        self.math: set[tuple[str, str]] = set()
        self.n_math_calls = 0
        self.allocas: list[str] = []
        self.block = "entry"
        self.loops: dict[int, tuple[str, str, str, str]] = {}
        #: loops open now (outermost first), loops with a loop inside, loops of static
        #: bounds and at most ROLLED_MAX iterations
        self.open: list[int] = []
        self.outer: set[int] = set()
        self.short: set[int] = set()

    def tmp(self) -> str:
        self.n += 1
        return f"%t{self.n}"

    def emit(self, text: str) -> None:
        self.lines.append("  " + text)

    def assign(self, t: str, text: str) -> str:
        """Emit ``t = text``; returns ``t``."""
        self.emit(f"{t} = {text}")
        return t

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def intrinsic(self, name: str, ty: str, nargs: int, extra: str = "") -> str:
        suffix = {"half": "f16", "float": "f32", "double": "f64"}.get(ty, ty)
        fn = f"@llvm.{name}.{suffix}"
        self.decls.add(f"declare {ty} {fn}({', '.join([ty] * nargs)}{extra})")
        return fn

    def call_intrinsic(self, t: str, name: str, ty: str, *args: str) -> str:
        """``t = call @llvm.<name>`` on ``args`` (all of type ``ty``)."""
        fn = self.intrinsic(name, ty, len(args))
        return self.assign(t, f"call {ty} {fn}({', '.join(f'{ty} {a}' for a in args)})")

    def call_math(self, name: str, dt: str, args: list[str]) -> str:
        from symk.codegen.llvm_math import fn_name

        ty = LLTYPE[dt]
        self.math.add((name, ty))
        self.n_math_calls += 1
        operands = ", ".join(f"{ty} {a}" for a in args)
        return self.assign(self.tmp(), f"call {ty} @{fn_name(name, ty)}({operands})")

    # ------------------------------------------------------------ values
    def ref(self, i: int) -> str:
        return self.val[i]

    def float_literal(self, value: Any, dt: str) -> str:
        return fconst(value, dt)

    def identity(self, kind: str, dt: str) -> str:
        v = identity_value(kind, dt)
        if is_float(dt) and math.isfinite(v):  # 0.0 and 1.0 are exact as decimals
            return f"{float(v)}"
        return self.literal(v, dt)

    # ------------------------------------------------------------ primitives
    # A primitive's rule is called as rule(self, dt, args, t): ``dt`` the operands' dtype,
    # ``t`` a fresh temporary for the result (a rule may return another value instead).
    def arith(self, prim: str, dt: str, args: list[str], t: str) -> str:
        op = f"f{prim} {FLAGS}" if is_float(dt) else prim
        return self.assign(t, f"{op} {LLTYPE[dt]} {args[0]}, {args[1]}")

    def compare(self, prim: str, dt: str, args: list[str], t: str) -> str:
        if is_float(dt):
            pred = f"fcmp {_FCMP[prim]}"
        else:
            pred = f"icmp {(_UCMP if is_unsigned(dt) else _ICMP)[prim]}"
        return self.assign(t, f"{pred} {LLTYPE[dt]} {args[0]}, {args[1]}")

    def absolute(self, dt: str, args: list[str], t: str) -> str:
        ty = LLTYPE[dt]
        if is_float(dt):
            return self.call_intrinsic(t, "fabs", ty, args[0])
        if is_unsigned(dt):
            return args[0]
        fn = self.intrinsic("abs", ty, 1, ", i1")
        return self.assign(t, f"call {ty} {fn}({ty} {args[0]}, i1 false)")

    def transcendental(self, prim: str, dt: str, args: list[str]) -> str:
        if not is_float(dt) or dt == "float16":
            raise SymkError(f"no vectorized '{prim}' for {dt}")
        return self.call_math(prim, dt, args)

    def rounding(self, prim: str, dt: str, args: list[str], t: str) -> str:
        """floor / ceil / rint (integers are their own rounding)."""
        if not is_float(dt):
            return args[0]
        return self.call_intrinsic(t, prim, LLTYPE[dt], args[0])

    def floordiv(self, dt: str, args: list[str], t: str) -> str:
        if is_float(dt):
            return self.float_floordiv(LLTYPE[dt], args, t)
        return self.int_floordiv(dt, args, t)

    def bits(self, prim: str, dt: str, args: list[str], t: str) -> str:
        """bitxor / shr (logical) of unsigned integers."""
        if is_float(dt):
            raise self.no_rule("primitive", prim)
        op = "xor" if prim == "bitxor" else "lshr"
        return self.assign(t, f"{op} {LLTYPE[dt]} {args[0]}, {args[1]}")

    def minmax(self, prim: str, dt: str, a: str, b: str) -> str:
        """NaN-propagating maximum/minimum (numpy semantics)."""
        ty = LLTYPE[dt]
        t = self.tmp()
        if dt == "bool":
            self.emit(f"{t} = {'or' if prim == 'maximum' else 'and'} i1 {a}, {b}")
            return t
        if is_float(dt):
            name = prim
        else:
            name = ("u" if is_unsigned(dt) else "s") + ("max" if prim == "maximum" else "min")
        return self.call_intrinsic(t, name, ty, a, b)

    def sign(self, dt: str, ty: str, x: str, t: str) -> str:
        e = self.emit
        zero, one, mone = ("0.0", "1.0", "-1.0") if is_float(dt) else ("0", "1", "-1")
        if dt == "bool" or is_unsigned(dt):
            c = self.tmp()
            e(f"{c} = icmp ne {ty} {x}, 0")
            e(f"{t} = zext i1 {c} to {ty}" if ty != "i1" else f"{t} = or i1 {c}, false")
            return t
        pos, neg, inner = self.tmp(), self.tmp(), self.tmp()
        cmp = "fcmp ogt" if is_float(dt) else "icmp sgt"
        cmpn = "fcmp olt" if is_float(dt) else "icmp slt"
        e(f"{pos} = {cmp} {ty} {x}, {zero}")
        e(f"{neg} = {cmpn} {ty} {x}, {zero}")
        rest = x
        if is_float(dt):  # zeros and NaN stay; x + 0.0 turns -0.0 into +0.0 like numpy's sign
            rest = self.tmp()
            e(f"{rest} = fadd {ty} {x}, 0.0")
        e(f"{inner} = select i1 {neg}, {ty} {mone}, {ty} {rest}")
        e(f"{t} = select i1 {pos}, {ty} {one}, {ty} {inner}")
        return t

    def safe_divisor(self, dt: str, b: str) -> tuple[str, str, str | None]:
        """(b == 0, a divisor that cannot trap, b == -1 or None): LLVM's integer division
        traps on 0 and on INT_MIN / -1, so both are divided by 1 and fixed up afterwards."""
        ty = LLTYPE[dt]
        z, sb = self.tmp(), self.tmp()
        self.emit(f"{z} = icmp eq {ty} {b}, 0")
        self.emit(f"{sb} = select i1 {z}, {ty} 1, {ty} {b}")
        if is_unsigned(dt):
            return z, sb, None
        m1, sb2 = self.tmp(), self.tmp()
        self.emit(f"{m1} = icmp eq {ty} {sb}, -1")
        self.emit(f"{sb2} = select i1 {m1}, {ty} 1, {ty} {sb}")
        return z, sb2, m1

    def sign_fix(self, dt: str, r: str, b: str) -> str:
        """r != 0 and r, b of opposite signs: where C's truncating division must be adjusted
        to Python's floor semantics."""
        ty = LLTYPE[dt]
        rnz, rneg, bneg, diff, fix = (self.tmp() for _ in range(5))
        if is_float(dt):
            self.emit(f"{rnz} = fcmp une {ty} {r}, 0.0")
            self.emit(f"{rneg} = fcmp olt {ty} {r}, 0.0")
            self.emit(f"{bneg} = fcmp olt {ty} {b}, 0.0")
        else:
            self.emit(f"{rnz} = icmp ne {ty} {r}, 0")
            self.emit(f"{rneg} = icmp slt {ty} {r}, 0")
            self.emit(f"{bneg} = icmp slt {ty} {b}, 0")
        self.emit(f"{diff} = xor i1 {rneg}, {bneg}")
        self.emit(f"{fix} = and i1 {rnz}, {diff}")
        return fix

    def int_floordiv(self, dt: str, args: list[str], t: str) -> str:
        """Python floor division; a zero divisor gives 0 (like numpy), never a trap."""
        ty = LLTYPE[dt]
        a, b = args
        e = self.emit
        z, sb, m1 = self.safe_divisor(dt, b)
        if m1 is None:
            q = self.tmp()
            e(f"{q} = udiv {ty} {a}, {sb}")
            e(f"{t} = select i1 {z}, {ty} 0, {ty} {q}")
            return t
        q, r, q2, q3, qn, t2 = (self.tmp() for _ in range(6))
        e(f"{q} = sdiv {ty} {a}, {sb}")
        e(f"{r} = srem {ty} {a}, {sb}")
        fix = self.sign_fix(dt, r, sb)
        e(f"{q2} = sub {ty} {q}, 1")
        e(f"{q3} = select i1 {fix}, {ty} {q2}, {ty} {q}")
        e(f"{qn} = sub {ty} 0, {a}")
        e(f"{t2} = select i1 {m1}, {ty} {qn}, {ty} {q3}")
        e(f"{t} = select i1 {z}, {ty} 0, {ty} {t2}")
        return t

    def float_floordiv(self, ty: str, args: list[str], t: str) -> str:
        """numpy's float floor division (its divmod algorithm, not floor(a/b), which differs
        when a/b rounds up to an integer, e.g. 1 // 0.1 == 9, and for inf // 2, which is NaN)."""
        a, b = args
        e = self.emit
        fl = self.intrinsic("floor", ty, 1)
        cs = self.intrinsic("copysign", ty, 2)
        (r, am, div, dm1, d2, f1, fr, half, f2, fl2, dnz, q, z, bz, res) = (
            self.tmp() for _ in range(15))
        e(f"{r} = frem {ty} {a}, {b}")
        e(f"{am} = fsub {ty} {a}, {r}")
        e(f"{div} = fdiv {ty} {am}, {b}")
        fix = self.sign_fix({"half": "float16", "float": "float32"}.get(ty, "float64"), r, b)
        e(f"{dm1} = fsub {ty} {div}, 1.0")
        e(f"{d2} = select i1 {fix}, {ty} {dm1}, {ty} {div}")
        e(f"{f1} = call {ty} {fl}({ty} {d2})")
        e(f"{fr} = fsub {ty} {d2}, {f1}")
        e(f"{half} = fcmp ogt {ty} {fr}, 0.5")
        e(f"{f2} = fadd {ty} {f1}, 1.0")
        e(f"{fl2} = select i1 {half}, {ty} {f2}, {ty} {f1}")
        e(f"{dnz} = fcmp une {ty} {d2}, 0.0")
        e(f"{q} = fdiv {ty} {a}, {b}")
        e(f"{z} = call {ty} {cs}({ty} 0.0, {ty} {q})")
        e(f"{res} = select i1 {dnz}, {ty} {fl2}, {ty} {z}")
        e(f"{bz} = fcmp oeq {ty} {b}, 0.0")
        e(f"{t} = select i1 {bz}, {ty} {q}, {ty} {res}")
        return t

    def mod(self, dt: str, ty: str, args: list[str], t: str) -> str:
        """Python/numpy modulo: the result has the divisor's sign (a zero result too); x % 0 is
        0 for ints."""
        a, b = args
        e = self.emit
        if is_float(dt):
            r, radj, r2, z, zs = (self.tmp() for _ in range(5))
            e(f"{r} = frem {ty} {a}, {b}")
            fix = self.sign_fix(dt, r, b)
            e(f"{radj} = fadd {ty} {r}, {b}")
            e(f"{r2} = select i1 {fix}, {ty} {radj}, {ty} {r}")
            e(f"{z} = fcmp oeq {ty} {r}, 0.0")
            self.call_intrinsic(zs, "copysign", ty, "0.0", b)
            e(f"{t} = select i1 {z}, {ty} {zs}, {ty} {r2}")
            return t
        z, sb, m1 = self.safe_divisor(dt, b)
        r = self.tmp()
        if m1 is None:
            e(f"{r} = urem {ty} {a}, {sb}")
            e(f"{t} = select i1 {z}, {ty} 0, {ty} {r}")
            return t
        radj, r2 = self.tmp(), self.tmp()
        e(f"{r} = srem {ty} {a}, {sb}")
        fix = self.sign_fix(dt, r, sb)
        e(f"{radj} = add {ty} {r}, {sb}")
        e(f"{r2} = select i1 {fix}, {ty} {radj}, {ty} {r}")
        e(f"{t} = select i1 {z}, {ty} 0, {ty} {r2}")
        return t

    def cast(self, x: str, src: str, dst: str) -> str:
        if src == dst:
            return x
        st, dt_ = LLTYPE[src], LLTYPE[dst]
        t = self.tmp()
        e = self.emit
        if dst == "bool":
            if is_float(src):
                e(f"{t} = fcmp une {st} {x}, 0.0")
            else:
                e(f"{t} = icmp ne {st} {x}, 0")
        elif st == "double" and dt_ == "half":
            return self.f64_to_f16(x, t)
        elif is_float(src) and is_float(dst):
            op = "fpext" if _BITS[st] < _BITS[dt_] else "fptrunc"
            e(f"{t} = {op} {st} {x} to {dt_}")
        elif is_float(dst):
            e(f"{t} = {'uitofp' if is_unsigned(src) else 'sitofp'} {st} {x} to {dt_}")
        elif is_float(src) and not is_unsigned(dst):
            return self.fptosi(x, st, dt_, t)
        elif is_float(src):
            name = "fptoui.sat"
            fn = f"@llvm.{name}.{dt_}.{ {'half': 'f16', 'float': 'f32'}.get(st, 'f64')}"
            self.decls.add(f"declare {dt_} {fn}({st})")
            e(f"{t} = call {dt_} {fn}({st} {x})")
        else:
            bs, bd = _BITS[st], _BITS[dt_]
            if bs == bd:
                return x
            if bs > bd:
                e(f"{t} = trunc {st} {x} to {dt_}")
            else:
                e(f"{t} = {'zext' if is_unsigned(src) else 'sext'} {st} {x} to {dt_}")
        return t

    def f64_to_f16(self, x: str, t: str) -> str:
        """double -> half, correctly rounded, without LLVM's ``__truncdfhf2`` libcall (which
        MCJIT cannot resolve: calling it jumped to address 0).  Round to float *to odd*
        (truncate toward zero, set the last bit when inexact), then to half to nearest even:
        with 13 spare bits that gives the same result as one direct rounding."""
        e = self.emit
        f, back, inexact, ax, ab, over, bits, down, pick, odd, fix, g = (
            self.tmp() for _ in range(12))
        fabs = self.intrinsic("fabs", "double", 1)
        e(f"{f} = fptrunc double {x} to float")
        e(f"{back} = fpext float {f} to double")
        e(f"{inexact} = fcmp one double {back}, {x}")  # false for NaN: NaN passes unchanged
        e(f"{ax} = call double {fabs}(double {x})")
        e(f"{ab} = call double {fabs}(double {back})")
        e(f"{over} = fcmp ogt double {ab}, {ax}")  # rounded away from zero: one ulp back
        e(f"{bits} = bitcast float {f} to i32")
        e(f"{down} = sub i32 {bits}, 1")
        e(f"{pick} = select i1 {over}, i32 {down}, i32 {bits}")
        e(f"{odd} = or i32 {pick}, 1")
        e(f"{fix} = select i1 {inexact}, i32 {odd}, i32 {bits}")
        e(f"{g} = bitcast i32 {fix} to float")
        e(f"{t} = fptrunc float {g} to half")
        return t

    def fptosi(self, x: str, st: str, dt_: str, t: str) -> str:
        """Float -> signed int like numpy on x86: NaN, inf and out-of-range values give the
        "integer indefinite" INT_MIN of a 32/64-bit conversion; narrower types convert through
        int32 and truncate (so they get 0)."""
        e = self.emit
        w = max(_BITS[dt_], 32)
        wt = f"i{w}"
        ax, inr, c = self.tmp(), self.tmp(), self.tmp()
        self.call_intrinsic(ax, "fabs", st, x)
        lim = fconst(2.0 ** (w - 1), {"half": "float16", "float": "float32"}.get(st, "float64"))
        e(f"{inr} = fcmp olt {st} {ax}, {lim}")
        e(f"{c} = fptosi {st} {x} to {wt}")
        if w == _BITS[dt_]:
            e(f"{t} = select i1 {inr}, {wt} {c}, {wt} {-(1 << (w - 1))}")
            return t
        s = self.tmp()
        e(f"{s} = select i1 {inr}, {wt} {c}, {wt} {-(1 << (w - 1))}")
        e(f"{t} = trunc {wt} {s} to {dt_}")
        return t

    # ------------------------------------------------------------ program
    def render(self) -> str:
        p = self.p
        sig = []
        for k, pi in enumerate(p.params):
            name, kind = p.ins[pi].arg
            if kind == "size":
                sig.append(f"i64 %p{k}")
                self.val[pi] = f"%p{k}"
            else:
                sig.append(f"ptr noalias %p{k}")
                self.val[pi] = f"%p{k}"
        self.label("entry")
        body_start = len(self.lines)
        for i in range(len(p.ins)):
            self.instr(i)
        self.emit("ret void")
        lines = self.lines[:body_start] + ["  " + a for a in self.allocas] + \
            self.lines[body_start:]
        sig.append("i64 %start")
        sig.append("i64 %end")
        head = f"define internal void @{p.name}_body({', '.join(sig)}) noinline nounwind {{"
        return "\n".join([head, *lines, "}"])

    # ------------------------------------------------------------ instructions
    # An instruction's rule is called as rule(self, i, ins); it sets ``self.val[i]`` when the
    # instruction has a value.
    def nothing(self, i: int, ins: Ins) -> None:
        pass

    def constant(self, i: int, ins: Ins) -> None:
        self.val[i] = self.literal(ins.arg, ins.vdtype)

    def begin_loop(self, i: int, ins: Ins) -> None:
        e = self.emit
        h, b, latch, x = f"L{i}_head", f"L{i}_body", f"L{i}_latch", f"L{i}_exit"
        if ins.arg.get("parallel"):
            lo, hi = "%start", "%end"
        else:
            lo, hi = self.ref(ins.args[0]), self.ref(ins.args[1])
        pred = self.block
        if self.open:
            self.outer.add(self.open[-1])
        self.open.append(i)
        if not ins.arg.get("parallel") and all(self.p.ins[a].op == "const"
                                               for a in ins.args) and \
                self.p.ins[ins.args[1]].arg - self.p.ins[ins.args[0]].arg <= ROLLED_MAX:
            self.short.add(i)
        e(f"br label %{h}")
        self.label(h)
        iv = f"%i{i}"
        self.val[i] = iv
        e(f"{iv} = phi i64 [{lo}, %{pred}], [%i{i}_next, %{latch}]")
        c = self.tmp()
        e(f"{c} = icmp slt i64 {iv}, {hi}")
        e(f"br i1 {c}, label %{b}, label %{x}")
        self.label(b)
        self.loops[i] = (h, b, latch, x)

    def end_loop(self, i: int, ins: Ins) -> None:
        e = self.emit
        h, b, latch, x = self.loops[ins.args[0]]
        e(f"br label %{latch}")
        self.label(latch)
        r = ins.args[0]
        self.open.pop()
        e(f"%i{r}_next = add nsw i64 %i{r}, 1")
        if r in self.short and r not in self.outer:
            # a short innermost loop of static bounds: LLVM would unroll it fully (a row
            # of 32) and then vectorize the loop around it with gathers and scatters
            # (6.7x slower on a (n, 26, 26, 32) kernel); kept rolled, it is vectorized
            e(f"br label %{h}, !llvm.loop {LOOP_MD}{r}")
        else:
            e(f"br label %{h}")
        self.label(x)

    def element(self, buf: int, idx: int, dt: str) -> tuple[str, str]:
        """(memory type, pointer) of ``buf[idx]``, an element of dtype ``dt``."""
        mt = MEMTYPE[dt]
        gp = self.tmp()
        self.emit(f"{gp} = getelementptr inbounds {mt}, ptr {self.ref(buf)}, "
                  f"i64 {self.ref(idx)}")
        return mt, gp

    def load(self, i: int, ins: Ins) -> None:
        buf, idx = ins.args
        mt, gp = self.element(buf, idx, ins.vdtype)
        t = self.assign(self.tmp(), f"load {mt}, ptr {gp}")
        if ins.dtype == "bool":
            t = self.assign(self.tmp(), f"icmp ne i8 {t}, 0")
        self.val[i] = t

    def store(self, i: int, ins: Ins) -> None:
        buf, idx, v = ins.args
        val = self.ref(v)
        dt = self.p.ins[buf].vdtype
        if dt == "bool":
            val = self.assign(self.tmp(), f"zext i1 {val} to i8")
        mt, gp = self.element(buf, idx, dt)
        self.emit(f"store {mt} {val}, ptr {gp}")

    def alu(self, i: int, ins: Ins) -> None:
        args = [self.ref(a) for a in ins.args]
        dt = self.operand_dtype(ins)
        self.val[i] = self.primitive(ins.arg, dt, args, self.tmp())

    def cast_ins(self, i: int, ins: Ins) -> None:
        self.val[i] = self.cast(self.ref(ins.args[0]), self.p.ins[ins.args[0]].vdtype,
                                ins.vdtype)

    def acc_read(self, i: int, ins: Ins) -> None:
        acc = self.p.ins[ins.args[0]]
        ty = LLTYPE[acc.vdtype] if acc.op == "acc" else "i64"
        slot = f"%acc{ins.args[0]}" if acc.op == "acc" else f"%aidx{ins.args[0]}"
        self.val[i] = self.assign(self.tmp(), f"load {ty}, ptr {slot}")

    def acc_init(self, i: int, ins: Ins) -> None:
        ty = LLTYPE[ins.vdtype]
        self.allocas.append(f"%acc{i} = alloca {ty}")
        self.emit(f"store {ty} {self.identity(ins.arg, ins.vdtype)}, ptr %acc{i}")

    def acc_update(self, i: int, ins: Ins) -> None:
        self.accumulate(ins)

    def acc_scan(self, i: int, ins: Ins) -> None:
        self.val[i] = self.accumulate(ins)

    def combine(self, kind: str, dt: str, old: str, x: str) -> str:
        """``old (kind) x`` for an accumulation (reassociable for float sums/products)."""
        ty = LLTYPE[dt]
        new = self.tmp()
        e = self.emit
        if kind in ("sum", "prod"):
            op = {"sum": "add", "prod": "mul"}[kind]
            if is_float(dt):
                e(f"{new} = f{op} {ACC_FLAGS} {ty} {old}, {x}")
            elif dt == "bool":
                e(f"{new} = {'or' if kind == 'sum' else 'and'} i1 {old}, {x}")
            else:
                e(f"{new} = {op} {ty} {old}, {x}")
            return new
        if kind in ("any", "all"):
            e(f"{new} = {'or' if kind == 'any' else 'and'} i1 {old}, {x}")
            return new
        return self.minmax("maximum" if kind == "max" else "minimum", dt, old, x)

    def accumulate(self, ins: Ins) -> str:
        """Combine an ``acc_update`` / ``acc_scan`` value into its accumulator; the new value."""
        acc_i, v = ins.args
        acc = self.p.ins[acc_i]
        ty = LLTYPE[acc.vdtype]
        old = self.tmp()
        self.emit(f"{old} = load {ty}, ptr %acc{acc_i}")
        new = self.combine(acc.arg, acc.vdtype, old, self.ref(v))
        self.emit(f"store {ty} {new}, ptr %acc{acc_i}")
        return new

    def store_reduce(self, i: int, ins: Ins) -> None:
        buf, idx, v = ins.args
        dt = self.p.ins[buf].vdtype
        mt, gp = self.element(buf, idx, dt)
        old = self.assign(self.tmp(), f"load {mt}, ptr {gp}")
        if dt == "bool":
            old = self.assign(self.tmp(), f"icmp ne i8 {old}, 0")
        new = self.combine(ins.arg, dt, old, self.ref(v))
        if dt == "bool":
            new = self.assign(self.tmp(), f"zext i1 {new} to i8")
        self.emit(f"store {mt} {new}, ptr {gp}")

    def argacc_init(self, i: int, ins: Ins) -> None:
        upd = next(u for u in self.p.ins if u.op == "argacc_update" and u.args[0] == i)
        vdt = self.p.ins[upd.args[1]].vdtype
        ty = LLTYPE[vdt]
        self.allocas += [f"%aidx{i} = alloca i64", f"%abest{i} = alloca {ty}"]
        ident = self.identity(ins.arg, vdt)
        self.emit(f"store i64 0, ptr %aidx{i}")
        self.emit(f"store {ty} {ident}, ptr %abest{i}")

    def argacc_update(self, i: int, ins: Ins) -> None:
        acc_i, v, idx = ins.args
        kind = self.p.ins[acc_i].arg
        dt = self.p.ins[v].vdtype
        ty = LLTYPE[dt]
        slot = f"%abest{acc_i}"
        e = self.emit
        best, better, t = self.tmp(), self.tmp(), self.tmp()
        x = self.ref(v)
        e(f"{best} = load {ty}, ptr {slot}")
        if is_float(dt):
            cmp = "ogt" if kind == "argmax" else "olt"
            c1, xn, bn, nb, c2 = (self.tmp() for _ in range(5))
            e(f"{c1} = fcmp {cmp} {ty} {x}, {best}")
            e(f"{xn} = fcmp uno {ty} {x}, {x}")
            e(f"{bn} = fcmp uno {ty} {best}, {best}")
            e(f"{nb} = xor i1 {bn}, true")
            e(f"{c2} = and i1 {xn}, {nb}")
            e(f"{better} = or i1 {c1}, {c2}")
        else:
            cmp = ("ugt" if kind == "argmax" else "ult") if is_unsigned(dt) else \
                ("sgt" if kind == "argmax" else "slt")
            e(f"{better} = icmp {cmp} {ty} {x}, {best}")
        nbst = self.tmp()
        e(f"{nbst} = select i1 {better}, {ty} {x}, {ty} {best}")
        e(f"store {ty} {nbst}, ptr {slot}")
        oi = self.tmp()
        e(f"{oi} = load i64, ptr %aidx{acc_i}")
        e(f"{t} = select i1 {better}, i64 {self.ref(idx)}, i64 {oi}")
        e(f"store i64 {t}, ptr %aidx{acc_i}")

    # ------------------------------------------------------------ tables
    code_for_op = {
        **{p: (lambda r, dt, a, t, p=p: r.arith(p, dt, a, t)) for p in ("add", "sub", "mul")},
        "div": lambda r, dt, a, t: r.arith("div", dt, a, t) if is_float(dt)
        else r.int_floordiv(dt, a, t),
        "neg": lambda r, dt, a, t: r.assign(
            t, f"fneg {LLTYPE[dt]} {a[0]}" if is_float(dt) else f"sub {LLTYPE[dt]} 0, {a[0]}"),
        "abs": absolute,
        "sqrt": lambda r, dt, a, t: r.call_intrinsic(t, "sqrt", LLTYPE[dt], a[0]),
        **{p: (lambda r, dt, a, t, p=p: r.transcendental(p, dt, a)) for p in TRANSCENDENTALS},
        **{p: (lambda r, dt, a, t, p=p: r.rounding(p, dt, a, t))
           for p in ("floor", "ceil", "rint")},
        "sign": lambda r, dt, a, t: r.sign(dt, LLTYPE[dt], a[0], t),
        **{p: (lambda r, dt, a, t, p=p: r.minmax(p, dt, a[0], a[1]))
           for p in ("maximum", "minimum")},
        **{p: (lambda r, dt, a, t, p=p: r.compare(p, dt, a, t)) for p in COMPARISONS},
        "where": lambda r, dt, a, t: r.assign(
            t, f"select i1 {a[0]}, {LLTYPE[dt]} {a[1]}, {LLTYPE[dt]} {a[2]}"),
        "logical_and": lambda r, dt, a, t: r.assign(t, f"and i1 {a[0]}, {a[1]}"),
        "logical_or": lambda r, dt, a, t: r.assign(t, f"or i1 {a[0]}, {a[1]}"),
        "logical_not": lambda r, dt, a, t: r.assign(t, f"xor i1 {a[0]}, true"),
        "floordiv": floordiv,
        "mod": lambda r, dt, a, t: r.mod(dt, LLTYPE[dt], a, t),
        **{p: (lambda r, dt, a, t, p=p: r.bits(p, dt, a, t)) for p in ("bitxor", "shr")},
    }
    code_for_ins = {
        "param": nothing, "const": constant, "range": begin_loop, "end": end_loop, "load": load,
        "store": store, "alu": alu, "cast": cast_ins, "acc": acc_init, "acc_update": acc_update,
        "store_reduce": store_reduce, "acc_scan": acc_scan, "argacc": argacc_init,
        "argacc_update": argacc_update, "acc_read": acc_read,
    }


#: a kernel with more transcendental calls than this calls out-of-line copies of the math
#: functions instead of inlining each call: inlined, a 1000-op chain with 250 tanh is ~10^5
#: vector instructions and takes LLVM 3-4 s.  The out-of-line functions carry vector variants
#: (LLVM's vector function ABI), so the loop still vectorizes, calling them N lanes at a time.
MATH_INLINE_LIMIT = 48
_MATH_CALL = re.compile(r"call (\w+) @symk_(\w+?)_(f32|f64)\(([^)]*)\)$", re.M)


def _out_of_line_call(m: re.Match) -> str:
    from symk.codegen.llvm_math import call_attributes

    ty, name = m.group(1), m.group(2)
    return (f"call {ty} @symk_{name}_{m.group(3)}_call({m.group(4)}) "
            f"{call_attributes(name, ty)}")


def render_kernel(prog: Program) -> tuple[str, set[str], set[tuple[str, str]]]:
    """(function text, intrinsic declarations, math functions used) for one kernel.  Math
    functions called out of line (see ``MATH_INLINE_LIMIT``) appear as ``(name, ty, "call")``."""
    fn = LLVMRenderer(prog)
    body = fn.render()
    math: set = set(fn.math)
    if fn.n_math_calls > MATH_INLINE_LIMIT:
        body = _MATH_CALL.sub(_out_of_line_call, body)
        math |= {(name, ty, "call") for name, ty in fn.math}
    wrapper = _wrapper(prog)
    return body + "\n\n" + wrapper, fn.decls, math


def _wrapper(prog: Program) -> str:
    lines = [f"define void @{prog.name}(ptr %args, i64 %start, i64 %end) nounwind {{", "entry:"]
    call_args = []
    for k, pi in enumerate(prog.params):
        kind = prog.ins[pi].arg[1]
        lines.append(f"  %a{k}p = getelementptr inbounds i64, ptr %args, i64 {k}")
        if kind == "size":
            lines.append(f"  %a{k} = load i64, ptr %a{k}p")
            call_args.append(f"i64 %a{k}")
        else:
            lines.append(f"  %a{k} = load ptr, ptr %a{k}p")
            call_args.append(f"ptr %a{k}")
    call_args += ["i64 %start", "i64 %end"]
    lines.append(f"  call void @{prog.name}_body({', '.join(call_args)})")
    lines.append("  ret void")
    lines.append("}")
    return "\n".join(lines)


#: innermost loops of static bounds up to this many iterations are kept rolled (longer ones
#: are never unrolled fully, and unrolling their vector loop pays: softmax over rows of 1024
#: took 2.43 ms rolled against 1.9 ms)
ROLLED_MAX = 256
#: the placeholder of a kernel's loop metadata node (``!LOOPMD_<range index>``), numbered
#: across the module by ``render_module``
LOOP_MD = "!LOOPMD_"
_LOOP_MD_RE = re.compile(r"!LOOPMD_(\d+)")


def _number_loop_metadata(parts: list[str]) -> tuple[list[str], str]:
    """The kernels' texts with their loop metadata placeholders numbered across the module,
    and the metadata definitions (each loop's distinct node asks for no unrolling)."""
    n = 1  # !0 is the shared {"llvm.loop.unroll.disable"}
    out, defs = [], []
    for text in parts:
        local: dict[str, int] = {}

        def num(m: re.Match, local: dict[str, int] = local) -> str:
            nonlocal n
            if m.group(1) not in local:
                local[m.group(1)] = n
                defs.append(f"!{n} = distinct !{{!{n}, !0}}")
                n += 1
            return f"!{local[m.group(1)]}"
        out.append(_LOOP_MD_RE.sub(num, text))
    if not defs:
        return parts, ""
    return out, "\n".join(['!0 = !{!"llvm.loop.unroll.disable"}', *defs])


def render_module(progs: list[Program], rendered: dict[str, tuple] | None = None) -> str:
    """One LLVM module holding every kernel of a function plus the math it uses
    (``rendered``: program name -> a ``render_kernel`` result already at hand)."""
    parts: list[str] = []
    decls: set[str] = set()
    math: set[tuple[str, str]] = set()
    for p in progs:
        got = rendered.get(p.name) if rendered else None
        text, d, m = got if got is not None else render_kernel(p)
        parts.append(text)
        decls |= d
        math |= m
    parts, loop_md = _number_loop_metadata(parts)
    math_ir = ""
    if math:
        from symk.codegen.llvm_math import math_module_ir

        math_ir = math_module_ir(sorted(m for m in math if len(m) == 2),
                                 out_of_line=[m[:2] for m in math if len(m) == 3])
    own = "\n".join(sorted(d for d in decls if d.split("@")[1].split("(")[0] not in math_ir))
    return "\n\n".join(x for x in (own, math_ir, *parts, loop_md) if x) + "\n"




def code_listing(kernels: Sequence[Any], progs: Sequence[Program]) -> str:
    """The LLVM module of a schedule's kernel programs for ``symk.compile(..., build=False)``."""
    return render_module(list({p.name: p for p in progs}.values())) if progs else ""
