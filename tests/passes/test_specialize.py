"""Specialization: the learning phase fed as a constant (one plan per fed value; dropout and
``in_train_phase`` fold away at test time), ``x**2``, ``x**1``, ``x**0.5``, ``mean`` with a
static count, and ``where`` with a constant condition."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.backend import _variables
from symk.graph import build as gb
from symk.graph.node import apply
from symk.passes import specialize
from symk.passes.rewrite import rewrite
from tests.passes.common import assert_close, ops, ph, run_levels

RNG = np.random.default_rng(3)


@pytest.fixture
def lp_reset(monkeypatch):
    """A fresh, unfixed learning phase; the global state is restored afterwards."""
    monkeypatch.setattr(_variables, "_learning_phase_value", None)
    monkeypatch.setattr(_variables, "_learning_phase_ph", None)


def _random_ops(schedule) -> list[str]:
    # (counter-based random ops are computed inside kernels, fused with their consumers)
    return [n.op.name for s in schedule.steps
            for n in (s.nodes if hasattr(s, "nodes") else [s.node]) if n.op.is_random]


# ---------------------------------------------------------------- learning phase


def test_dropout_folds_away_at_test_time(lp_reset):
    x = K.placeholder((64, 32))
    lp = K.learning_phase()
    y = K.in_train_phase(lambda: K.dropout(x, 0.5, seed=1), x) * 3.0
    f = K.function([x, lp], [y])
    xs = RNG.normal(size=(64, 32)).astype(np.float32)
    test_out = f([xs, 0])[0]
    np.testing.assert_allclose(test_out, xs * 3.0, rtol=1e-6)
    train_out = f([xs, 1])[0]
    kept = train_out != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(train_out[kept], (xs * 3.0 / 0.5)[kept], rtol=1e-6)
    plans = f.fn._plans
    assert set(plans) == {(0,), (1,)}
    test_s, train_s = plans[(0,)].schedule, plans[(1,)].schedule
    assert _random_ops(test_s) == [] and _random_ops(train_s) == ["random_binomial"]
    assert [n.op.name for k in test_s.kernels for n in k.nodes] == ["mul"]  # only x * 3
    assert not any(n.op.name == "where" for k in train_s.kernels for n in k.nodes)
    assert len(train_s.kernels) == 1  # the mask is drawn in the kernel applying it
    # the plans stay cached: feeding the phase again compiles nothing new
    f([xs, 0]), f([xs, 1])
    assert set(f.fn._plans) == {(0,), (1,)}


def test_learning_phase_default_is_the_test_plan(lp_reset):
    x = K.placeholder((4,))
    lp = K.learning_phase()
    y = K.in_train_phase(x * 2.0, x * 5.0)
    f = K.function([x], [y])  # the phase is not an input: its default (0) is used
    np.testing.assert_allclose(f([np.ones(4, np.float32)])[0], 5.0)
    assert "where" not in [n.op.name for k in f.fn.schedule.kernels for n in k.nodes]
    g = K.function([x, lp], [y])
    np.testing.assert_allclose(g([np.ones(4, np.float32), 1])[0], 2.0)


def test_learning_phase_in_arithmetic_is_a_constant(lp_reset):
    x = K.placeholder((3,))
    lp = K.learning_phase()
    y = x * (1.0 + K.cast(lp, "float32"))
    f = K.function([x, lp], [y])
    xs = np.array([1.0, np.inf, -2.0], np.float32)
    np.testing.assert_array_equal(f([xs, 0])[0], xs)
    np.testing.assert_array_equal(f([xs, 1])[0], xs * 2)
    assert f.fn._plans[(0,)].schedule.steps == []  # x * 1 -> x: nothing to compute


# ---------------------------------------------------------------- rules


def test_pow_two_one_half_structure():
    x = ph((4,))
    two, one, half = gb.pow(x, 2.0), gb.pow(x, 1.0), gb.pow(x, 0.5)
    out = rewrite([two, one, half], specialize.rules)
    assert out == [gb.square(x), x, gb.sqrt(x)]
    ints = ph((3,), "int32")
    big = rewrite([gb.pow(ints, 2.0)], specialize.rules)[0]  # float64 result
    assert big is gb.square(gb.cast(ints, "float64"))
    arr = gb.const(np.full(4, 0.5, np.float32))
    assert rewrite([gb.pow(x, arr)], specialize.rules)[0].op.name == "pow"


def test_pow_rules_numbers():
    x, i = ph((6,)), ph((3,), "int32")
    nodes = [gb.pow(x, 2.0), gb.pow(x, 1.0), gb.pow(x, 0.5), gb.pow(i, 2.0), gb.pow(i, 2)]
    xs = np.array([1.5, -2.0, 0.0, -0.0, np.inf, -np.inf], np.float32)
    ints = np.array([100000, -3, 7], np.int32)
    on, off = run_levels(nodes, {x: xs, i: ints})
    with np.errstate(all="ignore"):
        want = [xs ** np.float32(2), xs, np.sqrt(xs), ints.astype(np.float64) ** 2,
                ints ** 2]
    for k, (a, b, w) in enumerate(zip(on, off, want)):
        assert_close(b, w, rtol=0, atol=0, what=f"level 0, case {k}")
        assert_close(a, w, rtol=0, atol=0, what=f"passes, case {k}")
    assert on[3][0] == 1e10  # x*x in float64: no int32 overflow


def test_mean_to_sum_structure():
    x = ph((4, 6))
    m = apply("mean", [x], axes=(1,), keepdims=True)
    (out,) = rewrite([m], specialize.rules)
    assert out is gb.mul(apply("sum", [x], axes=(1,), keepdims=True), 1.0 / 6)
    dyn = apply("mean", [ph((None, 6))], axes=(0,), keepdims=False)
    ints = apply("mean", [ph((4,), "int32")], axes=(0,), keepdims=False)
    assert rewrite([dyn, ints], specialize.rules) == [dyn, ints]


def test_mean_to_sum_numbers():
    x, h = ph((5, 7, 3)), ph((2000,), "float16")
    nodes = [apply("mean", [x], axes=(0, 2), keepdims=False),
             apply("mean", [x], axes=(0, 1, 2), keepdims=True),
             apply("mean", [h], axes=(0,), keepdims=False)]
    xs = RNG.normal(size=(5, 7, 3)).astype(np.float32)
    hs = np.full(2000, 100, np.float16)  # the float16 sum would overflow (max 65504)
    on, off = run_levels(nodes, {x: xs, h: hs})
    assert "mean" not in ops(rewrite(nodes, specialize.rules))
    assert_close(on[0], xs.astype(np.float64).mean((0, 2)).astype(np.float32))
    assert_close(on[1], xs.astype(np.float64).mean(keepdims=True).astype(np.float32))
    assert on[2] == np.float16(100) and on[2].dtype == np.float16
    for a, b in zip(on, off):
        assert_close(a, b)


def test_where_with_constant_condition():
    a, b = ph((3,)), ph((3,))
    t = gb.where(gb.const(True), a, b)
    f = gb.where(gb.const(np.uint8(0)), a, b)
    vec = gb.where(gb.const(np.array([True, False, True])), a, b)  # not a scalar: kept
    assert rewrite([t, f, vec], specialize.rules) == [a, b, vec]
    av, bv = np.array([1.0, 2, 3], np.float32), np.array([4.0, 5, 6], np.float32)
    on, off = run_levels([t, f, vec], {a: av, b: bv})
    for got, want in zip(on, [av, bv, [1.0, 5.0, 3.0]]):
        np.testing.assert_array_equal(got, want)
    for x, y in zip(on, off):
        np.testing.assert_array_equal(x, y)


def test_k_level_rewrites_through_k_function(monkeypatch):
    x = K.placeholder((3, 4))
    y = [x ** 2, K.pow(x, 0.5), K.mean(x, axis=1)]
    xs = np.abs(RNG.normal(size=(3, 4))).astype(np.float32)
    f = K.function([x], y)
    names = [n.op.name for k in f.fn.schedule.kernels for n in k.nodes]
    assert "pow" not in names and "mean" not in names
    got = f([xs])
    monkeypatch.setenv("SYMK_OPT", "0")
    base = K.function([x], y)([xs])
    for a, b, w in zip(got, base, [xs ** 2, np.sqrt(xs), xs.mean(1)]):
        assert_close(a, w.astype(np.float32))
        assert_close(b, w.astype(np.float32))


def test_every_specialization_rule_is_tested_here():
    # pow_two/pow_one/pow_half, mean_to_sum and where_const each have a structure and a
    # numbers test above
    # pow_two/pow_one/pow_half, mean_to_sum and where_const each have a structure and a
    # numbers test above, einsum_rows and einsum_sum_rows below
    assert {r.name for r in specialize.rules.rules} == {
        "pow_two", "pow_one", "pow_half", "mean_to_sum", "where_const", "einsum_rows",
        "einsum_sum_rows", "pool_tiles", "max_pool_grad_tiles", "conv_taps"}


# ---------------------------------------------------------------- products


def _einsums(f) -> list[str]:
    return [e.node.attrs["spec"] for e in f.fn.schedule.externs if e.node.op.name == "einsum"]


@pytest.mark.parametrize("batch", [None, 5])
def test_dot_of_a_3d_tensor_and_its_kernel_gradient_are_2d_products(batch):
    """K.dot((B, T, F), (F, N)) and the gradient for its matrix (a sum over B and T) become
    2-D products of reshaped operands (BLAS in the native driver), with numpy's numbers."""
    x = K.placeholder((batch, 7, 4))
    wv = RNG.normal(size=(4, 6)).astype(np.float32)
    w = K.variable(wv)
    y = K.dot(x, w)
    (gw,) = K.gradients(K.sum(K.tanh(y)), [w])
    f = K.function([x], [y, gw])
    assert all(len(s.split("->")[1]) == 2 for s in _einsums(f)) and len(_einsums(f)) == 2
    xs = RNG.normal(size=(5, 7, 4)).astype(np.float32)
    got_y, got_g = f([xs])
    want_y = xs.astype(np.float64) @ wv
    assert_close(got_y, want_y.astype(np.float32))
    want_g = np.einsum("tbf,tbn->fn", xs.astype(np.float64), 1 - np.tanh(want_y) ** 2)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-5)


