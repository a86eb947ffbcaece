"""Gradient checks for ``K.gradients`` against central finite differences in float64.

``check_grad("softmax", [(3, 5)], axis=0)`` builds one float64 placeholder (or variable) per
input, applies the K function (or a callable taking the tensors), forms the scalar loss
``sum_k K.sum(out_k * W_k)`` with fixed random weights ``W_k`` (fed as placeholders), and
compares ``K.gradients(loss, inputs)`` with central differences of the same compiled loss
function, on every device of ``devices()``.  The reference is numerical, never symk's own rules.

Inputs are given as shapes (uniform random float64 values in ``[low, high]``, kept ``margin``
away from the ``kinks``) or as numpy arrays (used as they are; integer and boolean arrays are
fed but not differentiated).  Keyword arguments not listed in ``check_grad`` go to the K
function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from symk import backend as K
from symk.graph.node import apply
from symk.graph.tensor import Tensor
from tests.harness import available_devices

InputSpec = tuple[int, ...] | np.ndarray


def devices() -> list[str]:
    """The devices to check: the op harness's list (``SYMK_TEST_DEVICES`` restricts it)."""
    return list(available_devices())


@contextlib.contextmanager
def floatx64() -> Iterator[None]:
    """Build in float64 (constants that K creates with floatx follow)."""
    old = K.floatx()
    K.set_floatx("float64")
    try:
        yield
    finally:
        K.set_floatx(old)


def make_value(spec: InputSpec, rng: np.random.Generator, low: float = -1.0, high: float = 1.0,
               kinks: Sequence[float] = (), margin: float = 0.05) -> np.ndarray:
    """A random float64 array of shape ``spec`` avoiding ``kinks``, or ``spec`` itself."""
    if isinstance(spec, np.ndarray):
        return spec
    v = rng.uniform(low, high, size=tuple(spec))
    for _ in range(100):
        bad = np.zeros(v.shape, bool)
        for k in kinks:
            bad |= np.abs(v - k) < margin
        if not bad.any():
            break
        v[bad] = rng.uniform(low, high, size=int(bad.sum()))
    else:
        raise AssertionError(f"could not draw values in [{low}, {high}] away from {kinks}")
    return np.asarray(v, dtype=np.float64)


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _sym_shape(shape: tuple[int, ...], dynamic: bool) -> tuple[int | None, ...]:
    # dims of size 1 stay static: symk only broadcasts dims declared as 1
    return tuple(None if dynamic and d != 1 else d for d in shape)


def _label(fn: str | Callable[..., Any]) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))


