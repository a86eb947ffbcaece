"""LLVM IR of a *driver*: one native function that runs a run of schedule steps in order.

A driver works on a *frame*, an ``int64`` array owned by the runtime, and knows nothing but
frame positions: every address (kernels, CBLAS, buffers) and every size is a frame entry, so a
driver's IR depends only on its layout and can be cached by content like kernels.  Its steps:

* :class:`CallKernel` copies buffer addresses into the kernel's argument block (the kernel ABI
  of ``llvm_render``: ``void k(ptr args, i64 start, i64 end)``) and calls it over ``[0, n)``;
  when the step's *yield flag* is set (a kernel large enough to split across threads) it
  returns the step's index instead, and the caller runs the kernel and resumes the driver at
  the next step (``start``);
* :class:`CopyAddress` makes a view: the view's address is its base's;
* :class:`CallGemm` calls CBLAS ``?gemm`` (row-major, 64-bit integers) on addresses from the
  frame, after copying the accumulator into the output when it is not updated in place, and
  sets the BLAS thread count through ``openblas_set_num_threads`` when the product wants
  another count than the current one (frame header, :data:`HEADER`).

The driver returns -1 when it has run every step.  The frame header: entry 0 is the address of
the BLAS's set-thread-count function (0: leave the count alone), 1 the count for a product
marked big, 2 the count in force (the driver updates it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: frame entries before the layout's own: [set-threads fn, big count, current count]
HEADER = 3
#: the prefix of every driver's name (kernels are ``E_``/``R_``)
PREFIX = "D_"
#: CBLAS layout and transpose flags
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@dataclass(frozen=True)
class CallKernel:
    """Call the kernel at ``frame[fn]`` with argument block ``frame[args:]`` over
    ``[0, frame[n])``, after ``frame[args + dst] = frame[src]`` for each copy; return this
    step's index instead when ``frame[flag]`` is nonzero (after the copies)."""

    fn: int
    args: int
    n: int
    flag: int
    copies: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class CopyAddress:
    """``frame[dst] = frame[src]`` (a view's address is its base's)."""

    src: int
    dst: int


@dataclass(frozen=True)
class CallGemm:
    """``C = alpha * op(A) @ op(B) + beta * C`` by the CBLAS function at ``frame[fn]``.

    ``frame[a]``, ``frame[b]``, ``frame[c]`` hold the addresses of A, B and C; ``frame[prm:]``
    holds ``m, n, k, lda, ldb, ldc, copy_bytes, big``.  With ``src >= 0``, ``copy_bytes``
    bytes at ``frame[src]`` are copied into C first.  ``big``: 0 a small product (one BLAS
    thread), 1 a big one (the header's big count), 2 a product the caller runs: the driver
    returns this step's index after the copy, and is resumed at the next step.
    ``alpha``/``beta`` are frame entries holding the address of a 0-d value of dtype
    ``alpha_t``/``beta_t`` (-1: 1.0 and 0.0)."""

    fn: int
    prm: int
    a: int
    b: int
    c: int
    src: int
    ta: int
    tb: int
    real: str  # "float32" | "float64"
    alpha: int = -1
    beta: int = -1
    alpha_t: str = "float32"
    beta_t: str = "float32"


Step = CallKernel | CopyAddress | CallGemm

_LL = {"float32": "float", "float64": "double"}


class _Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def tmp(self) -> str:
        self.n += 1
        return f"%v{self.n}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def op(self, rhs: str) -> str:
        """A fresh SSA value ``= rhs``."""
        v = self.tmp()
        self.emit(f"{v} = {rhs}")
        return v

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")

    def slot(self, idx: int) -> str:
        p = self.tmp()
        self.emit(f"{p} = getelementptr inbounds i64, ptr %fr, i64 {idx}")
        return p

    def load(self, idx: int, ty: str = "i64") -> str:
        p = self.slot(idx)
        v = self.tmp()
        self.emit(f"{v} = load {ty}, ptr {p}, align 8")
        return v

    def store(self, idx: int, value: str, ty: str = "i64") -> None:
        p = self.slot(idx)
        self.emit(f"store {ty} {value}, ptr {p}, align 8")

    def scalar(self, idx: int, dtype: str, real: str, default: str) -> str:
        """The 0-d value of ``dtype`` at the address in ``frame[idx]``, as ``real``."""
        if idx < 0:
            return default
        v = self.op(f"load {_LL[dtype]}, ptr {self.load(idx, 'ptr')}, align 4")
        if dtype == real:
            return v
        conv = "fpext" if dtype == "float32" else "fptrunc"
        return self.op(f"{conv} {_LL[dtype]} {v} to {_LL[real]}")


def driver_name(steps: list[Step]) -> str:
    """``D_<hash>``: the driver's name from its layout (same layout, same code)."""
    return PREFIX + hashlib.sha256(repr(steps).encode()).hexdigest()[:16]