def test_products_with_two_run_time_leading_axes_stay_as_they_are():
    """Two unknown leading axes: a reshape to one row axis could not be undone statically
    (and two operands' unknown axes could differ and still multiply to the same count)."""
    x = K.placeholder((None, None, 4))
    y = K.placeholder((None, None, 3))
    w = K.variable(RNG.normal(size=(4, 6)).astype(np.float32))
    from symk.graph.tensor import Tensor

    s = Tensor(apply("einsum", [x.node, y.node], spec="abi,abj->ij"))
    f = K.function([x, y], [K.dot(x, w), s])
    specs = _einsums(f)
    assert len(specs) == 2 and all(len(s.split(",")[0]) == 3 for s in specs)
    xs = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    ys = RNG.normal(size=(2, 3, 3)).astype(np.float32)
    got_d, got_s = f([xs, ys])
    assert_close(got_d, (xs.astype(np.float64) @ K.get_value(w)).astype(np.float32))
    np.testing.assert_allclose(got_s, np.einsum("abi,abj->ij", xs, ys), rtol=1e-5, atol=1e-6)


def test_sum_rows_needs_the_same_leading_axes():
    """Leading axes (2, 3) and (3, 2) have the same count but are no shared sum: the rule
    must not fire (the type rule rejects the einsum anyway)."""
    a = ph((2, 3, 4))
    c = ph((3, 2, 5))
    with pytest.raises(ValueError):
        apply("einsum", [a, c], spec="abi,abj->ij")


