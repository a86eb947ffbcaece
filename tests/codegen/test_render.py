"""The LLVM renderer and compiler: native kernels against the Kernel-IR interpreter (per kernel,
on random graphs) and the cpu device against the interp device and numpy (hand-written graphs);
IEEE special values, NaN-propagating max/min and argmax, float32 sums as accurate as numpy's
pairwise sum, vectorized loops, no libm calls and no unsafe fast-math flags."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from symk import backend as K
from symk.codegen.llvm_compile import optimized_ir_text
from symk.codegen.llvm_render import render_module
from symk.codegen.lowering import lower_kernel
from symk.passes.pipeline import optimize
from tests.codegen.cases import CASES
from tests.codegen.kircheck import (
    assert_match,
    native_kernels,
    reference_values,
    run_lowered,
    run_native,
    ulp_diff,
)
from tests.passes.fuzzgen import random_case

# the reference executor's numpy mean warns on the empty_batch case
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")

N_NATIVE_FUZZ = int(os.environ.get("SYMK_NATIVE_FUZZ_CASES", "24"))

#: cases whose cpu results must equal the interp device's bit for bit (plain arithmetic,
#: integers, booleans, casts, division, comparisons, max/min: no transcendentals, no sums)
EXACT = {"broadcast_scalar", "broadcast_row_col", "argmax_ties_nan", "any_all", "int_kernels",
         "int_division", "float_division", "bool_float64", "casts", "specials_minmax"}


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMK_CACHE_DIR", str(tmp_path_factory.mktemp("symk-cache")))
        yield


#: ops whose sign of a zero result is implementation-defined (numpy's SIMD max returns either
#: operand of maximum(0.0, -0.0); LLVM's llvm.maximum orders -0 < +0)
ZERO_SIGN_FREE = {"maximum", "minimum", "max", "min", "relu", "clip", "sqrt"}


def _same_bits(got: np.ndarray, want: np.ndarray, what: str, zero_sign: bool = True) -> None:
    """Equal values, NaN in the same places, and (unless ``zero_sign`` is off) the same sign of
    zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if got.dtype.kind == "f":
        both_nan = np.isnan(got) & np.isnan(want)
        same = (got == want)
        if zero_sign:
            same &= np.signbit(got) == np.signbit(want)
        bad = ~(same | both_nan)
        assert not bad.any(), f"{what}: {got[bad]} != {want[bad]}"
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


# ---------------------------------------------------------------- random graphs, per kernel


@pytest.fixture(scope="module")
def fuzz_kernels():
    """(seed, lowered kernel, its inputs) for every kernel of the first fuzz cases, with the
    inputs taken from the reference executor, and their native code in one module."""
    items = []
    for seed in range(N_NATIVE_FUZZ):
        case = random_case(seed)
        opt = optimize(case.roots)
        plan, vals = reference_values(opt.schedule, list(case.feeds), list(case.feeds.values()))
        for step in opt.schedule.kernels:
            lk = lower_kernel(step)
            items.append((seed, lk, [vals[plan.slot[id(x)]] for x in lk.inputs]))
    return items, native_kernels([lk for _, lk, _ in items], "fuzz")


def test_native_kernels_match_the_kernel_ir_interpreter(fuzz_kernels):
    items, fns = fuzz_kernels
    assert len(items) > 4 * N_NATIVE_FUZZ
    for seed, lk, ins in items:
        want = run_lowered(lk, ins)
        got = run_native(lk, fns[lk.program.name], ins)
        for g, e in zip(got, want):
            assert_match(g, e, rtol=1e-5, atol=1e-6, what=f"seed {seed} kernel {lk.program.name}")


def test_native_kernels_split_in_chunks_match_one_call(fuzz_kernels):
    items, fns = fuzz_kernels
    for seed, lk, ins in items[::3]:
        fn = fns[lk.program.name]
        whole = run_native(lk, fn, ins)
        parts = run_native(lk, fn, ins, chunks=[1, 2, 4])
        for a, b in zip(parts, whole):
            _same_bits(a, b, f"seed {seed} kernel {lk.program.name}")


# ---------------------------------------------------------------- hand-written graphs


