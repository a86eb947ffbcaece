"""The CUDA renderer's spelling of values and scalar primitives: C types, literals, and one C
expression per primitive of ``symk.graph.scalar.PRIMITIVES`` (the only place where op math meets
CUDA C), as ``CudaC``, the ``renderer.Renderer`` that ``cuda_render``'s renderer extends.

Semantics follow numpy like the LLVM renderer: NaN-propagating ``maximum``/``minimum``,
Python floor division and modulo (a zero integer divisor gives 0, never a trap), numpy's float
``floor_divide`` algorithm, float -> signed int casts giving INT_MIN for NaN/inf/out of range
(x86 "integer indefinite") and narrower ints converted through int32, signed integer arithmetic
wrapping (done in unsigned types: no C++ undefined behaviour).  Transcendentals are CUDA's
libdevice functions (``expf``, ``log1pf``, ``tanhf``, ``erff``, ``powf``, ...); sigmoid and
softplus are the ops' own stable scalar expressions built from these primitives.

``PRELUDE`` holds the helpers (templates and overloads) every kernel source starts with; it is
guarded so several kernel sources can be concatenated into one compilation unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symk.codegen.renderer import (
    COMPARISONS,
    TRANSCENDENTALS,
    Renderer,
    is_float,
    is_uint,
    is_unsigned,
)
from symk.errors import SymkError

CTYPE = {"float32": "float", "float64": "double", "int8": "signed char", "int16": "short",
         "int32": "int", "int64": "long long", "uint8": "unsigned char",
         "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long",
         "bool": "bool"}
#: element type in memory (numpy bools are bytes)
MEMTYPE = {**CTYPE, "bool": "unsigned char"}
_UNSIGNED = {"int32": "unsigned int", "int64": "unsigned long long"}
_F32_MATH = {"exp": "expf", "log": "logf", "sqrt": "sqrtf", "sin": "sinf", "cos": "cosf",
             "tanh": "tanhf", "log1p": "log1pf", "expm1": "expm1f", "erf": "erff",
             "floor": "floorf", "ceil": "ceilf", "rint": "rintf", "pow": "powf"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
#: arithmetic primitives -> C operator
ARITH = {"add": "+", "sub": "-", "mul": "*"}


def ctype(dt: str) -> str:
    try:
        return CTYPE[dt]
    except KeyError:
        raise SymkError(f"the CUDA renderer does not support dtype {dt}") from None


def float_literal(value: Any, dt: str) -> str:
    """An exact C literal of a float (hex floats; inf/NaN through bit casts)."""
    v = float(np.asarray(value, dtype=dt))
    if dt == "float32":
        if np.isnan(v):
            return "__int_as_float(0x7fc00000)"
        if np.isinf(v):
            return f"__int_as_float({'0xff800000' if v < 0 else '0x7f800000'})"
        return f"{v.hex()}f"
    if np.isnan(v):
        return "__longlong_as_double(0x7ff8000000000000LL)"
    if np.isinf(v):
        bits = "0xfff0000000000000LL" if v < 0 else "0x7ff0000000000000LL"
        return f"__longlong_as_double({bits})"
    return v.hex()


def int_literal(value: int, dt: str) -> str:
    """A C literal of an integer of type ``dt`` (the most negative values as expressions)."""
    if dt == "int64":
        return "(-9223372036854775807LL - 1)" if value == -(1 << 63) else f"{value}LL"
    if dt == "uint64":
        return f"{value}ULL"
    if dt == "uint32":
        return f"{value}u"
    if dt == "int32":
        return "(-2147483647 - 1)" if value == -(1 << 31) else str(value)
    return f"(({CTYPE[dt]}){value})"


#: accumulation kind -> functor struct of the prelude
OPS = {"sum": "symk_op_sum", "prod": "symk_op_prod", "max": "symk_op_max", "min": "symk_op_min",
       "any": "symk_op_any", "all": "symk_op_all"}


def combine(kind: str, a: str, b: str) -> str:
    return f"{OPS[kind]}::f({a}, {b})"


def _wrap(dt: str, op: str, a: str, b: str) -> str:
    """Signed 32/64-bit arithmetic in the unsigned type (wraps like numpy, no C++ UB)."""
    u = _UNSIGNED.get(dt)
    if u is None:
        return f"(({CTYPE[dt]})({a} {op} {b}))"
    return f"(({CTYPE[dt]})(({u}){a} {op} ({u}){b}))"


def cast(x: str, src: str, dst: str) -> str:
    """C expression converting ``x`` from ``src`` to ``dst`` with numpy semantics."""
    if src == dst:
        return x
    d = ctype(dst)
    if dst == "bool":
        return f"({x} != 0)"
    if is_float(src) and not is_float(dst) and not is_uint(dst):
        if dst == "int64":
            return f"symk_f2i64({x})"
        return f"(({d})symk_f2i32({x}))"
    if is_float(src) and is_uint(dst):
        return f"symk_f2u<{d}>({x})"
    return f"(({d}){x})"


# ---------------------------------------------------------------------------- primitives
# Each rule is called as rule(renderer, dt, args): the C expression of the primitive applied to
# ``args``, C expressions of dtype ``dt``.


def _arith(prim: str, dt: str, a: list[str]) -> str:
    if dt == "bool":  # sum, product and difference of booleans: or, and, xor
        return {"add": f"({a[0]} || {a[1]})", "mul": f"({a[0]} && {a[1]})"}.get(
            prim, f"({a[0]} != {a[1]})")
    if is_float(dt):
        return f"({a[0]} {ARITH[prim]} {a[1]})"
    return _wrap(dt, ARITH[prim], a[0], a[1])


def _abs(dt: str, a: list[str]) -> str:
    if is_float(dt):
        return f"{'fabsf' if dt == 'float32' else 'fabs'}({a[0]})"
    if is_unsigned(dt):
        return a[0]
    return f"({a[0]} < 0 ? {_wrap(dt, '-', '0', a[0])} : {a[0]})"


def _math(prim: str, dt: str, a: list[str]) -> str:
    """Transcendentals and sqrt: libdevice (``pow`` of integers: ``symk_ipow``)."""
    if is_float(dt):
        fn = _F32_MATH[prim] if dt == "float32" else prim
        return f"{fn}({', '.join(a)})"
    if prim == "pow" and dt != "bool":
        return f"symk_ipow({a[0]}, {a[1]})"
    raise SymkError(f"the CUDA renderer has no '{prim}' for {dt}")


def _rounding(prim: str, dt: str, a: list[str]) -> str:
    if not is_float(dt):
        return a[0]
    return f"{_F32_MATH[prim] if dt == 'float32' else prim}({a[0]})"


def _sign(dt: str, a: list[str]) -> str:
    if is_float(dt):
        return f"symk_fsign({a[0]})"
    if is_unsigned(dt):
        return f"(({CTYPE[dt]})({a[0]} != 0))"
    return f"(({CTYPE[dt]})(({a[0]} > 0) - ({a[0]} < 0)))"


def _minmax(prim: str, dt: str, a: list[str]) -> str:
    if dt == "bool":
        return f"({a[0]} || {a[1]})" if prim == "maximum" else f"({a[0]} && {a[1]})"
    if is_float(dt):
        return f"symk_f{prim[:3]}({a[0]}, {a[1]})"
    return f"({a[0]} {'>' if prim == 'maximum' else '<'} {a[1]} ? {a[0]} : {a[1]})"


class CudaC(Renderer):
    """The CUDA C spelling of literals and primitives (``code_for_op``)."""

    target = "CUDA"
    float_literal = staticmethod(float_literal)
    int_literal = staticmethod(int_literal)

    def primitive(self, prim: str, in_dt: str, args: list[str], *context: Any) -> str:
        ctype(in_dt)  # a dtype with no C type (float16) fails before any rule runs
        return super().primitive(prim, in_dt, args, *context)

    def bits(self, prim: str, dt: str, a: list[str]) -> str:
        """bitxor / shr (logical) of unsigned integers."""
        if not is_uint(dt):
            raise self.no_rule("primitive", prim)
        return f"(({CTYPE[dt]})({a[0]} {'^' if prim == 'bitxor' else '>>'} {a[1]}))"

    code_for_op = {
        **{p: (lambda r, dt, a, p=p: _arith(p, dt, a)) for p in ARITH},
        "div": lambda r, dt, a: f"({a[0]} / {a[1]})" if is_float(dt)
        else f"symk_floordiv({a[0]}, {a[1]})",
        "neg": lambda r, dt, a: f"(-{a[0]})" if is_float(dt) else _wrap(dt, "-", "0", a[0]),
        "abs": lambda r, dt, a: _abs(dt, a),
        **{p: (lambda r, dt, a, p=p: _rounding(p, dt, a)) for p in ("floor", "ceil", "rint")},
        **{p: (lambda r, dt, a, p=p: _math(p, dt, a)) for p in (*TRANSCENDENTALS, "sqrt")},
        "sign": lambda r, dt, a: _sign(dt, a),
        **{p: (lambda r, dt, a, p=p: _minmax(p, dt, a)) for p in ("maximum", "minimum")},
        **{p: (lambda r, dt, a, p=p: f"({a[0]} {_CMP[p]} {a[1]})") for p in COMPARISONS},
        "where": lambda r, dt, a: f"({a[0]} ? {a[1]} : {a[2]})",
        "logical_and": lambda r, dt, a: f"({a[0]} && {a[1]})",
        "logical_or": lambda r, dt, a: f"({a[0]} || {a[1]})",
        "logical_not": lambda r, dt, a: f"(!{a[0]})",
        "floordiv": lambda r, dt, a: f"symk_floordiv({a[0]}, {a[1]})",
        "mod": lambda r, dt, a: f"symk_mod({a[0]}, {a[1]})",
        **{p: (lambda r, dt, a, p=p: r.bits(p, dt, a)) for p in ("bitxor", "shr")},
    }


PRELUDE = r"""#ifndef SYMK_CUDA_PRELUDE
#define SYMK_CUDA_PRELUDE
// ---- symk CUDA prelude: numpy-semantics helpers, block reductions and scans
__device__ __forceinline__ float symk_fmax(float a, float b) {
  return a != a ? a : (b != b ? b : (a > b ? a : b)); }
