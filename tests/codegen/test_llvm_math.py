"""Accuracy, special values and vectorization of the inline LLVM math functions.

One module per dtype holds a loop ``out[i] = f(in[i])`` per function; it is optimized at O3 for the
host CPU (so the loop vectorizer runs) and executed through MCJIT on numpy arrays. References are
independent of symk: numpy in float64 for float32 results, numpy in ``longdouble`` (x87 80-bit)
for float64 results, and mpmath for the float64 erf.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

from symk.codegen.llvm_math import (
    MATH_FUNCTIONS,
    call_attributes,
    fn_name,
    math_ir,
    math_module_ir,
)

llvm = pytest.importorskip("llvmlite.binding")

TYPES = {"float": np.float32, "double": np.float64}

# Max error in ulps of the result type asserted per function: the measured maximum (reported in
# the docstring of symk/codegen/llvm_math.py) plus a small margin. 0.5 is correct rounding.
MAX_ULPS = {
    "float": {"exp": 1.1, "log": 1.05, "log1p": 1.25, "expm1": 1.5, "tanh": 1.6, "sin": 1.6,
              "cos": 1.6, "pow": 0.55, "erf": 1.5, "sqrt": 0.5},
    "double": {"exp": 1.1, "log": 1.25, "log1p": 1.3, "expm1": 1.6, "tanh": 1.6, "sin": 1.6,
               "cos": 1.6, "pow": 0.55, "erf": 1.1, "sqrt": 0.5},
}
# sin/cos for 10 < |x| <= 1e6: the reduced argument carries one or two more roundings.
MAX_ULPS_LARGE_SINCOS = {"float": 1.6, "double": 2.5}


# ---------------------------------------------------------------------------------------------
# Compilation


def _loop_ir(name: str, ty: str, out_of_line: bool) -> str:
    """``void @loop_<name>(ptr %a, [ptr %b,] ptr %o, i64 %n)``: o[i] = f(a[i][, b[i]]), calling
    the inlined function or (``out_of_line``) the ``_call`` function with its vector variants."""
    callee = (f"{fn_name(name, ty)}_call" if out_of_line else fn_name(name, ty))
    attrs = f" {call_attributes(name, ty)}" if out_of_line else ""
    two = name == "pow"
    params = "ptr noalias %a, ptr noalias %b, ptr noalias %o, i64 %n" if two else \
        "ptr noalias %a, ptr noalias %o, i64 %n"
    load_b = (f"  %pb = getelementptr inbounds {ty}, ptr %b, i64 %i\n"
              f"  %y = load {ty}, ptr %pb\n") if two else ""
    args = f"{ty} %x, {ty} %y" if two else f"{ty} %x"
    return f"""