@pytest.fixture(scope="module")
def case_results():
    """Every hand-written case compiled into one cpu function and one interp function (one
    LLVM module for all), run for each of its feed lists."""
    built = {name: mk() for name, mk in CASES.items()}
    inputs = [x for b in built.values() for x in b.inputs]
    outputs = [o for b in built.values() for o in b.outputs]
    fc = K.function(inputs, outputs, device="cpu")
    fi = K.function(inputs, outputs, device="interp")
    runs = max(len(b.feeds) for b in built.values())
    results: dict[str, list] = {name: [] for name in built}
    for r in range(runs):
        feeds = [v for b in built.values() for v in b.feeds[min(r, len(b.feeds) - 1)]]
        cpu, ref = fc(feeds), fi(feeds)
        k = 0
        for name, b in built.items():
            n = len(b.outputs)
            if r < len(b.feeds):
                results[name].append((b, b.feeds[r], cpu[k:k + n], ref[k:k + n]))
            k += n
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_cpu_matches_interp(case_results, name):
    for b, _, cpu, ref in case_results[name]:
        for k, (c, r) in enumerate(zip(cpu, ref)):
            what = f"{name} output {k} ({b.outputs[k].node.op.name})"
            if name in EXACT or c.dtype.kind != "f":
                _same_bits(c, r, what, b.outputs[k].node.op.name not in ZERO_SIGN_FREE)
            else:
                assert_match(c, r, rtol=2e-6, atol=1e-6, what=what)


@pytest.mark.parametrize("name", [n for n, f in CASES.items() if f().expect is not None])
def test_cpu_matches_numpy(case_results, name):
    for b, feeds, cpu, _ in case_results[name]:
        with np.errstate(all="ignore"):
            want = b.expect(*feeds)
        for k, (c, e) in enumerate(zip(cpu, want)):
            what = f"{name} output {k} ({b.outputs[k].node.op.name})"
            if name in EXACT:
                _same_bits(c, np.asarray(e), what,
                           b.outputs[k].node.op.name not in ZERO_SIGN_FREE)
            else:
                assert_match(c, np.asarray(e), rtol=2e-6, atol=1e-6, what=what)


# ---------------------------------------------------------------- IEEE specials on long arrays

def _sprinkled(shape, seed, specials=(np.nan, np.inf, -np.inf, 0.0, -0.0), frac=0.02):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=shape).astype(np.float32)
    flat = v.reshape(-1)
    idx = rng.choice(flat.size, int(flat.size * frac), replace=False)
    flat[idx] = rng.choice(np.array(specials, np.float32), idx.size)
    return v


def test_specials_through_vectorized_elementwise_and_reductions():
    """Long rows, so the vectorized loop bodies (not only the scalar remainders) see NaN, ±inf
    and signed zeros; every result must equal numpy's bit for bit (max/min propagate NaN,
    argmax/argmin return the first NaN like numpy)."""
    x = K.placeholder((None, 203))
    y = K.placeholder((None, 203))
    outs = [K.maximum(x, y), K.minimum(x, y), K.max(x, axis=1), K.min(x, axis=1),
            K.max(x, axis=0), K.min(y, axis=0), K.argmax(x, axis=1), K.argmin(x, axis=1),
            K.argmax(y, axis=0), K.relu(x), K.abs(y), x * y - x, K.sqrt(y), x / y,
            K.any(K.greater(x, 2.5), axis=1), K.sign(y)]
    f = K.function([x, y], outs, device="cpu")
    xv, yv = _sprinkled((64, 203), 1), _sprinkled((64, 203), 2, frac=0.005)
    xv[5, :] = np.nan  # all-NaN row
    xv[6, :] = -np.inf
    xv[7, 100] = np.nan  # a single NaN in the middle of a row
    xv[8, :] = 1.0  # ties everywhere
    xv[9, 202] = np.nan  # NaN in the last (remainder) element
    with np.errstate(all="ignore"):
        want = [np.maximum(xv, yv), np.minimum(xv, yv), xv.max(1), xv.min(1), xv.max(0),
                yv.min(0), xv.argmax(1), xv.argmin(1), yv.argmax(0),
                np.maximum(xv, np.float32(0)), np.abs(yv), xv * yv - xv,
                np.sqrt(np.clip(yv, 0, np.inf)), xv / yv,
                (xv > 2.5).any(1), np.sign(yv)]
    for k, (g, e) in enumerate(zip(f([xv, yv]), want)):
        op = outs[k].node.op.name
        _same_bits(g, e, f"output {k} ({op})", op not in ZERO_SIGN_FREE)