#: the declarations a driver function needs in its module
DECLS = "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)"


def with_drivers(module: str, drivers: list[str]) -> str:
    """A kernels' module text (``llvm_render.render_module``) with driver functions added."""
    if not drivers:
        return module
    head = "" if "@llvm.memcpy.p0.p0.i64(" in module else DECLS + "\n\n"
    return head + module + "\n" + "\n".join(drivers)


def render_driver(steps: list[Step]) -> tuple[str, str]:
    """(function name, LLVM function text) of the driver running ``steps``:
    ``i64 name(ptr frame, i64 start)``; its module needs :data:`DECLS`."""
    name = driver_name(steps)
    e = _Emitter()
    cases = " ".join(f"i64 {k}, label %s{k}" for k in range(len(steps)))
    e.lines.append(f"define i64 @{name}(ptr noalias %fr, i64 %start) nounwind {{")
    e.label("entry")
    e.emit(f"switch i64 %start, label %done [ {cases} ]")
    for k, st in enumerate(steps):
        e.label(f"s{k}")
        nxt = f"%s{k + 1}" if k + 1 < len(steps) else "%done"
        if isinstance(st, CopyAddress):
            e.store(st.dst, e.load(st.src))
            e.emit(f"br label {nxt}")
        elif isinstance(st, CallKernel):
            for src, dst in st.copies:
                e.store(st.args + dst, e.load(src))
            yes = e.op(f"icmp ne i64 {e.load(st.flag)}, 0")
            e.emit(f"br i1 {yes}, label %yld{k}, label %cal{k}")
            e.label(f"yld{k}")
            e.emit(f"ret i64 {k}")
            e.label(f"cal{k}")
            fn = e.load(st.fn, "ptr")
            n = e.load(st.n)
            args = e.slot(st.args)
            e.emit(f"call void {fn}(ptr {args}, i64 0, i64 {n})")
            e.emit(f"br label {nxt}")
        else:
            _gemm(e, k, st, nxt)
    e.label("done")
    e.emit("ret i64 -1")
    e.lines.append("}")
    return name, "\n".join(e.lines) + "\n"


def _gemm(e: _Emitter, k: int, st: CallGemm, nxt: str) -> None:
    prm = [e.load(st.prm + i) for i in range(8)]
    m, n, kk, lda, ldb, ldc, nbytes, big = prm
    # the BLAS thread count this product wants (frame header), set only when it changes
    setfn = e.load(0)
    has = e.op(f"icmp ne i64 {setfn}, 0")
    e.emit(f"br i1 {has}, label %thr{k}, label %gem{k}")
    e.label(f"thr{k}")
    isbig = e.op(f"icmp eq i64 {big}, 1")
    want = e.op(f"select i1 {isbig}, i64 {e.load(1)}, i64 1")
    chg = e.op(f"icmp ne i64 {want}, {e.load(2)}")
    e.emit(f"br i1 {chg}, label %upd{k}, label %gem{k}")
    e.label(f"upd{k}")
    w32 = e.op(f"trunc i64 {want} to i32")
    fp = e.op(f"inttoptr i64 {setfn} to ptr")
    e.emit(f"call void {fp}(i32 {w32})")
    e.store(2, want)
    e.emit(f"br label %gem{k}")
    e.label(f"gem{k}")
    c = e.load(st.c, "ptr")
    if st.src >= 0:
        src = e.load(st.src, "ptr")
        e.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {c}, ptr {src}, i64 {nbytes}, i1 false)")
    mine = e.op(f"icmp eq i64 {big}, 2")
    e.emit(f"br i1 {mine}, label %yld{k}, label %cal{k}")
    e.label(f"yld{k}")
    e.emit(f"ret i64 {k}")
    e.label(f"cal{k}")
    real = _LL[st.real]
    al = e.scalar(st.alpha, st.alpha_t, st.real, "1.0")
    be = e.scalar(st.beta, st.beta_t, st.real, "0.0")
    a = e.load(st.a, "ptr")
    b = e.load(st.b, "ptr")
    fn = e.load(st.fn, "ptr")
    e.emit(f"call void {fn}(i32 {ROW_MAJOR}, i32 {st.ta}, i32 {st.tb}, i64 {m}, i64 {n}, "
           f"i64 {kk}, {real} {al}, ptr {a}, i64 {lda}, ptr {b}, i64 {ldb}, {real} {be}, "
           f"ptr {c}, i64 {ldc})")
    e.emit(f"br label {nxt}")


#: the name of the scan loop function (a driver's ABI, so modules load it like one)
SCAN_LOOP = PREFIX + "scan_loop"
#: scan loop spec entries before the bindings: driver, frame, steps, reverse, #binds, #carries
LOOP_HEADER = 6


