"""The op-test harness: ``check_op`` runs one K function on placeholders, compiles it with
``K.function`` on every available device and compares the result (values, shape, dtype and the
static ``K.int_shape``) with a numpy reference from ``tests/np_ref.py``.

Placeholders are built twice: with fully static shapes, and with ``None`` dims (the explicit
``None`` dims of ``input_shapes``, or else the shared first dim of every tensor input) fed with
several batch sizes.  Devices are listed once, in ``DEVICES``.

Every variant that passed is also recorded in ``OP_CASES`` (graph, fed values, expected values
and tolerances) so that other executors replay the suite: ``tests/codegen/cuda`` runs each one
with its kernels rendered as CUDA C on the CPU emulator.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symk import backend as K
from symk.errors import DeviceError
from tests import np_ref

#: every device the op tests run on (the single place to extend with a new device)
DEVICES: list[str] = ["interp", "cpu", "cuda"]

#: default tolerances (rtol, atol) per float dtype of the expected result
TOLERANCES = {"float16": (2e-3, 2e-3), "float32": (2e-5, 2e-6), "float64": (1e-10, 1e-12)}

Gen = Callable[[np.random.Generator, tuple, str], np.ndarray]


@functools.cache
def available_devices() -> tuple[str, ...]:
    """The devices of ``DEVICES`` that can compile and run a trivial function here
    (``SYMK_TEST_DEVICES=interp,cpu`` restricts the list).  A device that reports itself
    unavailable (``DeviceError``, a missing module) is skipped; any other failure propagates."""
    wanted = os.environ.get("SYMK_TEST_DEVICES")
    names = [d for d in DEVICES if wanted is None or d in wanted.split(",")]
    ok = []
    for dev in names:
        try:
            x = K.placeholder((2,), dtype="float32")
            out = K.function([x], [x * 2.0], device=dev)([np.ones(2, np.float32)])[0]
        except (DeviceError, ImportError):
            continue
        assert np.array_equal(out, [2.0, 2.0]), f"device {dev}: 2 * [1, 1] gave {out}"
        ok.append(dev)
    return tuple(ok)


@dataclass(frozen=True)
class Arg:
    """A non-tensor positional argument (an axis, a Python scalar, a shape, ...)."""

    value: Any


# ---------------------------------------------------------------- input generators


def default_gen(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind == "u":
        return rng.integers(0, 10, shape).astype(dtype)
    return rng.integers(-5, 6, shape).astype(dtype)


def uniform(lo: float, hi: float) -> Gen:
    def g(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
        return rng.uniform(lo, hi, shape).astype(dtype)
    return g


def ints(lo: int, hi: int) -> Gen:
    """Integers in [lo, hi) (as any dtype)."""
    def g(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
        return rng.integers(lo, hi, shape).astype(dtype)
    return g


def probs(axis: int = -1) -> Gen:
    """Positive values that sum to 1 along ``axis``."""
    def g(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
        p = rng.uniform(0.05, 1.0, shape)
        return (p / p.sum(axis=axis, keepdims=True)).astype(dtype)
    return g


def onehot(axis: int = -1) -> Gen:
    """One-hot targets along ``axis``."""
    def g(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
        k = shape[axis]
        idx = rng.integers(0, k, shape[:axis % len(shape)] + shape[axis % len(shape) + 1:])
        return np.moveaxis(np.eye(k)[idx], -1, axis).astype(dtype)
    return g


def fixed(value: Any) -> Gen:
    """Always the same value (its shape wins over the placeholder's)."""
    arr = np.asarray(value)

    def g(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
        return arr.astype(dtype)
    return g


# ---------------------------------------------------------------- the check


def _tol(dtype: np.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    r, a = TOLERANCES.get(np.dtype(dtype).name, (0.0, 0.0))
    return (r if rtol is None else rtol), (a if atol is None else atol)


def _label(fn: str | Callable) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))


def _variants(shapes: list[tuple | None], batch_sizes: Sequence[int], batch_none: bool):
    """(placeholder shapes, [feed shapes per batch size]) pairs: static first, then None dims."""
    tensors = [s for s in shapes if s is not None]
    explicit = any(d is None for s in tensors for d in s)
    b0 = batch_sizes[0]

    def fill(s, b):
        return None if s is None else tuple(b if d is None else d for d in s)

    if explicit:
        static = [fill(s, b0) for s in shapes]
        return [(static, [static]),
                (shapes, [[fill(s, b) for s in shapes] for b in batch_sizes])]
    out = [(shapes, [shapes])]
    firsts = {s[0] for s in tensors if len(s) >= 1}
    if batch_none and tensors and len(firsts) == 1 and all(len(s) >= 1 for s in tensors):
        dyn = [None if s is None else (None,) + tuple(s[1:]) for s in shapes]
        out.append((dyn, [[fill(s, b) for s in dyn] for b in batch_sizes]))
    return out


def _as_list(x: Any) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def check_op(fn: str | Callable, input_shapes: Sequence[Any], *,
             dtypes: Sequence[str | Sequence[str]] = ("float32",),
             ref: Callable | None = None,
             gen: Gen | Sequence[Gen | None] | None = None,
             rtol: float | None = None, atol: float | None = None,
             batch_sizes: Sequence[int] = (2, 5),
             batch_none: bool = True,
             list_input: bool = False,
             out_dtype: str | Sequence[str] | None = None,
             static_shape: bool = True,
             seed: int = 0,
             **kwargs: Any) -> list[np.ndarray]:
    """Check ``K.<fn>(*placeholders, **kwargs)`` (or ``fn(...)`` for a callable) against
    ``ref`` (default ``np_ref.<fn>``) on every available device.

    ``input_shapes`` holds one shape per tensor input (``None`` dims allowed) or ``Arg(value)``
    for a non-tensor positional argument; with ``list_input`` the tensors are passed as one
    list (concatenate, stack).  ``dtypes`` lists the dtype combinations to run (a string applies
    to every tensor input, a tuple gives one dtype per tensor input).  ``gen`` makes input values
    (one generator, or one per tensor input).  The expected dtype is the reference's unless
    ``out_dtype`` is given.  Returns the outputs of the last run (for extra checks).
    """
    label = _label(fn)
    kfn = getattr(K, fn) if isinstance(fn, str) else fn
    if ref is None:
        ref = getattr(np_ref, fn)
    specs = list(input_shapes)
    shapes = [None if isinstance(s, Arg) else tuple(s) for s in specs]
    n_tensors = sum(1 for s in shapes if s is not None)
    gens = list(gen) if isinstance(gen, (list, tuple)) else [gen] * n_tensors
    devices = available_devices()
    assert devices, "no device available"
    rng = np.random.default_rng(seed)
    last: list[np.ndarray] = []
    for combo in dtypes:
        dts = [combo] * n_tensors if isinstance(combo, str) else list(combo)
        assert len(dts) == n_tensors, f"{label}: {len(dts)} dtypes for {n_tensors} tensors"
        for ph_shapes, feeds in _variants(shapes, batch_sizes, batch_none):
            where = f"{label} dtypes={dts} placeholders={ph_shapes} kwargs={kwargs}"
            phs = [K.placeholder(s, dtype=d)
                   for s, d in zip([s for s in ph_shapes if s is not None], dts)]
            outs, multi = _as_list(_call(kfn, specs, ph_shapes, phs, list_input, kwargs))
            if out_dtype is None or isinstance(out_dtype, str):
                out_dtypes = [out_dtype] * len(outs)
            else:
                out_dtypes = list(out_dtype)
            need_static = static_shape and all(
                d is not None for s in ph_shapes if s is not None for d in s)
            fns = {dev: K.function(phs, outs, device=dev) for dev in devices}
            case = OpCase(where, [p.node for p in phs], [o.node for o in outs], [], [])
            for feed in feeds:
                vals = [(gens[k] or default_gen)(rng, s, d)
                        for k, (s, d) in enumerate(zip([s for s in feed if s is not None], dts))]
                expected, rmulti = _as_list(_call(ref, specs, feed, vals, list_input, kwargs))
                assert multi == rmulti and len(expected) == len(outs), \
                    f"{where}: {len(outs)} outputs, reference gives {len(expected)}"
                for dev, f in fns.items():
                    last = f(vals)
                    for i, (t, got, e) in enumerate(zip(outs, last, expected)):
                        _compare(f"{where} device={dev} output {i} fed {[v.shape for v in vals]}",
                                 t, got, np.asarray(e), out_dtypes[i], rtol, atol, need_static)
                want = [_expected_as(np.asarray(e), d) for e, d in zip(expected, out_dtypes)]
                case.feeds.append((vals, want))
                case.tols = [_tol(w.dtype, rtol, atol) for w in want]
            _record_kernels(fns)
            OP_CASES.append(case)
    return last


@dataclass
class OpCase:
    """One placeholder variant of a ``check_op`` call that passed on every device: replaying
    ``outputs`` on ``feeds`` must give the expected values within ``tols``."""

    where: str
    inputs: list[Any]  # the fed placeholder Nodes
    outputs: list[Any]  # the output Nodes
    #: per feed: (input values, expected values already in the expected dtype)
    feeds: list[tuple[list[np.ndarray], list[np.ndarray]]]
    tols: list[tuple[float, float]]  # (rtol, atol) per output, as ``check_op`` compares


#: every check_op variant that passed in this session, in order (see ``OpCase``)
OP_CASES: list[OpCase] = []


def _expected_as(exp: np.ndarray, out_dtype: str | None) -> np.ndarray:
    """The reference value in the dtype the output must have (``out_dtype``, else its own)."""
    return exp.astype(np.dtype(out_dtype) if out_dtype is not None else exp.dtype)


#: Kernel IR programs (name -> Program) of every kernel the op tests compiled on a device that
#: lowers kernels (cpu, cuda); ``tests/codegen/cuda`` compile-checks their CUDA rendering
KERNEL_CORPUS: dict[str, Any] = {}


def _record_kernels(fns: dict[str, Any]) -> None:
    from symk.codegen.lowering import lower_kernel
    from symk.errors import SymkError

    for f in fns.values():
        for plan in getattr(f, "fn", f).plans:
            for step in plan.schedule.kernels:
                if step.name not in KERNEL_CORPUS:
                    try:
                        KERNEL_CORPUS[step.name] = lower_kernel(step).program
                    except SymkError:  # kernels no device can lower run on the reference
                        KERNEL_CORPUS[step.name] = None


def _call(f: Callable, specs: list, shapes: list, values: list, list_input: bool,
          kwargs: dict) -> Any:
    """f(...) with ``values`` in the tensor slots and the ``Arg`` values elsewhere; with
    ``list_input`` the tensor values are passed as one list first."""
    it = iter(values)
    args = [next(it) if s is not None else a.value for s, a in zip(shapes, specs)]
    if list_input:
        tensors = [a for a, s in zip(args, shapes) if s is not None]
        rest = [a for a, s in zip(args, shapes) if s is None]
        return f(tensors, *rest, **kwargs)
    return f(*args, **kwargs)


def _compare(where: str, t: Any, got: np.ndarray, exp: np.ndarray, out_dtype: str | None,
             rtol: float | None, atol: float | None, need_static: bool) -> None:
    got = np.asarray(got)
    exp = _expected_as(exp, out_dtype)
    want_dtype = exp.dtype
    assert got.dtype == want_dtype, f"{where}: dtype {got.dtype}, expected {want_dtype}"
    assert np.dtype(t.dtype) == want_dtype, \
        f"{where}: static dtype {t.dtype}, expected {want_dtype}"
    assert got.shape == exp.shape, f"{where}: shape {got.shape}, expected {exp.shape}"
    ish = K.int_shape(t)
    assert len(ish) == got.ndim and all(d is None or d == g for d, g in zip(ish, got.shape)), \
        f"{where}: int_shape {ish} does not match the computed shape {got.shape}"
    if need_static:
        assert None not in ish, f"{where}: int_shape {ish} has unknown dims for static inputs"
    assert_values(where, got, exp, _tol(want_dtype, rtol, atol))


def assert_values(where: str, got: np.ndarray, exp: np.ndarray, tol: tuple[float, float]) -> None:
    """``got`` equals ``exp`` (dtype, shape, values; floats within ``tol`` = (rtol, atol), NaNs
    in the same places): the value comparison of ``check_op``, shared with its replays."""
    got = np.asarray(got)
    assert got.dtype == exp.dtype, f"{where}: dtype {got.dtype}, expected {exp.dtype}"
    assert got.shape == exp.shape, f"{where}: shape {got.shape}, expected {exp.shape}"
    if exp.dtype.kind in "fc":
        np.testing.assert_allclose(got, exp, rtol=tol[0], atol=tol[1], equal_nan=True,
                                   err_msg=where)
    else:
        np.testing.assert_array_equal(got, exp, err_msg=where)