@pytest.mark.parametrize("name,fn,npfn,tol", [
    ("exp", K.exp, np.exp, 4), ("log", K.log, np.log, 4), ("tanh", K.tanh, np.tanh, 4),
    ("sigmoid", K.sigmoid, lambda v: 1 / (1 + np.exp(-v.astype(np.float64))), 4),
    ("softplus", K.softplus, lambda v: np.logaddexp(0, v.astype(np.float64)), 4),
    ("sin", K.sin, np.sin, 4), ("cos", K.cos, np.cos, 4),
    ("sqrt", K.sqrt, lambda v: np.sqrt(np.clip(v, 0, np.inf)), 0),  # Keras clips at 0
])
def test_transcendentals_within_a_few_ulps_and_specials_preserved(name, fn, npfn, tol):
    x = K.placeholder((None,))
    f = K.function([x], [fn(x)], device="cpu")
    v = np.concatenate([np.linspace(-30, 30, 4001, dtype=np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 88.0,
                                  -88.0, 1e30, -1e30], np.float32)])
    if name in ("log", "sqrt"):
        v = np.abs(v)
        v[-5:] = [0.0, -0.0, np.inf, np.nan, -1.0]
    if name in ("sin", "cos"):  # huge arguments are llvm_math's own tests (bounded error)
        v = v[np.abs(v) < 1e6]
    (got,) = f([v])
    with np.errstate(all="ignore"):
        want = np.asarray(npfn(v)).astype(np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(want)), name
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]) and not np.isinf(got[~inf]).any(), name
    ok = np.isfinite(want)
    assert ulp_diff(got[ok], want[ok]).max() <= tol, name


# ---------------------------------------------------------------- accuracy of long sums


def test_float32_sums_are_as_accurate_as_numpy():
    rng = np.random.default_rng(3)
    big = (rng.random(1_000_000) * 10 + 1e3).astype(np.float32)
    mat = (rng.random((1000, 1000)) + 100).astype(np.float32)
    x = K.placeholder((None,))
    m = K.placeholder((None, None))
    f = K.function([x, m], [K.sum(x), K.mean(x), K.sum(m, axis=1), K.sum(m, axis=0),
                            K.sum(m)], device="cpu")
    got = f([big, mat])
    truth = [big.astype(np.float64).sum(), big.astype(np.float64).mean(),
             mat.astype(np.float64).sum(1), mat.astype(np.float64).sum(0),
             mat.astype(np.float64).sum()]
    numpy = [big.sum(), big.mean(), mat.sum(1), mat.sum(0), mat.sum()]
    for k, (g, t, n) in enumerate(zip(got, truth, numpy)):
        assert g.dtype == np.float32
        err = np.abs(g.astype(np.float64) - t)
        ref = np.abs(n.astype(np.float64) - t)
        # at least as accurate as numpy (up to the final rounding to float32)
        half_ulp = np.spacing(np.abs(t).astype(np.float32)).astype(np.float64) / 2
        assert np.all(err <= np.maximum(ref, half_ulp) + 1e-12), (k, err.max(), ref.max())


# ---------------------------------------------------------------- the generated code


def _module(outputs) -> str:
    opt = optimize([o.node for o in outputs])
    return render_module([lower_kernel(k).program for k in opt.schedule.kernels])


VEC = re.compile(r"<\d+ x (float|double)>")


def test_elementwise_and_row_sum_kernels_are_vectorized():
    x = K.placeholder((None, 512))
    for outs in ([K.tanh(x * 1.7 + 0.3) * K.sigmoid(x) + K.exp(-x * x) * 0.5],
                 [x * 3.0 - 1.0], [K.sum(x, axis=1)], [K.sum(K.exp(x), axis=1)]):
        text = optimized_ir_text(_module(outs))
        assert VEC.search(text), [o.node.op.name for o in outs]


TRANSCENDENTALS = [K.exp, K.log, K.tanh, K.sigmoid, K.softplus, K.sin, K.cos, K.sqrt,
                   lambda x: K.pow(x, 1.7), lambda x: K.log(1.0 + x), lambda x: K.exp(x) - 1.0,
                   lambda x: K.pow(K.abs(x), x)]