def render_scan_loop() -> tuple[str, str]:
    """(name, LLVM function text) of the loop that runs a scan body's driver once per time
    step: ``i64 D_scan_loop(ptr spec, i64 unused)``.  ``spec`` is an ``int64`` array:
    ``[driver address, frame address, steps, reverse, B, C]``, then B bindings
    ``(frame position, base, stride, by parity)`` -- before each step, ``frame[position] =
    base + i * stride`` where ``i`` is the step's sequence index (``steps - 1 - t`` when
    reversed) or, with ``by parity``, ``t % 2`` (two buffers in turn) -- then C carries
    ``(in, out)``: after each step ``frame[in] = frame[out]`` (the next step reads the new
    carry where this one wrote it).  Returns -1, or the step ``t`` whose driver asked to
    return (it never should: the caller checks that no kernel splits)."""
    name = SCAN_LOOP
    h = LOOP_HEADER
    lines = [f"define i64 @{name}(ptr noalias %sp, i64 %unused) nounwind {{",
             "entry:"]
    body = f"""
  %p0 = getelementptr inbounds i64, ptr %sp, i64 0
  %drv = load ptr, ptr %p0, align 8
  %p1 = getelementptr inbounds i64, ptr %sp, i64 1
  %fr = load ptr, ptr %p1, align 8
  %p2 = getelementptr inbounds i64, ptr %sp, i64 2
  %n = load i64, ptr %p2, align 8
  %p3 = getelementptr inbounds i64, ptr %sp, i64 3
  %rev = load i64, ptr %p3, align 8
  %p4 = getelementptr inbounds i64, ptr %sp, i64 4
  %nb = load i64, ptr %p4, align 8
  %p5 = getelementptr inbounds i64, ptr %sp, i64 5
  %nc = load i64, ptr %p5, align 8
  %isrev = icmp ne i64 %rev, 0
  %last = sub i64 %n, 1
  %cbase = mul i64 %nb, 4
  %cstart = add i64 %cbase, {h}
  br label %loop
loop:
  %t = phi i64 [ 0, %entry ], [ %t1, %cdone ]
  %more = icmp slt i64 %t, %n
  br i1 %more, label %step, label %exit
step:
  %tr = sub i64 %last, %t
  %idx = select i1 %isrev, i64 %tr, i64 %t
  %par = and i64 %t, 1
  br label %bind
bind:
  %j = phi i64 [ 0, %step ], [ %j1, %bset ]
  %bmore = icmp slt i64 %j, %nb
  br i1 %bmore, label %bset, label %call
bset:
  %e = mul i64 %j, 4
  %e0 = add i64 %e, {h}
  %q0 = getelementptr inbounds i64, ptr %sp, i64 %e0
  %pos = load i64, ptr %q0, align 8
  %q1 = getelementptr inbounds i64, ptr %q0, i64 1
  %base = load i64, ptr %q1, align 8
  %q2 = getelementptr inbounds i64, ptr %q0, i64 2
  %stride = load i64, ptr %q2, align 8
  %q3 = getelementptr inbounds i64, ptr %q0, i64 3
  %bypar = load i64, ptr %q3, align 8
  %usepar = icmp ne i64 %bypar, 0
  %i = select i1 %usepar, i64 %par, i64 %idx
  %off = mul i64 %i, %stride
  %addr = add i64 %base, %off
  %slot = getelementptr inbounds i64, ptr %fr, i64 %pos
  store i64 %addr, ptr %slot, align 8
  %j1 = add i64 %j, 1
  br label %bind
call:
  %r = call i64 %drv(ptr %fr, i64 0)
  %asked = icmp sge i64 %r, 0
  br i1 %asked, label %fail, label %carry
carry:
  %k = phi i64 [ 0, %call ], [ %k1, %cset ]
  %cmore = icmp slt i64 %k, %nc
  br i1 %cmore, label %cset, label %cdone
cset:
  %ce = mul i64 %k, 2
  %ce0 = add i64 %ce, %cstart
  %c0 = getelementptr inbounds i64, ptr %sp, i64 %ce0
  %cin = load i64, ptr %c0, align 8
  %c1 = getelementptr inbounds i64, ptr %c0, i64 1
  %cout = load i64, ptr %c1, align 8
  %src = getelementptr inbounds i64, ptr %fr, i64 %cout
  %v = load i64, ptr %src, align 8
  %dst = getelementptr inbounds i64, ptr %fr, i64 %cin
  store i64 %v, ptr %dst, align 8
  %k1 = add i64 %k, 1
  br label %carry
cdone:
  %t1 = add i64 %t, 1
  br label %loop
fail:
  ret i64 %t
exit:
  ret i64 -1
}}
"""
    return name, "\n".join(lines) + body