# ---------------------------------------------------------------- pooling


def _pool_graph(shape, pool, mode, batch_none=True):
    x = K.placeholder(((None,) if batch_none else shape[:1]) + shape[1:])
    out_shape = (shape[0],) + tuple(d // p for d, p in zip(shape[1:-1], pool)) + shape[-1:]
    g = K.placeholder(((None,) if batch_none else out_shape[:1]) + out_shape[1:])
    pool_fn = K.pool2d if len(pool) == 2 else K.pool3d
    y = pool_fn(x, pool, strides=pool, pool_mode=mode)
    (dx,) = K.gradients(K.sum(y * g), [x])
    return x, g, y, dx, out_shape


@pytest.mark.parametrize("shape,pool", [((3, 6, 4, 5), (2, 2)), ((2, 6, 6, 3), (3, 2)),
                                        ((2, 4, 6, 2, 3), (2, 3, 1))])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooling_over_tiling_windows_is_a_reduction_and_kernels(shape, pool, mode):
    """Windows that tile the input (strides = window, dims divisible): the pooling is a
    reduction over the window axes of a reshaped view and max pooling's gradient two
    kernels, with the numbers of the ops' numpy definitions (ties and nan included)."""
    from symk.graph.op import get_op

    x, g, y, dx, out_shape = _pool_graph(shape, pool, mode)
    f = K.function([x, g], [y, dx])
    externs = [e.node.op.name for e in f.fn.schedule.externs]
    assert not {"pool", "max_pool_grad"} & set(externs)
    xs = RNG.normal(size=shape).astype(np.float32)
    flat = xs.reshape(-1)
    tie = np.arange(0, flat.size - 1, 7)
    flat[tie] = flat[tie + 1]  # ties inside windows
    flat[5] = np.nan
    gs = RNG.normal(size=out_shape).astype(np.float32)
    got_y, got_dx = f([xs, gs])
    attrs = dict(pool_size=pool, strides=pool, padding="valid")
    want_y = get_op("pool").ref(xs, mode=mode, **attrs)
    # (a mean accumulates in float64: it may round differently from the sum of slices)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-7, equal_nan=True)
    if mode == "max":
        want_dx = get_op("max_pool_grad").ref(xs, gs, **attrs)
    else:
        want_dx = get_op("avg_pool_grad").ref(gs, xs, **attrs)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-6)