define void @loop_{name}({params}) {{
entry:
  %c = icmp sgt i64 %n, 0
  br i1 %c, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %pa = getelementptr inbounds {ty}, ptr %a, i64 %i
  %x = load {ty}, ptr %pa
{load_b}  %r = call {ty} @{callee}({args}){attrs}
  %po = getelementptr inbounds {ty}, ptr %o, i64 %i
  store {ty} %r, ptr %po
  %i1 = add nuw nsw i64 %i, 1
  %d = icmp eq i64 %i1, %n
  br i1 %d, label %exit, label %loop
exit:
  ret void
}}
"""


class Compiled:
    """An O3-optimized, MCJIT-loaded module with one loop per math function (inlined, or
    called out of line through the vector variants, as kernels with many calls do)."""

    def __init__(self, ty: str, out_of_line: bool = False):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.ty = ty
        self.out_of_line = out_of_line
        self.dtype = TYPES[ty]
        pairs = [(n, ty) for n in MATH_FUNCTIONS]
        source = math_module_ir(pairs, out_of_line=pairs if out_of_line else ()) + "".join(
            _loop_ir(n, ty, out_of_line) for n in MATH_FUNCTIONS)
        mod = llvm.parse_assembly(source)
        mod.verify()
        target = llvm.Target.from_default_triple()
        tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                          features=llvm.get_host_cpu_features().flatten(),
                                          opt=3)
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        self.optimized = {n: str(mod.get_function(f"loop_{n}")) for n in MATH_FUNCTIONS}
        obj = tm.emit_object(mod)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def __call__(self, name: str, *args: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(a, dtype=self.dtype) for a in args]
        arrays = np.broadcast_arrays(*arrays)
        arrays = [np.ascontiguousarray(a) for a in arrays]
        out = np.empty_like(arrays[0])
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (len(arrays) + 1)), ctypes.c_int64)
        fn = proto(self.engine.get_function_address(f"loop_{name}"))
        fn(*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
        return out


@pytest.fixture(scope="module", params=["float", "double", "float-vector-abi",
                                        "double-vector-abi"])
def lib(request) -> Compiled:
    ty, _, mode = request.param.partition("-")
    return Compiled(ty, out_of_line=bool(mode))


# ---------------------------------------------------------------------------------------------
# References and error measurement


def _erf_ref(x: np.ndarray, ty: str) -> np.ndarray:
    if ty == "float":
        return np.array([math.erf(v) for v in x.astype(np.float64)], dtype=np.float64)
    mp = pytest.importorskip("mpmath")
    mp.mp.prec = 80
    return np.array([mp.erf(mp.mpf(float(v))) for v in x], dtype=np.longdouble)


def reference(name: str, ty: str, *args: np.ndarray) -> np.ndarray:
    """The true value in higher precision (float64 for float32, longdouble for float64)."""
    wide = np.float64 if ty == "float" else np.longdouble
    xs = [np.asarray(a).astype(wide) for a in args]
    with np.errstate(all="ignore"):
        if name == "erf":
            return _erf_ref(np.asarray(args[0]), ty)
        fn = {"pow": np.power}.get(name)
        return (fn or getattr(np, name))(*xs)


def ulp_error(got: np.ndarray, truth: np.ndarray, dtype) -> np.ndarray:
    """|got - truth| in ulps of `dtype` at truth; infinities, NaN and overflow must match the
    reference rounded to `dtype` exactly (error 0 or inf)."""
    info = np.finfo(dtype)
    with np.errstate(all="ignore"):
        rounded = truth.astype(dtype)
        exact = ~np.isfinite(rounded)
        same = (got == rounded) | (np.isnan(got) & np.isnan(rounded))
        e = np.frexp(truth)[1].astype(np.int64)
        e = np.maximum(e - 1 - info.nmant, info.minexp - info.nmant)   # denormal spacing
        ulp = np.ldexp(np.ones_like(truth), e)
        err = np.abs(got.astype(truth.dtype) - truth) / ulp
    err = np.where(exact, np.where(same, 0.0, np.inf), err)
    return np.where(np.isnan(err), np.inf, err).astype(np.float64)


def check(lib: Compiled, name: str, *args, max_ulps: float | None = None) -> float:
    args = [np.asarray(a, dtype=lib.dtype) for a in args]
    args = [np.ascontiguousarray(a) for a in np.broadcast_arrays(*args)]
    got = lib(name, *args)
    truth = reference(name, lib.ty, *args)
    err = ulp_error(got, truth, lib.dtype)
    worst = int(np.argmax(err))
    limit = MAX_ULPS[lib.ty][name] if max_ulps is None else max_ulps
    assert err[worst] <= limit, (
        f"{name}/{lib.ty}: {err[worst]:.3g} ulps at x={[a[worst] for a in args]}: "
        f"got {got[worst]!r}, expected {truth[worst]!r}")
    return float(err.max())


# ---------------------------------------------------------------------------------------------
# Inputs


def patterns(dtype, lo: float, hi: float, n: int) -> np.ndarray:
    """n values evenly spaced in bit-pattern order between lo and hi: every binade (denormals
    included) gets its share, so this is a log-uniform sweep across zero."""
    utype = np.uint32 if dtype == np.float32 else np.uint64
    sign = int(np.iinfo(utype).max) // 2 + 1

    def key(v: float) -> int:   # monotone map float -> integer (sign * magnitude bits)
        b = int(np.array(v, dtype=dtype).view(utype))
        return -(b - sign) if b >= sign else b

    k = np.round(np.linspace(key(lo), key(hi), n)).astype(np.int64)
    k = np.unique(np.clip(k, key(lo), key(hi)))
    mag = np.abs(k).astype(np.uint64)
    bits = np.where(k < 0, mag | np.uint64(sign), mag).astype(utype)
    return bits.view(dtype)


def extremes(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    tiny, den = info.tiny, np.nextafter(dtype(0), dtype(1))
    v = [0.0, 1e-30, 1e-8, 0.5, 1.0, 2.0, 10.0, 100.0, 1e4, 1e10, 1e30,
         float(tiny), float(den), float(den * 7), float(tiny) / 3, float(info.max), math.inf]
    v = v + [-a for a in v] + [math.nan]
    return np.array(v, dtype=dtype)


def sweep(dtype, lo: float, hi: float, n: int = 100_000) -> np.ndarray:
    return np.concatenate([np.linspace(lo, hi, n, dtype=dtype), patterns(dtype, lo, hi, n),
                           extremes(dtype)])


RANGES = {   # dense sweep ranges (float, double)
    "exp": ((-104, 89), (-746, 710)),
    "expm1": ((-20, 89), (-40, 710)),
    "tanh": ((-10, 10), (-20, 20)),
    "erf": ((-6, 6), (-6, 6)),
    "sin": ((-10, 10), (-10, 10)),
    "cos": ((-10, 10), (-10, 10)),
}


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", sorted(RANGES))
def test_sweep(lib, name):
    lo, hi = RANGES[name][lib.ty == "double"]
    n = 20_000 if (name == "erf" and lib.ty == "double") else 100_000
    x = sweep(lib.dtype, lo, hi, n)
    if name in ("sin", "cos"):   # beyond the exact range reduction: see the next tests
        x = x[~(np.abs(x) > 1e6)]
    check(lib, name, x)


def test_log(lib):
    dt = lib.dtype
    x = np.concatenate([patterns(dt, 0.0, float(np.finfo(dt).max), 200_000),
                        np.linspace(0.5, 2.0, 100_000, dtype=dt), extremes(dt)])
    check(lib, "log", x)


def test_log1p(lib):
    dt = lib.dtype
    x = np.concatenate([np.linspace(-1, 1, 100_000, dtype=dt), patterns(dt, -1.0, 1e4, 100_000),
                        patterns(dt, 1e4, float(np.finfo(dt).max), 10_000), extremes(dt)])
    check(lib, "log1p", x)


def test_sqrt_exact(lib):
    dt = lib.dtype
    x = np.concatenate([patterns(dt, 0.0, float(np.finfo(dt).max), 100_000), extremes(dt)])
    got = lib("sqrt", x)
    with np.errstate(invalid="ignore"):
        want = np.sqrt(x)
    np.testing.assert_array_equal(got, want)


def test_sin_cos_large_arguments(lib):
    """Range reduction stays accurate up to |x| = 1e6 (the documented tested bound)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1e6, 1e6, 100_000), patterns(np.float64, 10, 1e6, 50_000)])
    x = x.astype(lib.dtype)
    for name in ("sin", "cos"):
        check(lib, name, x, max_ulps=MAX_ULPS_LARGE_SINCOS[lib.ty])