def check_grad(fn: str | Callable[..., Any], inputs: Sequence[InputSpec], *,
               dynamic: bool | Sequence[bool] = False, variables: bool = False,
               low: float = -1.0, high: float = 1.0, kinks: Sequence[float] = (),
               margin: float = 0.05, wrt: Sequence[int] | None = None, rng_seed: int = 0,
               eps: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-8,
               device_list: Sequence[str] | None = None, **kwargs: Any) -> list[np.ndarray]:
    """Check d(sum(out * W))/d(input) for the float inputs (or those in ``wrt``).

    ``dynamic`` declares every dim (other than size-1 dims) of the placeholders as None, for
    all inputs or per input; ``variables`` makes the float inputs K variables instead of
    placeholders.  Returns the analytic gradients of the first device.
    """
    f = getattr(K, fn) if isinstance(fn, str) else fn
    label = _label(fn)
    rng = np.random.default_rng(rng_seed)
    values = [make_value(s, rng, low, high, kinks, margin) for s in inputs]
    dyn = [dynamic] * len(values) if isinstance(dynamic, bool) else list(dynamic)
    targets = [i for i, v in enumerate(values) if _is_float(v)] if wrt is None else list(wrt)
    with floatx64():
        syms: list[Any] = []
        for v, d in zip(values, dyn, strict=True):
            if variables and _is_float(v):
                syms.append(K.variable(v, dtype=v.dtype.name))
            else:
                syms.append(K.placeholder(shape=_sym_shape(v.shape, d), dtype=v.dtype.name))
        out = f(*syms, **kwargs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        fed = [s for s, v in zip(syms, values) if not (variables and _is_float(v))]
        fed_vals = [v for v in values if not (variables and _is_float(v))]
        ws = [K.placeholder(shape=o.shape, dtype="float64") for o in outs]
        loss = None
        for o, wgt in zip(outs, ws):
            term = K.sum(K.cast(o, "float64") * wgt)
            loss = term if loss is None else loss + term
        grads = K.gradients(loss, [syms[i] for i in targets])
        first: list[np.ndarray] | None = None
        weights: list[np.ndarray] | None = None
        for dev in device_list or devices():
            out_vals = K.function(fed, outs, device=dev)(fed_vals)
            if weights is None:
                weights = [rng.uniform(-1.5, 1.5, size=np.shape(o)) for o in out_vals]
            loss_fn = K.function(fed + ws, [loss], device=dev)
            grad_fn = K.function(fed + ws, grads, device=dev)
            analytic = grad_fn(fed_vals + weights)
            for i, g in zip(targets, analytic):
                where = f"{label}: d loss / d input {i} on {dev}"
                assert g.shape == values[i].shape, f"{where}: gradient shape {g.shape}"
                assert g.dtype == values[i].dtype, f"{where}: gradient dtype {g.dtype}"
                num = _numeric(loss_fn, syms, values, fed, weights, i, variables, eps)
                np.testing.assert_allclose(g, num, rtol=rtol, atol=atol, err_msg=where)
            if first is None:
                first = analytic
    assert first is not None
    return first


def _numeric(loss_fn: Any, syms: list[Any], values: list[np.ndarray], fed: list[Any],
             weights: list[np.ndarray], i: int, variables: bool, eps: float) -> np.ndarray:
    """Central differences of the compiled loss w.r.t. input ``i``."""
    base = values[i]
    is_var = variables and _is_float(base)
    fed_vals = [v for v in values if not (variables and _is_float(v))]
    slot = None if is_var else next(k for k, s in enumerate(fed) if s is syms[i])

    def loss_at(x: np.ndarray) -> float:
        if is_var:
            K.set_value(syms[i], x)
            return float(loss_fn(fed_vals + weights)[0])
        vals = list(fed_vals)
        vals[slot] = x
        return float(loss_fn(vals + weights)[0])

    num = np.zeros(base.shape, np.float64)
    x = base.copy()
    flat, nflat = x.reshape(-1), num.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = loss_at(x)
        flat[k] = old - eps
        down = loss_at(x)
        flat[k] = old
        nflat[k] = (up - down) / (2 * eps)
    if is_var:
        K.set_value(syms[i], base)
    return num


def grad_values(fn: Callable[..., Any], values: Sequence[np.ndarray], *,
                wrt: Sequence[int] | None = None, weights: Any = None,
                device: str | None = None) -> list[np.ndarray]:
    """Exact-value helper: the gradients of ``sum(fn(*inputs) * weights)`` (weights default
    to 1) w.r.t. the float inputs (or those in ``wrt``), fed as static float64 placeholders."""
    values = [np.asarray(v) for v in values]
    targets = [i for i, v in enumerate(values) if _is_float(v)] if wrt is None else list(wrt)
    with floatx64():
        syms = [K.placeholder(shape=v.shape, dtype=v.dtype.name) for v in values]
        out = fn(*syms)
        loss = K.sum(out if weights is None else out * K.constant(weights, dtype=out.dtype))
        grads = K.gradients(loss, [syms[i] for i in targets])
        return K.function(syms, grads, device=device or devices()[0])(list(values))


def case(case_id: str, fn: str | Callable[..., Any], inputs: Sequence[InputSpec],
         dynamic_ok: bool | Sequence[bool] = True, **opts: Any) -> list[Any]:
    """pytest params for ``test(fn, inputs, opts)``: static shapes, and None dims too unless
    ``dynamic_ok`` is False (ops whose K function needs static shapes); a list of bools says
    which inputs get None dims in the dynamic variant."""
    import pytest

    out = [pytest.param(fn, inputs, dict(opts), id=case_id)]
    if dynamic_ok is not False:
        dyn = True if dynamic_ok is True else list(dynamic_ok)
        out.append(pytest.param(fn, inputs, dict(opts, dynamic=dyn), id=case_id + "-dyn"))
    return out


def op_case_params(op_cases: dict[str, list[tuple]]) -> list[Any]:
    """pytest params ``(fn, shapes, opts)`` with ids ``<op>-<k>`` from an ``OP_CASES`` dict (the
    per-op-family gradient modules parametrize ``check_grad`` with it)."""
    import pytest

    return [pytest.param(fn, shapes, opts, id=f"{name}-{k}")
            for name, cases in op_cases.items() for k, (fn, shapes, opts) in enumerate(cases)]


def node_fn(build: Callable[..., Any]) -> Callable[..., Any]:
    """A check_grad callable from a function of Nodes."""
    def f(*ts):
        return Tensor(build(*[t.node for t in ts]))
    return f


def op(name: str, **attrs: Any) -> Callable[..., Any]:
    """A check_grad callable applying the registered op ``name`` with ``attrs``."""
    return node_fn(lambda *xs: apply(name, list(xs), **attrs))