__device__ __forceinline__ double symk_fmax(double a, double b) {
  return a != a ? a : (b != b ? b : (a > b ? a : b)); }
__device__ __forceinline__ float symk_fmin(float a, float b) {
  return a != a ? a : (b != b ? b : (a < b ? a : b)); }
__device__ __forceinline__ double symk_fmin(double a, double b) {
  return a != a ? a : (b != b ? b : (a < b ? a : b)); }
__device__ __forceinline__ float symk_fsign(float x) {
  return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x + 0.0f); }
__device__ __forceinline__ double symk_fsign(double x) {
  return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : x + 0.0); }
__device__ __forceinline__ int symk_f2i32(float x) {
  return fabsf(x) < 2147483648.0f ? (int)x : (-2147483647 - 1); }
__device__ __forceinline__ int symk_f2i32(double x) {
  return fabs(x) < 2147483648.0 ? (int)x : (-2147483647 - 1); }
__device__ __forceinline__ long long symk_f2i64(float x) {
  return fabsf(x) < 9223372036854775808.0f ? (long long)x : (-9223372036854775807LL - 1); }
__device__ __forceinline__ long long symk_f2i64(double x) {
  return fabs(x) < 9223372036854775808.0 ? (long long)x : (-9223372036854775807LL - 1); }