LIBM = re.compile(r"@(exp|log|tanh|sin|cos|pow|erf|sqrt|expm1|log1p|fmod|exp2)f?\b")


def test_no_libm_calls_and_no_unsafe_fast_math():
    x = K.placeholder((None, 64))
    outs = [fn(x) for fn in TRANSCENDENTALS] + [K.logsumexp(x, axis=1), K.softmax(x),
                                                 K.sum(x, axis=1), K.max(x, axis=0)]
    for text in (_module(outs), optimized_ir_text(_module(outs))):
        defined = set(re.findall(r"^define [^@]*@([\w.$]+)\(", text, re.M))
        for callee in re.findall(r"call [^@]*@([\w.$]+)\(", text):
            assert callee.startswith("llvm.") or callee in defined, callee
        for line in text.splitlines():
            if line.startswith("declare"):
                assert "@llvm." in line, line
        assert not LIBM.search(text), LIBM.search(text)
        for flag in ("nnan", "ninf", " fast "):
            assert flag not in text, flag


def test_every_dtype_kernel_renders_valid_ir():
    """float32/float64/int32/int64/bool kernels, elementwise and reductions, go through the
    LLVM verifier and O3."""
    outs = []
    for dt in ("float32", "float64", "int32", "int64"):
        x = K.placeholder((None, 5), dtype=dt)
        outs += [x * x + x, K.sum(x, axis=1), K.max(x, axis=0), K.argmax(x, axis=1),
                 K.cast(x, "bool"), K.prod(x, axis=1)]
    b = K.placeholder((None, 5), dtype="bool")
    outs += [K.any(b, axis=1), K.all(b, axis=0), K.cast(b, "int32") + 1]
    text = optimized_ir_text(_module(outs))
    assert "define" in text


def test_kernels_with_many_transcendentals_call_vector_variants():
    """Past MATH_INLINE_LIMIT calls a kernel calls out-of-line math functions whose vector
    variants keep its loop vectorized (and keep LLVM's time in check); numbers as numpy's."""
    from symk.codegen.llvm_render import MATH_INLINE_LIMIT

    x = K.placeholder((None,))
    y, want = x, np.linspace(-3, 3, 1001)
    for i in range(MATH_INLINE_LIMIT + 4):
        y = K.tanh(y) * 1.5 + 0.1 if i % 2 else K.sin(y) - 0.2
        want = np.tanh(want) * 1.5 + 0.1 if i % 2 else np.sin(want) - 0.2
    f = K.function([x], [y], device="cpu")
    np.testing.assert_allclose(f([np.linspace(-3, 3, 1001, dtype=np.float32)])[0], want,
                               rtol=2e-5, atol=2e-6)
    (k,) = f.kernels
    assert "@symk_tanh_f32_call(" in k["llvm_ir"] and "vector-function-abi-variant" in k["llvm_ir"]
    opt = optimized_ir_text(k["llvm_ir"])
    assert re.search(r"call <\d+ x float> @symk_tanh_f32_v\d+\(", opt)
    assert re.search(r"call <\d+ x float> @symk_sin_f32_v\d+\(", opt)


def test_big_modules_skip_the_vector_epilogue_small_ones_keep_it():
    """A module past BIG_MODULE_LINES gets one vector loop and the scalar remainder (LLVM's
    vector epilogue would be a third copy of the body); a small one still gets the epilogue,
    so the process-wide option is restored after each compile."""
    from symk.codegen.llvm_compile import BIG_MODULE_LINES

    def widths(text: str) -> set[str]:
        return set(re.findall(r"call <(\d+) x float> @symk_tanh_f32_v\d+\(", text))

    x = K.placeholder((None,))
    y = x
    for i in range(400):
        y = K.tanh(y) if i % 4 == 0 else y * 1.0001 + 0.001
    big = _module([y])
    assert big.count("\n") > BIG_MODULE_LINES
    assert len(widths(optimized_ir_text(big))) == 1
    small = _module([K.tanh(x) * 2.0])
    assert small.count("\n") <= BIG_MODULE_LINES
    assert len(re.findall(r"<(\d+) x float>", optimized_ir_text(small))) > 0
    assert len(set(re.findall(r"<(\d+) x float>", optimized_ir_text(small)))) >= 2