def test_sin_cos_beyond_range_are_bounded(lib):
    dt = lib.dtype
    x = patterns(dt, 1e6, float(np.finfo(dt).max), 20_000)
    for name in ("sin", "cos"):
        y = lib(name, np.concatenate([x, -x]))
        assert np.all(np.abs(y) <= 1)


def test_pow(lib):
    dt = lib.dtype
    rng = np.random.default_rng(1)
    n = 100_000
    x = patterns(dt, 0.0, float(np.finfo(dt).max), n)
    y = rng.uniform(-30, 30, x.size).astype(dt)
    check(lib, "pow", x, y)
    # moderate bases, exponents large enough to reach overflow and denormal underflow
    x = rng.uniform(0, 4, n).astype(dt)
    y = rng.uniform(-200, 200, n).astype(dt)
    check(lib, "pow", x, y)
    # negative bases: integer exponents give signed results, others NaN
    x = -rng.uniform(0, 10, n).astype(dt)
    y = np.concatenate([rng.integers(-40, 40, n // 2), rng.uniform(-5, 5, n - n // 2)]).astype(dt)
    check(lib, "pow", x, y)


def test_pow_special_values(lib):
    dt = lib.dtype
    v = np.array([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, 1e30, -1e30,
                  math.inf, -math.inf, math.nan], dtype=dt)
    x, y = (a.ravel() for a in np.meshgrid(v, v))
    got = lib("pow", x, y)
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    bad = ~((got == want) & (np.signbit(got) == np.signbit(want)) |
            np.isnan(got) & np.isnan(want))
    # finite non-special results may differ by rounding; they are covered by test_pow
    with np.errstate(invalid="ignore"):
        close = np.abs(got - want) <= np.spacing(np.abs(want))
    bad &= ~(np.isfinite(want) & (want != 0) & close)
    assert not bad.any(), list(zip(x[bad], y[bad], got[bad], want[bad], strict=True))


SPECIAL = {   # exact expectations, (input, output); outputs compared with the sign of zero
    "exp": [(-math.inf, 0.0), (math.inf, math.inf), (0.0, 1.0), (-0.0, 1.0), (1000.0, math.inf),
            (-1000.0, 0.0)],
    "log": [(0.0, -math.inf), (-0.0, -math.inf), (-1.0, math.nan), (math.inf, math.inf),
            (-math.inf, math.nan), (1.0, 0.0)],
    "log1p": [(-1.0, -math.inf), (-2.0, math.nan), (math.inf, math.inf), (0.0, 0.0),
              (-0.0, -0.0), (-math.inf, math.nan)],
    "expm1": [(-math.inf, -1.0), (math.inf, math.inf), (0.0, 0.0), (-0.0, -0.0),
              (1000.0, math.inf), (-1000.0, -1.0)],
    "tanh": [(math.inf, 1.0), (-math.inf, -1.0), (0.0, 0.0), (-0.0, -0.0), (50.0, 1.0)],
    "sin": [(0.0, 0.0), (-0.0, -0.0), (math.inf, math.nan), (-math.inf, math.nan)],
    "cos": [(0.0, 1.0), (-0.0, 1.0), (math.inf, math.nan), (-math.inf, math.nan)],
    "erf": [(0.0, 0.0), (-0.0, -0.0), (math.inf, 1.0), (-math.inf, -1.0), (10.0, 1.0)],
    "sqrt": [(0.0, 0.0), (-0.0, -0.0), (-1.0, math.nan), (math.inf, math.inf),
             (-math.inf, math.nan)],
}


@pytest.mark.parametrize("name", [n for n in MATH_FUNCTIONS if n != "pow"])
def test_special_values(lib, name):
    dt = lib.dtype
    cases = SPECIAL.get(name, []) + [(math.nan, math.nan)]
    x = np.array([c[0] for c in cases], dtype=dt)
    want = np.array([c[1] for c in cases], dtype=dt)
    got = lib(name, x)
    ok = ((got == want) & (np.signbit(got) == np.signbit(want))) | (np.isnan(got) & np.isnan(want))
    assert ok.all(), list(zip(x[~ok], got[~ok], want[~ok], strict=True))


def test_tiny_results_are_not_flushed(lib):
    """exp of very negative inputs gives the (denormal) values numpy gives, not 0."""
    dt = lib.dtype
    x = np.array([-87.0, -90.0, -100.0, -103.0] if dt == np.float32 else
                 [-700.0, -710.0, -740.0, -744.0], dtype=dt)
    got = lib("exp", x)
    want = reference("exp", lib.ty, x).astype(dt)
    assert np.all(want > 0) and np.all(got > 0), (got, want)
    check(lib, "exp", x)


def test_odd_functions_are_odd(lib):
    x = np.concatenate([patterns(lib.dtype, 1e-30, 50.0, 20_000)])
    for name in ("tanh", "erf", "sin"):
        np.testing.assert_array_equal(lib(name, -x), -lib(name, x), err_msg=name)


@pytest.mark.parametrize("name", MATH_FUNCTIONS)
def test_loops_are_vectorized(lib, name):
    """The optimized loop works on vectors and calls nothing but vectorizable intrinsics."""
    body = lib.optimized[name]
    if lib.ty == "double" and name == "pow" and not lib.out_of_line:
        # the documented fallback: one llvm.pow.f64 (libm) call per element, nothing else
        callees = set(re.findall(r"call [^@]*@([\w.]+)\(", body))
        assert callees and all(c.startswith("llvm.pow.") or c == "pow" for c in callees), callees
        return
    assert re.search(rf"<(4|8|16|32) x {lib.ty}>", body), body[:2000]
    callees = set(re.findall(r"call [^@]*@([\w.]+)\(", body))
    if lib.out_of_line:  # vector variants in the vector loop, the scalar one in the remainder
        fn = fn_name(name, lib.ty)
        assert any(re.fullmatch(rf"{fn}_v\d+", c) for c in callees), callees
        assert callees <= {f"{fn}_call"} | {f"{fn}_v{n}" for n in (2, 4, 8, 16)} | {
            c for c in callees if c.startswith("llvm.")}, callees
        return
    assert all(c.startswith("llvm.") for c in callees), callees


def test_ir_interface():
    ir = math_ir("pow", "float")
    assert "define internal float @symk_pow_f32(float %x, float %y) alwaysinline" in ir
    assert fn_name("exp", "double") == "symk_exp_f64"
    both = math_module_ir([("exp", "float"), ("tanh", "float"), ("exp", "float")])
    assert both.count("define internal float @symk_exp_f32(") == 1
    assert both.count("declare float @llvm.fmuladd.f32") == 1
    skipped = math_module_ir([("tanh", "float")], declared=["llvm.fmuladd.f32"])
    assert "declare float @llvm.fmuladd.f32" not in skipped
    assert "declare float @llvm.fabs.f32" in skipped
    with pytest.raises(ValueError):
        math_ir("gamma", "float")
    with pytest.raises(ValueError):
        math_ir("exp", "half")