template <class U, class F> __device__ __forceinline__ U symk_f2u(F x) {
  // saturating like LLVM's fptoui.sat: NaN and negatives give 0
  if (!(x > (F)0)) return (U)0;
  if (x >= (F)(~(U)0)) return ~(U)0;
  return (U)x; }
template <class T> __device__ __forceinline__ bool symk_opposite(T r, T b) {
  return r != (T)0 && ((r < (T)0) != (b < (T)0)); }
template <class T> __device__ __forceinline__ T symk_floordiv(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)(b + (T)1) == (T)0 && (T)-1 < (T)0)  // b == -1 (signed): -a, wrapping
    return (T)((unsigned long long)0 - (unsigned long long)a);
  T q = a / b, r = a % b;
  return symk_opposite(r, b) ? (T)(q - (T)1) : q; }
template <class T> __device__ __forceinline__ T symk_mod(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)(b + (T)1) == (T)0 && (T)-1 < (T)0) return (T)0;
  T r = a % b;
  return symk_opposite(r, b) ? (T)(r + b) : r; }
__device__ __forceinline__ bool symk_floordiv(bool a, bool b) { return b ? a : false; }
__device__ __forceinline__ bool symk_mod(bool a, bool b) { return false; }
#define SYMK_FLOAT_DIVMOD(T, FMOD, FLOOR, COPYSIGN)                                      \
  __device__ __forceinline__ T symk_floordiv(T a, T b) {                              \
    T r = FMOD(a, b), div = (a - r) / b;                                              \
    if (symk_opposite(r, b)) div = div - (T)1;                                        \
    T fl = FLOOR(div);                                                                \
    if (div - fl > (T)0.5) fl = fl + (T)1;                                            \
    T q = a / b;                                                                      \
    T res = div != (T)0 ? fl : COPYSIGN((T)0, q);                                     \
    return b == (T)0 ? q : res; }                                                     \
  __device__ __forceinline__ T symk_mod(T a, T b) {                                   \
    T r = FMOD(a, b);                                                                 \
    T r2 = symk_opposite(r, b) ? r + b : r;                                           \
    return r == (T)0 ? COPYSIGN((T)0, b) : r2; }