def test_pooling_with_overlapping_or_padded_windows_keeps_the_ops():
    x, g, y, dx, _ = _pool_graph((2, 5, 5, 3), (2, 2), "max")  # 5 is not divisible by 2
    f = K.function([x, g], [y, dx])
    assert {"pool", "max_pool_grad"} <= {e.node.op.name for e in f.fn.schedule.externs}


# ---------------------------------------------------------------- convolutions


@pytest.mark.parametrize("xshape,k,f,strides,dilation", [
    ((3, 9, 8, 1), (3, 3), 5, (1, 1), (1, 1)),
    ((2, 9, 9, 3), (3, 3), 4, (2, 1), (1, 2)),
    ((2, 12, 2), (5,), 3, (2,), (1,)),
])
def test_convolution_with_few_channels_and_taps_is_one_kernel(xshape, k, f, strides, dilation):
    """conv over <= 27 channel x tap products (valid padding): an elementwise sum of shifted
    input slices times kernel rows, fused with its bias and activation into one kernel."""
    from tests.backend.test_conv import naive_conv

    nsp = len(k)
    x = K.placeholder((None,) + xshape[1:])
    kv = RNG.normal(size=(*k, xshape[-1], f)).astype(np.float32)
    bias = RNG.normal(size=f).astype(np.float32)
    conv = K.conv2d if nsp == 2 else K.conv1d
    kw = dict(strides=strides, padding="valid", dilation_rate=dilation)
    if nsp == 1:
        kw = dict(strides=strides[0], padding="valid", dilation_rate=dilation[0])
    y = K.relu(K.bias_add(conv(x, K.variable(kv), **kw), K.variable(bias)))
    fn = K.function([x], [y])
    assert "conv" not in {e.node.op.name for e in fn.fn.schedule.externs}
    assert len(fn.fn.schedule.kernels) == 1
    xs = RNG.normal(size=xshape).astype(np.float32)
    want = np.maximum(naive_conv(xs, kv, strides, "valid", "channels_last", dilation) + bias,
                      0)
    np.testing.assert_allclose(fn([xs])[0], want, rtol=1e-5, atol=1e-5)


def test_convolution_with_padding_or_many_channels_keeps_the_op():
    x = K.placeholder((None, 8, 8, 4))
    for kv, pad in ((np.ones((3, 3, 4, 2), np.float32), "valid"),
                    (np.ones((3, 3, 1, 2), np.float32), "same")):
        xx = x if kv.shape[2] == 4 else K.placeholder((None, 8, 8, 1))
        fn = K.function([xx], [K.conv2d(xx, K.constant(kv), padding=pad)])
        assert "conv" in {e.node.op.name for e in fn.fn.schedule.externs}
