"""Inline, vectorizable transcendental functions as LLVM IR text.

The LLVM renderer emits loops over arrays; a call to scalar libm inside such a loop stops LLVM's
loop vectorizer. This module therefore writes every transcendental as plain arithmetic: range
reduction, minimax polynomials, bit manipulation through ``bitcast`` between float/i32 and
double/i64, ``select``/``fcmp`` and only intrinsics that vectorize (``llvm.fmuladd``,
``llvm.fabs``, ``llvm.floor``, ``llvm.copysign``, ``llvm.sqrt``). No fast-math flags are used, so
NaN and infinities follow IEEE rules whatever flags the calling kernel uses (as long as they do not
include ``nnan``/``ninf``).

Every function is ``define internal <ty> @symk_<name>_<f32|f64>(<ty> %x[, <ty> %y]) alwaysinline``
with its body written out in full (helpers such as the expm1 kernel inside tanh are expanded by the
Python emitters below, not called), so the only external symbols are intrinsics (and, through
``llvm.pow.f64``, libm's ``pow`` for float64 pow).

Algorithms (the same for float and double, with different coefficients):

- ``exp``: Cody-Waite reduction ``x = k*ln2 + r`` (k from the "shifter" trick, no ``fptosi``),
  ``e^r = 1 + r + r^2 P(r)`` and a two-step scaling ``2^(k/2) * 2^(k-k/2)`` so that overflow gives
  ``inf`` and results below the normal range come out as correctly scaled denormals.
- ``expm1``: same reduction, ``expm1(r) = r + r^2/2 + r^3 P(r)``, ``2^k expm1(r) + (2^k - 1)``.
- ``log``: exponent/mantissa split with the mantissa in ``[sqrt(1/2), sqrt(2))``; float uses
  ``log1p(f) = f - f^2/2 + f^3 P(f)``, double the ``s = f/(2+f)`` series ``f - h + s (h + R(s^2))``.
  Denormal inputs are rescaled first.
- ``log1p``: ``u = 1 + x = 2^e (1 + f)``; when ``e = 0`` the log polynomial gets ``x`` itself
  (exact), otherwise ``log(u) + (x - (u-1))/u``.
- ``tanh``: odd polynomial ``x + x^3 P(x^2)`` for ``|x| < 0.625`` (f64: 0.5), above that
  ``t/(t+2)`` with ``t = expm1(2|x|)``; sign copied back; ``|x| > 9.5`` (f64: 19.5) gives 1.
- ``sin``/``cos``: ``k = round(x*2/pi)``, ``r = x - k*pi/2`` with pi/2 split in three doubles (the
  float32 version reduces in double precision), then the sin and cos polynomials selected by the
  quadrant. The reduction is accurate while ``k*p1`` and ``k*p2`` are exact: ``|x| < 8.4e8`` for
  float32 (tested up to 1e6) and ``|x| < 1.6e6`` for float64 (tested up to 1e6). Beyond that the
  reduced argument is clamped to ``[-pi/4, pi/4]``, so results stay in ``[-1, 1]`` but lose
  accuracy progressively (no Payne-Hanek reduction).
- ``erf``: odd polynomial ``x + x P(x^2)`` for ``|x| < 0.75``; above, ``1 - exp(-x^2 + Q(|x|))``
  with Q fitted to ``log(erfc(x)) + x^2`` (double uses two intervals whose coefficients are
  selected per lane, so it still vectorizes).
- ``pow`` float32: computed in double, ``exp(y * log|x|)`` with the double routines above (error of
  ``y*log|x|`` far below a float ulp), then the C99/numpy special cases (``pow(x, 0) = 1``,
  ``pow(1, y) = 1``, ``pow(-1, +-inf) = 1``, negative base with odd/even/non-integer exponent,
  signed zeros and infinities).
- ``sqrt``: ``llvm.sqrt`` (correctly rounded).

Float64 fallback: ``pow`` in double is ``llvm.pow.f64``, i.e. one call to libm's ``pow`` per
element (correct, resolved by MCJIT from the process; the loop around it still vectorizes, the
calls do not). An inline version would need ``log`` in double-double precision. All other float64
functions are real inline double-precision approximations.

Polynomial coefficients are minimax fits (Remez exchange in mpmath, weighted for relative error of
the final function), rounded to the target precision.

Measured max error (``tests/codegen/test_llvm_math.py``; truth: numpy in float64 for float32
results, numpy ``longdouble`` or mpmath for float64 results) over dense linear sweeps plus sweeps
evenly spaced in bit-pattern order (every binade, denormals included) plus the special values, in
ulps of the exact result (0.5 = correctly rounded; denormal results in units of the smallest
denormal, i.e. no flush to zero anywhere):

========= ====== ====== ========================================================================
function  f32    f64    swept range (f32 / f64)
========= ====== ====== ========================================================================
exp       0.98   1.00   [-104, 89] / [-746, 710], overflow to inf and denormal results included
log       0.93   1.15   all positive finite values, denormals included
log1p     1.15   1.20   [-1, 1e4] dense, up to the max value sparse
expm1     1.39   1.49   [-20, 89] / [-40, 710]
tanh      1.47   1.45   [-10, 10] / [-20, 20]
sin       1.43   1.51   [-10, 10]; 1.51 / 2.40 for 10 < abs(x) <= 1e6
cos       1.51   1.43   [-10, 10]; 1.48 / 2.17 for 10 < abs(x) <= 1e6
pow       0.50   0.50   x over all positive values with y in [-30, 30]; x in [0, 4] with
                        y in [-200, 200]; negative x with integer / non-integer y (f64 is libm)
erf       1.36   1.00   [-6, 6]
sqrt      0.5    0.5    exact (``llvm.sqrt``), equal to numpy bit for bit
========= ====== ====== ========================================================================
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

#: the transcendental primitives (``renderer.TRANSCENDENTALS``, what the LLVM renderer calls)
#: and ``sqrt`` (the renderer emits ``llvm.sqrt`` itself; kept as the measured reference)
MATH_FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "pow", "erf", "sqrt")

_TYPES = ("float", "double")
_SUFFIX = {"float": "f32", "double": "f64"}

# Mathematical constants, exact to ~50 digits (as rationals, so splitting them is exact).
_LN2 = Fraction("0.69314718055994530941723212145817656807550013436026")
_LOG2E = Fraction("1.442695040888963407359924681001892137426645954153")
_PI_2 = Fraction("1.5707963267948966192313216916397514420985846996876")
_TWO_OVER_PI = Fraction("0.63661977236758134307553505349005744813783858296183")


def fn_name(name: str, ty: str) -> str:
    """The LLVM function name of math function `name` for IR type `ty` (``symk_exp_f32``)."""
    _check(name, ty)
    return f"symk_{name}_{_SUFFIX[ty]}"


def _check(name: str, ty: str) -> None:
    if name not in MATH_FUNCTIONS:
        raise ValueError(f"unknown math function {name!r}; known: {', '.join(MATH_FUNCTIONS)}")
    if ty not in _TYPES:
        raise ValueError(f"math functions exist for 'float' and 'double', not {ty!r}")


# --------------------------------------------------------------------------------------------
# Type traits and constants

@dataclass(frozen=True)
class _Traits:
    ty: str            # "float" | "double"
    ity: str           # integer type of the same width
    sfx: str           # intrinsic suffix
    mant: int          # explicit mantissa bits
    bias: int          # exponent bias
    shifter: float     # 1.5 * 2^mant: adding it rounds to an integer kept in the low bits


_F32 = _Traits("float", "i32", "f32", 23, 127, 12582912.0)
_F64 = _Traits("double", "i64", "f64", 52, 1023, 6755399441055744.0)
_TRAITS = {"float": _F32, "double": _F64}


def _round_to(value: float, ty: str) -> float:
    return float(np.float32(value)) if ty == "float" else float(value)


def _bits(value: float, ty: str) -> int:
    """The integer bit pattern of `value` rounded to `ty`."""
    if ty == "float":
        return int(np.array(value, dtype=np.float32).view(np.uint32))
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def _round_bits(value: Fraction, nbits: int) -> float:
    """`value` rounded to `nbits` significant bits (exactly representable in a double)."""
    if value == 0:
        return 0.0
    e = 0
    a = abs(value)
    while a >= 2:
        a /= 2
        e += 1
    while a < 1:
        a *= 2
        e -= 1
    m = round(a * 2 ** (nbits - 1))
    return float(Fraction(m) * Fraction(2) ** (e - nbits + 1) * (1 if value > 0 else -1))


def _split2(value: Fraction, hi_bits: int, ty: str) -> tuple[float, float]:
    """Cody-Waite split: hi has `hi_bits` significant bits, lo = value - hi rounded to `ty`."""
    hi = _round_bits(value, hi_bits)
    return hi, _round_to(float(value - Fraction(hi)), ty)


def _split3(value: Fraction, bits: int) -> tuple[float, float, float]:
    """Three doubles p1 + p2 + p3 ~ value, p1 and p2 with `bits` significant bits each."""
    p1 = _round_bits(value, bits)
    p2 = _round_bits(value - Fraction(p1), bits)
    return p1, p2, float(value - Fraction(p1) - Fraction(p2))


# ln2 = LN2_HI + LN2_LO with k*LN2_HI exact for the exponents that occur (|k| < 2^8 / 2^11).
_LN2_SPLIT = {"float": _split2(_LN2, 16, "float"), "double": _split2(_LN2, 42, "double")}
# pi/2 in three pieces: float32 (reduced in double) k < 2^29, float64 k < 2^20 stay exact.
_PI_2_SPLIT = {"float": _split3(_PI_2, 24), "double": _split3(_PI_2, 33)}

# --------------------------------------------------------------------------------------------
# Minimax coefficients (lowest degree first). Fitted with a Remez exchange in mpmath (60 digits)
# on the stated interval, weighted for the relative error of the final function, then rounded.

# (e^r - 1 - r) / r^2 on |r| <= ln2/2 + 0.003.       f32 error 2^-28.2, f64 2^-57.8
_EXP_C = {
    "float": (0.4999999403953552, 0.16666515171527863, 0.041668448597192764,
              0.0083693228662014, 0.0013813346158713102),
    "double": (0.5000000000000011, 0.1666666666666639, 0.04166666666652069,
               0.008333333333505815, 0.0013888888946463726, 0.0001984126948899361,
               2.480148986751636e-05, 2.755759569968889e-06, 2.763149111492766e-07,
               2.499913832060969e-08),
}
# (expm1(r) - r - r^2/2) / r^3 on |r| <= ln2/2 + 0.003.   f32 2^-31.2, f64 2^-61.5
_EXPM1_C = {
    "float": (0.1666666567325592, 0.04166647791862488, 0.008333422243595123,
              0.0013934015296399593, 0.00019823841284960508),
    "double": (0.16666666666666677, 0.04166666666666657, 0.008333333333321376,
               0.0013888888888946467, 0.00019841269887223805, 2.480158719277313e-05,
               2.7557242738770882e-06, 2.755738942469463e-07, 2.5109656931703986e-08,
               2.087893894763173e-09),
}
# float: (log1p(f) - f + f^2/2) / f^3 on [sqrt(1/2)-1, sqrt(2)-1].   2^-27.3
_LOG_C_F32 = (0.3333333134651184, -0.250008225440979, 0.20001234114170074,
              -0.16623300313949585, 0.14201538264751434, -0.13160550594329834,
              0.1276339292526245, -0.07635802775621414)
# double: R(z)/z with log((1+s)/(1-s)) = 2s + s R(s^2), z = s^2 <= 0.0295.   2^-59.5
_LOG_R_F64 = (0.6666666666666735, 0.39999999999407493, 0.28571428744140237,
              0.22222198378593436, 0.18183575159126547, 0.15313755933784565,
              0.14799064251459754)
# (sin r - r) / r^3 and (cos r - 1 + r^2/2) / r^4 as polynomials in z = r^2, |r| <= pi/4.
_SIN_C = {
    "float": (-0.16666655242443085, 0.008332159370183945, -0.00019515152962412685),
    "double": (-0.1666666666666663, 0.008333333333322097, -0.00019841269829571083,
               2.755731361472174e-06, -2.50507466817992e-08, 1.589616546006399e-10),
}
_COS_C = {
    "float": (0.04166664555668831, -0.0013887315290048718, 2.443300763843581e-05),
    "double": (0.041666666666666595, -0.0013888888888873025, 2.480158728883111e-05,
               -2.755731417318958e-07, 2.0875699991162754e-09, -1.1358491437369679e-11),
}
# erf(x)/x - 1 as a polynomial in x^2 on [0, 0.75].   f32 2^-29.4, f64 2^-60.1
_ERF_SMALL_C = {
    "float": (0.12837916612625122, -0.3761261999607086, 0.11283376812934875,
              -0.026834623888134956, 0.005114345345646143, -0.0006749510066583753),
    "double": (0.1283791670955126, -0.37612638903183715, 0.11283791670952481,
               -0.026866170644402478, 0.0052239776151222425, -0.00085483261690879,
               0.00012055288777098817, -1.4924176634789906e-05, 1.6430388192615598e-06,
               -1.5937599942447612e-07, 1.1463757964224271e-08),
}
_ERF_SWITCH = 0.75
# (tanh(x) - x) / x^3 as a polynomial in x^2 on [0, switch].   f32 2^-27.8, f64 2^-58.3
_TANH_SMALL = {
    "float": (0.625, (-0.3333328068256378, 0.13331441581249237, -0.05373971536755562,
                      0.0206390880048275, -0.00570498825982213)),
    "double": (0.5, (-0.33333333333333165, 0.1333333333330034, -0.05396825394592527,
                     0.02186948778650438, -0.008863221031122612, 0.003591953933388272,
                     -0.0014544897258346261, 0.0005833033281386642, -0.00021783625775299254,
                     5.680484106731172e-05)),
}
# log(erfc(x)) + x^2 as a polynomial in t = x - mid, weighted for the error of erf = 1 - erfc.
# float: one interval [0.75, 4] (erf rounds to 1 above 3.92), error 2^-32.8.
_ERF_TAIL_F32 = (2.375, (
    -1.5118318796157837, -0.36723315715789795, 0.06039559841156006, -0.01199685875326395,
    0.0024484891910105944, -0.0005118655390106142, 4.896685277344659e-05,
    -3.7203211832093075e-05, -2.836125986505067e-06))
# double: [0.75, 2.25] (2^-66.2) and [2.25, 6] (2^-77.3; erf rounds to 1 above 5.93).
_ERF_TAIL_F64_SPLIT = 2.25
_ERF_TAIL_F64 = (
    (1.5, (
        -1.1344920895515527, -0.5088008017795277, 0.10735966938496322, -0.02582414063364326,
        0.0060067463864448166, -0.0012572166868662206, 0.00021596330499678277,
        -2.2473687475130307e-05, -2.646835498853024e-06, 2.370836302943227e-06,
        -8.187579481377023e-07, 1.926014090031052e-07, -2.7875426957300745e-08,
        -1.0642101408937087e-09, 2.403108498698647e-09, -1.0036374732709047e-09,
        2.5920788145979717e-10, -2.7124009258759906e-11)),
    (4.125, (
        -2.016917764467391, -0.229911403956848, 0.02518583184321984, -0.0035157571111303645,
        0.0005284298708246735, -8.109266195608161e-05, 1.2391250253112389e-05,
        -1.8556489008639192e-06, 2.686947143353366e-07, -3.70468125609213e-08,
        4.717598923051099e-09, -5.557007806775404e-10, 4.8197234368595357e-11,
        8.068248296338092e-12, 6.923688027176805e-12, 3.5673781877760888e-12,
        7.452850572248839e-13, 1.0755784191887806e-13)),
)


# --------------------------------------------------------------------------------------------
# A tiny SSA builder for scalar IR text


@dataclass(frozen=True)
class _V:
    """An SSA value or constant operand: its IR spelling and type."""
    ref: str
    ty: str


#: an operand of a builder instruction: a value, or a constant of the other operand's type
_Operand = _V | float | int


def _operand_ty(a: _Operand, b: _Operand) -> str:
    """The type of a binary operation: that of its operand which is a value (one must be)."""
    if isinstance(a, _V):
        return a.ty
    assert isinstance(b, _V), "a binary operation of two constants"
    return b.ty


@dataclass
class _Builder:
    lines: list[str] = field(default_factory=list)
    intrinsics: dict[str, str] = field(default_factory=dict)   # name -> declaration
    n: int = 0
    #: 0: scalar code; N: the same code on <N x ty> vectors (values keep their scalar type
    #: name in ``_V.ty``; only the printed IR is widened)
    lanes: int = 0

    def T(self, ty: str) -> str:  # noqa: N802 - the printed (possibly vector) type
        return f"<{self.lanes} x {ty}>" if self.lanes else ty

    def _emit(self, text: str, ty: str) -> _V:
        name = f"%t{self.n}"
        self.n += 1
        self.lines.append(f"  {name} = {text}")
        return _V(name, ty)

    # operands ----------------------------------------------------------------------------
    def const(self, value: float | int, ty: str) -> _V:
        if ty in ("float", "double"):
            v = _round_to(float(value), ty)
            ref = ("0x7FF8000000000000" if v != v
                   else f"0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016X}")
        elif ty == "i1":
            ref = "true" if value else "false"
        else:
            ref = str(int(value))
        return _V(f"splat ({ty} {ref})" if self.lanes else ref, ty)

    def _op(self, x: _Operand, ty: str) -> _V:
        return x if isinstance(x, _V) else self.const(x, ty)

    def _bin(self, opcode: str, a: _Operand, b: _Operand) -> _V:
        ty = _operand_ty(a, b)
        va, vb = self._op(a, ty), self._op(b, ty)
        return self._emit(f"{opcode} {self.T(ty)} {va.ref}, {vb.ref}", ty)

    # float arithmetic ---------------------------------------------------------------------
    def fadd(self, a: _Operand, b: _Operand) -> _V:
        return self._bin("fadd", a, b)

    def fsub(self, a: _Operand, b: _Operand) -> _V:
        return self._bin("fsub", a, b)

    def fmul(self, a: _Operand, b: _Operand) -> _V:
        return self._bin("fmul", a, b)

    def fdiv(self, a: _Operand, b: _Operand) -> _V:
        return self._bin("fdiv", a, b)

    def fneg(self, a: _V) -> _V:
        return self._emit(f"fneg {self.T(a.ty)} {a.ref}", a.ty)

    def intrinsic(self, base: str, *args: _V | float, ty: str | None = None) -> _V:
        ty = ty or next(a.ty for a in args if isinstance(a, _V))
        ops = [self._op(a, ty) for a in args]
        vty = self.T(ty)
        name = f"llvm.{base}.{f'v{self.lanes}' if self.lanes else ''}{_TRAITS[ty].sfx}"
        self.intrinsics[name] = f"declare {vty} @{name}({', '.join([vty] * len(ops))})"
        return self._emit(f"call {vty} @{name}({', '.join(f'{vty} {o.ref}' for o in ops)})", ty)

    def fma(self, a: _Operand, b: _Operand, c: _Operand) -> _V:
        """a*b + c, fused where the target has FMA (``llvm.fmuladd``)."""
        return self.intrinsic("fmuladd", a, b, c)

    def fabs(self, a: _V) -> _V:
        return self.intrinsic("fabs", a)

    def floor(self, a: _V) -> _V:
        return self.intrinsic("floor", a)

    def copysign(self, mag: _V, sign: _V) -> _V:
        return self.intrinsic("copysign", mag, sign)

    def horner(self, t: _V, coeffs: Iterable[float | _V]) -> _V:
        cs = list(coeffs)
        acc = self._op(cs[-1], t.ty)
        for c in reversed(cs[:-1]):
            acc = self.fma(acc, t, c)
        return acc

    # comparisons, selection ---------------------------------------------------------------
    def fcmp(self, pred: str, a: _Operand, b: _Operand) -> _V:
        ty = _operand_ty(a, b)
        va, vb = self._op(a, ty), self._op(b, ty)
        return self._emit(f"fcmp {pred} {self.T(ty)} {va.ref}, {vb.ref}", "i1")

    def icmp(self, pred: str, a: _Operand, b: _Operand) -> _V:
        ty = _operand_ty(a, b)
        va, vb = self._op(a, ty), self._op(b, ty)
        return self._emit(f"icmp {pred} {self.T(ty)} {va.ref}, {vb.ref}", "i1")

    def select(self, c: _V, a: _Operand, b: _Operand, ty: str | None = None) -> _V:
        ty = ty or _operand_ty(a, b)
        va, vb = self._op(a, ty), self._op(b, ty)
        vt = self.T(ty)
        return self._emit(f"select {self.T('i1')} {c.ref}, {vt} {va.ref}, {vt} {vb.ref}", ty)

    def and1(self, a: _V, b: _V) -> _V:
        return self._emit(f"and {self.T('i1')} {a.ref}, {b.ref}", "i1")

    def not1(self, a: _V) -> _V:
        return self._emit(f"xor {self.T('i1')} {a.ref}, {self.const(1, 'i1').ref}", "i1")

    def or1(self, a: _V, b: _V) -> _V:
        return self._emit(f"or {self.T('i1')} {a.ref}, {b.ref}", "i1")

    # integers, casts ----------------------------------------------------------------------
    def iop(self, opcode: str, a: _Operand, b: _Operand) -> _V:
        return self._bin(opcode, a, b)

    def cast(self, opcode: str, a: _V, ty: str) -> _V:
        return self._emit(f"{opcode} {self.T(a.ty)} {a.ref} to {self.T(ty)}", ty)


# --------------------------------------------------------------------------------------------
# Emitters: each appends the computation of one function to a builder and returns its value.


def _clamp(b: _Builder, x: _V, lo: float, hi: float) -> _V:
    """min(max(x, lo), hi) that lets NaN through (ordered compares + select)."""
    x = b.select(b.fcmp("ogt", x, hi), hi, x)
    return b.select(b.fcmp("olt", x, lo), lo, x)


def _reduce_ln2(b: _Builder, x: _V) -> tuple[_V, _V]:
    """x = k*ln2 + r with |r| <= ln2/2 (x already clamped). Returns (r, k as an integer)."""
    tr = _TRAITS[x.ty]
    t = b.fma(x, float(_LOG2E), tr.shifter)
    kf = b.fsub(t, tr.shifter)
    hi, lo = _LN2_SPLIT[x.ty]
    r = b.fma(kf, -hi, x)
    r = b.fma(kf, -lo, r)
    ki = b.iop("sub", b.cast("bitcast", t, tr.ity), _bits(tr.shifter, x.ty))
    return r, ki


def _pow2(b: _Builder, k: _V, ty: str) -> _V:
    """2^k for an integer k in the normal exponent range."""
    tr = _TRAITS[ty]
    e = b.iop("shl", b.iop("add", k, tr.bias), tr.mant)
    return b.cast("bitcast", e, ty)


def _scale(b: _Builder, p: _V, k: _V) -> _V:
    """p * 2^k in two steps, so that k up to bias+1 overflows to inf and results below the
    normal range round once to the right denormal."""
    k1 = b.iop("ashr", k, 1)
    k2 = b.iop("sub", k, k1)
    return b.fmul(b.fmul(p, _pow2(b, k1, p.ty)), _pow2(b, k2, p.ty))


_EXP_RANGE = {"float": (-110.0, 89.0), "double": (-750.0, 710.0)}


def _exp(b: _Builder, x: _V) -> _V:
    lo, hi = _EXP_RANGE[x.ty]
    xc = _clamp(b, x, lo, hi)
    r, k = _reduce_ln2(b, xc)
    q = b.horner(r, _EXP_C[x.ty])
    p = b.fadd(b.fma(b.fmul(r, r), q, r), 1.0)
    return _scale(b, p, k)


def _expm1_reduced(b: _Builder, xc: _V) -> tuple[_V, _V]:
    """(expm1(r), k) for x = k*ln2 + r."""
    r, k = _reduce_ln2(b, xc)
    q = b.horner(r, _EXPM1_C[xc.ty])
    p = b.fma(b.fmul(r, r), b.fma(r, q, 0.5), r)
    return p, k


def _expm1_core(b: _Builder, xc: _V) -> _V:
    """expm1 for x in [-40, 40] (no special values except NaN, which propagates)."""
    p, k = _expm1_reduced(b, xc)
    s = _pow2(b, k, xc.ty)
    return b.fma(s, p, b.fsub(s, 1.0))


_EXPM1_RANGE = {"float": (-30.0, 89.0), "double": (-40.0, 710.0)}


def _expm1(b: _Builder, x: _V) -> _V:
    lo, hi = _EXPM1_RANGE[x.ty]
    xc = _clamp(b, x, lo, hi)
    p, k = _expm1_reduced(b, xc)
    s = _pow2(b, k, x.ty)
    small = b.fma(s, p, b.fsub(s, 1.0))
    big = _scale(b, b.fadd(p, 1.0), k)
    y = b.select(b.icmp("sgt", k, 100), big, small)
    return b.select(b.fcmp("oeq", x, 0.0), x, y)           # keeps the sign of -0


def _log_reduce(b: _Builder, x: _V) -> tuple[_V, _V]:
    """x = 2^e * (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)), for positive normal finite x.
    Returns (e as an integer, f)."""
    tr = _TRAITS[x.ty]
    sqrt_half = _bits(0.7071067811865476, x.ty)
    ix = b.iop("sub", b.cast("bitcast", x, tr.ity), sqrt_half)
    e = b.iop("ashr", ix, tr.mant)
    mbits = b.iop("add", b.iop("and", ix, (1 << tr.mant) - 1), sqrt_half)
    return e, b.fsub(b.cast("bitcast", mbits, x.ty), 1.0)


def _log1p_reduced(b: _Builder, f: _V) -> _V:
    """log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]."""
    if f.ty == "float":
        q = b.horner(f, _LOG_C_F32)
        return b.fma(b.fmul(f, f), b.fma(f, q, -0.5), f)
    s = b.fdiv(f, b.fadd(f, 2.0))
    z = b.fmul(s, s)
    rr = b.fmul(z, b.horner(z, _LOG_R_F64))
    hfsq = b.fmul(b.fmul(f, f), 0.5)
    return b.fsub(f, b.fsub(hfsq, b.fmul(s, b.fadd(hfsq, rr))))


def _log_combine(b: _Builder, ef: _V, l1: _V) -> _V:
    """ef * ln2 + l1 with ln2 in two pieces."""
    hi, lo = _LN2_SPLIT[l1.ty]
    return b.fma(ef, hi, b.fma(ef, lo, l1))


def _log_core(b: _Builder, x: _V, eadj: _V | None = None) -> _V:
    """log(x) for positive normal finite x (garbage otherwise); `eadj` is added to the
    exponent (used to undo a denormal rescaling)."""
    e, f = _log_reduce(b, x)
    ef = b.cast("sitofp", e, x.ty)
    if eadj is not None:
        ef = b.fadd(ef, eadj)
    return _log_combine(b, ef, _log1p_reduced(b, f))


_MIN_NORMAL = {"float": 2.0 ** -126, "double": 2.0 ** -1022}
_DENORMAL_SCALE = {"float": 25, "double": 54}


def _log(b: _Builder, x: _V) -> _V:
    ty = x.ty
    den = b.fcmp("olt", x, _MIN_NORMAL[ty])
    sc = _DENORMAL_SCALE[ty]
    xs = b.select(den, b.fmul(x, 2.0 ** sc), x)
    eadj = b.select(den, float(-sc), 0.0, ty=ty)
    y = _log_core(b, xs, eadj)
    y = b.select(b.fcmp("oeq", x, float("inf")), float("inf"), y)
    y = b.select(b.fcmp("oeq", x, 0.0), float("-inf"), y)
    # x < 0 or NaN -> NaN
    return b.select(b.fcmp("ult", x, 0.0), float("nan"), y)


def _log1p_core(b: _Builder, x: _V) -> _V:
    """log1p(x) for x > -1 finite; NaN propagates. With u = 1 + x = 2^e (1 + f): when e = 0
    the polynomial gets x itself (exact); otherwise log(u) is corrected by (x - (u-1)) / u."""
    u = b.fadd(x, 1.0)
    e, f = _log_reduce(b, u)
    c = b.fdiv(b.fsub(x, b.fsub(u, 1.0)), u)
    e0 = b.icmp("eq", e, 0)
    f = b.select(e0, x, f)
    c = b.select(e0, 0.0, c)
    return _log_combine(b, b.cast("sitofp", e, x.ty), b.fadd(_log1p_reduced(b, f), c))


def _log1p(b: _Builder, x: _V) -> _V:
    y = _log1p_core(b, x)
    y = b.select(b.fcmp("oeq", x, float("inf")), float("inf"), y)
    y = b.select(b.fcmp("oeq", x, -1.0), float("-inf"), y)
    y = b.select(b.fcmp("ult", x, -1.0), float("nan"), y)    # x < -1 or NaN
    return b.select(b.fcmp("oeq", x, 0.0), x, y)            # keeps the sign of -0


_TANH_ONE = {"float": 9.5, "double": 19.5}   # tanh rounds to 1 above these


def _tanh(b: _Builder, x: _V) -> _V:
    a = b.fabs(x)
    a = b.select(b.fcmp("ogt", a, _TANH_ONE[x.ty]), _TANH_ONE[x.ty], a)
    t = _expm1_core(b, b.fmul(a, 2.0))
    big = b.fdiv(t, b.fadd(t, 2.0))
    switch, coeffs = _TANH_SMALL[x.ty]
    z = b.fmul(a, a)
    small = b.fma(b.fmul(a, z), b.horner(z, coeffs), a)
    return b.copysign(b.select(b.fcmp("olt", a, switch), small, big), x)


def _sincos(b: _Builder, x: _V, cos: bool) -> _V:
    ty = x.ty
    xd = b.cast("fpext", x, "double") if ty == "float" else x
    t = b.fma(xd, float(_TWO_OVER_PI), _F64.shifter)
    kf = b.fsub(t, _F64.shifter)
    q = b.cast("trunc", b.cast("bitcast", t, "i64"), "i32")
    if cos:
        q = b.iop("add", q, 1)
    p1, p2, p3 = _PI_2_SPLIT[ty]
    r = b.fma(kf, -p1, xd)
    r = b.fma(kf, -p2, r)
    r = b.fma(kf, -p3, r)
    rmax = 0.7854                      # a bit above pi/4: only reached beyond the exact range
    r = _clamp(b, r, -rmax, rmax)
    if ty == "float":
        r = b.cast("fptrunc", r, "float")
    z = b.fmul(r, r)
    sin_r = b.fma(b.fmul(r, z), b.horner(z, _SIN_C[ty]), r)
    cos_r = b.fma(b.fmul(z, z), b.horner(z, _COS_C[ty]), b.fma(z, -0.5, 1.0))
    swap = b.icmp("ne", b.iop("and", q, 1), 0)
    y = b.select(swap, cos_r, sin_r)
    tr = _TRAITS[ty]
    sign = b.iop("and", q, 2)
    if ty == "double":
        sign = b.cast("zext", sign, "i64")
    sign = b.iop("shl", sign, 30 if ty == "float" else 62)
    return b.cast("bitcast", b.iop("xor", b.cast("bitcast", y, tr.ity), sign), ty)


def _sin(b: _Builder, x: _V) -> _V:
    return b.select(b.fcmp("oeq", x, 0.0), x, _sincos(b, x, cos=False))   # sin(-0) = -0


def _cos(b: _Builder, x: _V) -> _V:
    return _sincos(b, x, cos=True)


def _erf(b: _Builder, x: _V) -> _V:
    ty = x.ty
    a = b.fabs(x)
    small = b.fma(x, b.horner(b.fmul(x, x), _ERF_SMALL_C[ty]), x)
    mid: _V | float
    coeffs: Iterable[_V | float]
    if ty == "float":
        ac = b.select(b.fcmp("ogt", a, 4.0), 4.0, a)
        mid, coeffs = _ERF_TAIL_F32
        q = b.horner(b.fsub(ac, mid), coeffs)
    else:
        ac = b.select(b.fcmp("ogt", a, 6.0), 6.0, a)
        first = b.fcmp("olt", ac, _ERF_TAIL_F64_SPLIT)
        (mid1, c1), (mid2, c2) = _ERF_TAIL_F64
        mid = b.select(first, mid1, mid2, ty=ty)
        coeffs = [b.select(first, u, v, ty=ty) for u, v in zip(c1, c2, strict=True)]
        q = b.horner(b.fsub(ac, mid), coeffs)
    erfc = _exp(b, b.fsub(q, b.fmul(ac, ac)))
    big = b.copysign(b.fsub(1.0, erfc), x)
    return b.select(b.fcmp("olt", a, _ERF_SWITCH), small, big)


def _is_odd_integer(b: _Builder, y: _V) -> _V:
    """y is an odd integer (False for inf/NaN and for |y| >= 2^53, all even)."""
    half = b.fmul(y, 0.5)
    is_int = b.fcmp("oeq", b.floor(y), y)
    half_int = b.fcmp("oeq", b.floor(half), half)
    return b.and1(is_int, b.not1(half_int))


def _pow(b: _Builder, x: _V, y: _V) -> _V:
    ty = x.ty
    if ty == "double":
        return b.intrinsic("pow", x, y)
    xd, yd = b.cast("fpext", x, "double"), b.cast("fpext", y, "double")
    lx = _log(b, b.fabs(xd))
    r = b.cast("fptrunc", _exp(b, b.fmul(yd, lx)), "float")
    # sign: negative base (incl. -0, -inf) with an odd integer exponent
    neg_x = b.icmp("slt", b.cast("bitcast", x, "i32"), 0)
    r = b.select(b.and1(neg_x, _is_odd_integer(b, yd)), b.fneg(r), r)
    # finite negative base with a non-integer (finite) exponent -> NaN
    y_int = b.fcmp("oeq", b.floor(yd), yd)
    neg_finite = b.and1(b.fcmp("olt", xd, 0.0), b.fcmp("one", xd, float("-inf")))
    r = b.select(b.and1(neg_finite, b.not1(y_int)), float("nan"), r)
    # pow(-1, +-inf) = 1, pow(x, +-0) = 1, pow(1, y) = 1 (even for NaN y)
    ay = b.fabs(yd)
    minus1_inf = b.and1(b.fcmp("oeq", xd, -1.0), b.fcmp("oeq", ay, float("inf")))
    one = b.or1(b.or1(minus1_inf, b.fcmp("oeq", yd, 0.0)), b.fcmp("oeq", xd, 1.0))
    return b.select(one, 1.0, r)


def _sqrt(b: _Builder, x: _V) -> _V:
    return b.intrinsic("sqrt", x)


_EMITTERS: dict[str, Callable[..., _V]] = {
    "exp": _exp, "log": _log, "log1p": _log1p, "expm1": _expm1, "tanh": _tanh, "sin": _sin,
    "cos": _cos, "pow": _pow, "erf": _erf, "sqrt": _sqrt,
}
_ARITY = {"pow": 2}


# --------------------------------------------------------------------------------------------
# Public API


def _function(name: str, ty: str, lanes: int = 0) -> tuple[str, dict[str, str]]:
    """(definition text, {intrinsic name: declaration}) of one math function: the inlined
    scalar ``@symk_<name>_<sfx>``, or with ``lanes`` its out-of-line vector variant
    ``@symk_<name>_<sfx>_v<lanes>`` (same algorithm, printed on ``<lanes x ty>``)."""
    _check(name, ty)
    b = _Builder(lanes=lanes)
    params = [_V("%x", ty), _V("%y", ty)][: _ARITY.get(name, 1)]
    result = _EMITTERS[name](b, *params)
    vty = b.T(ty)
    sig = ", ".join(f"{vty} {p.ref}" for p in params)
    head = (f"define {vty} @{fn_name(name, ty)}_v{lanes}({sig}) noinline nounwind"
            if lanes else f"define internal {ty} @{fn_name(name, ty)}({sig}) alwaysinline")
    text = "\n".join([head + " {", *b.lines, f"  ret {vty} {result.ref}", "}"])
    return text, b.intrinsics


def math_ir(name: str, ty: str) -> str:
    """LLVM IR text of ``define internal <ty> @symk_<name>_<f32|f64>(<ty> %x[, <ty> %y])
    alwaysinline`` plus the intrinsic declarations it needs. `ty` is "float" or "double"."""
    return math_module_ir([(name, ty)])


#: vector widths of the out-of-line variants (the loop vectorizer picks among them)
VECTOR_LANES = {"float": (4, 8, 16), "double": (2, 4, 8)}


def call_attributes(name: str, ty: str) -> str:
    """Call-site attribute mapping ``@symk_<name>_<sfx>_call`` to its vector variants, so that
    the loop vectorizer calls ``_v<N>`` on N lanes at a time (LLVM's vector function ABI)."""
    fn = fn_name(name, ty)
    params = "v" * _ARITY.get(name, 1)
    variants = ",".join(f"_ZGV_LLVM_N{n}{params}_{fn}_call({fn}_v{n})"
                        for n in VECTOR_LANES[ty])
    return f'"vector-function-abi-variant"="{variants}"'


def _out_of_line(name: str, ty: str) -> tuple[list[str], dict[str, str]]:
    """The scalar out-of-line ``_call`` function (for loop remainders) and the vector variants,
    for kernels too big to inline every call into."""
    params = [f"{ty} %x", f"{ty} %y"][: _ARITY.get(name, 1)]
    fn = fn_name(name, ty)
    defs = ["\n".join([f"define internal {ty} @{fn}_call({', '.join(params)}) noinline nounwind {{",
                       f"  %r = call {ty} @{fn}({', '.join(params)})", f"  ret {ty} %r", "}"])]
    decls: dict[str, str] = {}
    for n in VECTOR_LANES[ty]:
        text, intrinsics = _function(name, ty, n)
        defs.append(text)
        decls.update(intrinsics)
    return defs, decls


def math_module_ir(names: Iterable[tuple[str, str]], declared: Iterable[str] = (),
                   out_of_line: Iterable[tuple[str, str]] = ()) -> str:
    """IR text defining every requested (name, ty) once, with the intrinsic declarations
    deduplicated, ready to be concatenated with a kernel module's IR.  The (name, ty) pairs of
    ``out_of_line`` also get their ``_call`` function and vector variants (``call_attributes``).

    `declared` lists symbols (e.g. ``"llvm.fabs.f32"``) the including module already declares:
    their declarations are left out, since LLVM rejects a second ``declare`` of a function."""
    skip = set(declared)
    decls: dict[str, str] = {}
    defs: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, ty in names:
        if (name, ty) in seen:
            continue
        seen.add((name, ty))
        text, intrinsics = _function(name, ty)
        defs.append(text)
        decls.update(intrinsics)
    for name, ty in sorted(set(out_of_line)):
        more, intrinsics = _out_of_line(name, ty)
        defs.extend(more)
        decls.update(intrinsics)
    lines = [d for n, d in sorted(decls.items()) if n not in skip]
    return "\n".join(lines) + ("\n\n" if lines else "") + "\n\n".join(defs) + "\n"