SYMK_FLOAT_DIVMOD(float, fmodf, floorf, copysignf)
SYMK_FLOAT_DIVMOD(double, fmod, floor, copysign)
#undef SYMK_FLOAT_DIVMOD
template <class T> __device__ __forceinline__ T symk_ipow(T a, T b) {
  T r = (T)1;
  if (b < (T)0) return r;
  while (b != (T)0) { if (b & (T)1) r = (T)(r * a); a = (T)(a * a); b = (T)(b >> 1); }
  return r; }

// accumulation functors (NaN-propagating max/min like numpy)
struct symk_op_sum {
  template <class T> __device__ __forceinline__ static T f(T a, T b) { return (T)(a + b); }
  __device__ __forceinline__ static bool f(bool a, bool b) { return a || b; } };
struct symk_op_prod {
  template <class T> __device__ __forceinline__ static T f(T a, T b) { return (T)(a * b); }
  __device__ __forceinline__ static bool f(bool a, bool b) { return a && b; } };
struct symk_op_max {
  template <class T> __device__ __forceinline__ static T f(T a, T b) { return a > b ? a : b; }
  __device__ __forceinline__ static float f(float a, float b) { return symk_fmax(a, b); }
  __device__ __forceinline__ static double f(double a, double b) { return symk_fmax(a, b); }
  __device__ __forceinline__ static bool f(bool a, bool b) { return a || b; } };
struct symk_op_min {
  template <class T> __device__ __forceinline__ static T f(T a, T b) { return a < b ? a : b; }
  __device__ __forceinline__ static float f(float a, float b) { return symk_fmin(a, b); }
  __device__ __forceinline__ static double f(double a, double b) { return symk_fmin(a, b); }
  __device__ __forceinline__ static bool f(bool a, bool b) { return a && b; } };
struct symk_op_any {
  __device__ __forceinline__ static bool f(bool a, bool b) { return a || b; } };
struct symk_op_all {
  __device__ __forceinline__ static bool f(bool a, bool b) { return a && b; } };

// warp shuffles of any scalar (narrow types travel as int)
template <class T> __device__ __forceinline__ T symk_shfl_xor(T v, int o) {
  return __shfl_xor_sync(0xffffffffu, v, o); }
template <class T> __device__ __forceinline__ T symk_shfl_up(T v, unsigned o) {
  return __shfl_up_sync(0xffffffffu, v, o); }
#define SYMK_NARROW_SHFL(T)                                                               \
  template <> __device__ __forceinline__ T symk_shfl_xor<T>(T v, int o) {                \
    return (T)__shfl_xor_sync(0xffffffffu, (int)v, o); }                                  \
  template <> __device__ __forceinline__ T symk_shfl_up<T>(T v, unsigned o) {            \
    return (T)__shfl_up_sync(0xffffffffu, (int)v, o); }
SYMK_NARROW_SHFL(bool)
SYMK_NARROW_SHFL(signed char)
SYMK_NARROW_SHFL(unsigned char)
SYMK_NARROW_SHFL(short)
SYMK_NARROW_SHFL(unsigned short)
#undef SYMK_NARROW_SHFL

// block all-reduce (blockDim.x a multiple of 32): warp butterflies, then every thread folds
// the per-warp results in the same order, so all threads get the same bits
template <class Op, class T> __device__ __forceinline__ T symk_block_reduce(T v) {
  __shared__ T symk_red_smem[32];
  const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = Op::f(v, symk_shfl_xor(v, o));
  __syncthreads();  // earlier readers of symk_red_smem are done
  if (lane == 0) symk_red_smem[wid] = v;
  __syncthreads();
  T r = symk_red_smem[0];
  for (unsigned w = 1; w < nw; ++w) r = Op::f(r, symk_red_smem[w]);
  return r; }

// (value, index) better than (best, best index): the first extreme value, NaN first of all
template <bool MAX, class T> __device__ __forceinline__ bool symk_arg_better(
    T x, long long ix, T b, long long ib) {
  const bool xn = x != x, bn = b != b;
  if (xn || bn) return xn && (!bn || ix < ib);
  if (x == b) return ix < ib;
  return MAX ? x > b : x < b; }
template <bool MAX, class T> __device__ __forceinline__ long long symk_block_arg(
    T v, long long i) {
  __shared__ T symk_argv_smem[32];
  __shared__ long long symk_argi_smem[32];
  const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    T ov = symk_shfl_xor(v, o);
    long long oi = symk_shfl_xor(i, o);
    if (symk_arg_better<MAX>(ov, oi, v, i)) { v = ov; i = oi; }
  }
  __syncthreads();
  if (lane == 0) { symk_argv_smem[wid] = v; symk_argi_smem[wid] = i; }
  __syncthreads();
  T bv = symk_argv_smem[0];
  long long bi = symk_argi_smem[0];
  for (unsigned w = 1; w < nw; ++w)
    if (symk_arg_better<MAX>(symk_argv_smem[w], symk_argi_smem[w], bv, bi)) {
      bv = symk_argv_smem[w]; bi = symk_argi_smem[w]; }
  return bi; }

// block inclusive scan of one value per thread (in thread order); *total gets the block total
template <class Op, class T> __device__ __forceinline__ T symk_block_scan(T v, T ident,
                                                                        T* total) {
  __shared__ T symk_scan_smem[32];
  const unsigned lane = threadIdx.x & 31u, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (unsigned o = 1; o < 32; o <<= 1) {
    T t = symk_shfl_up(v, o);
    if (lane >= o) v = Op::f(t, v);
  }
  __syncthreads();
  if (lane == 31) symk_scan_smem[wid] = v;
  __syncthreads();
  T pre = ident, all = ident;
  for (unsigned w = 0; w < nw; ++w) {
    if (w < wid) pre = Op::f(pre, symk_scan_smem[w]);
    all = Op::f(all, symk_scan_smem[w]);
  }
  *total = all;
  return Op::f(pre, v); }
#endif  // SYMK_CUDA_PRELUDE
"""
