"""K.gradients of elementwise ops, broadcasting and reductions against finite differences,
kink conventions with exact values, and the semantic rules of ``K.gradients``."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import SymkError
from tests.gradcheck import case, check_grad, devices, floatx64, grad_values

_rng = np.random.default_rng(1)
POS = {"low": 0.2, "high": 2.0}
# x in [1.0, 1.3], y in [0.7, 0.9]: x / y in (1.1, 1.9), away from mod's jumps
MOD_X, MOD_Y = _rng.uniform(1.0, 1.3, (3, 4)), _rng.uniform(0.7, 0.9, (3, 4))

ELEMENTWISE = [
    *case("abs", "abs", [(3, 4)], kinks=(0,)),
    *case("sqrt", "sqrt", [(3, 4)], **POS),
    *case("square", "square", [(3, 4)]),
    *case("exp", "exp", [(3, 4)]),
    *case("log", "log", [(3, 4)], **POS),
    *case("sin", "sin", [(3, 4)], low=-3, high=3),
    *case("cos", "cos", [(3, 4)], low=-3, high=3),
    *case("tanh", "tanh", [(3, 4)], low=-3, high=3),
    *case("sigmoid", "sigmoid", [(3, 4)], low=-5, high=5),
    *case("hard_sigmoid", "hard_sigmoid", [(3, 4)], low=-3, high=3, kinks=(-2.5, 2.5)),
    *case("softplus", "softplus", [(3, 4)], low=-5, high=5),
    *case("softsign", "softsign", [(3, 4)], low=-3, high=3, kinks=(0,)),
    *case("relu", "relu", [(3, 4)], kinks=(0,)),
    *case("relu-alpha", "relu", [(3, 4)], kinks=(0,), alpha=0.1),
    *case("relu-max", "relu", [(3, 4)], kinks=(0, 0.5), max_value=0.5),
    *case("relu-threshold", "relu", [(3, 4)], kinks=(0.3,), threshold=0.3),
    *case("relu-neg-threshold-alpha", "relu", [(3, 4)], kinks=(-0.3,), threshold=-0.3,
          alpha=0.2),
    *case("relu-all", "relu", [(4, 5)], kinks=(0, 0.2, 0.6), alpha=0.1, max_value=0.6,
          threshold=0.2),
    *case("elu", "elu", [(3, 4)], kinks=(0,)),
    *case("elu-alpha", "elu", [(3, 4)], kinks=(0,), alpha=0.5),
    *case("pow-int", lambda x: K.pow(x, 3), [(3, 4)]),
    *case("pow-float", lambda x: K.pow(x, 2.5), [(3, 4)], **POS),
    *case("pow-both", "pow", [(3, 4), (3, 4)], **POS),
    *case("rpow", lambda x: 2.0 ** x, [(3, 4)]),
    *case("clip", lambda x: K.clip(x, -0.5, 0.5), [(3, 4)], kinks=(-0.5, 0.5)),
    *case("clip-none", lambda x: K.clip(x, None, 0.5), [(3, 4)], kinks=(0.5,)),
    *case("clip-tensor-bounds", "clip",
          [(3, 4), np.full((4,), -0.3), np.array([0.4, 0.4, 0.8, 0.1])],
          kinks=(-0.3, 0.4, 0.8, 0.1)),
    *case("maximum", "maximum", [(3, 4), (3, 4)]),
    *case("minimum", "minimum", [(3, 4), (3, 4)]),
    *case("maximum-scalar", lambda x: K.maximum(x, 0.2), [(3, 4)], kinks=(0.2,)),
    *case("minimum-scalar", lambda x: K.minimum(0.2, x), [(3, 4)], kinks=(0.2,)),
    *case("add", lambda x, y: x + y, [(3, 4), (3, 4)]),
    *case("sub", lambda x, y: x - y, [(3, 4), (3, 4)]),
    *case("mul", lambda x, y: x * y, [(3, 4), (3, 4)]),
    *case("div", lambda x, y: x / y, [(3, 4), (3, 4)], **POS),
    *case("rsub-rdiv", lambda x: (2.0 - x) + 3.0 / x - x * 0.5, [(3, 4)], **POS),
    *case("neg", lambda x: -x, [(3, 4)]),
    *case("mod", lambda x, y: x % y, [MOD_X, MOD_Y]),
    *case("switch-elementwise", "switch",
          [_rng.uniform(size=(3, 4)) > 0.5, (3, 4), (3, 4)]),
    *case("switch-scalar-cond", "switch", [np.array(True), (3, 4), (3, 4)]),
    *case("switch-rank1-cond", "switch", [np.array([True, False, True]), (3, 4), (3, 4)]),
    *case("switch-computed-cond", lambda x, y: K.switch(K.greater(x, 0), x * y, y),
          [(3, 4), (3, 4)], kinks=(0,)),
    *case("cast-float64", lambda x: K.cast(x, "float64") * 2, [(3, 4)]),
]

BROADCAST = [
    *case("add-3x1-1x4", lambda x, y: x + y, [(3, 1), (1, 4)]),
    *case("mul-4-3x4", lambda x, y: x * y, [(4,), (3, 4)]),
    *case("sub-scalar-3x4", lambda x, y: x - y, [(), (3, 4)]),
    *case("div-3x4-3x1", lambda x, y: x / y, [(3, 4), (3, 1)], **POS),
    *case("pow-2x1x3-3", "pow", [(2, 1, 3), (3,)], **POS),
    *case("maximum-3x1-1x4", "maximum", [(3, 1), (1, 4)]),
    *case("minimum-4-2x3x4", "minimum", [(4,), (2, 3, 4)]),
    *case("mul-1-3x4", lambda x, y: x * y, [(1,), (3, 4)]),
    *case("add-1x1-3x4", lambda x, y: x + y, [(1, 1), (3, 4)]),
    *case("mul-scalar-scalar", lambda x, y: x * y, [(), ()]),
    *case("switch-bcast", "switch", [_rng.uniform(size=(3, 1)) > 0.5, (3, 4), (4,)]),
    *case("clip-bcast", "clip", [(2, 3), np.full((2, 1), -0.2), np.full((3,), 0.3)],
          kinks=(-0.2, 0.3)),
]

REDUCTIONS = []
for _name, _opts in [("sum", {}), ("prod", {"low": 0.5, "high": 1.5}), ("mean", {}),
                     ("var", {}), ("std", {}), ("max", {}), ("min", {}), ("logsumexp", {})]:
    for _axis, _keep in [(None, False), (None, True), (0, False), (-1, True), ([0, 2], False),
                         ([1, 2], True)]:
        REDUCTIONS += case(f"{_name}-axis{_axis}-keep{int(_keep)}", _name, [(2, 3, 4)],
                           axis=_axis, keepdims=_keep, **_opts)
for _name, _opts in [("cumsum", {}), ("cumprod", {"low": 0.5, "high": 1.5})]:
    for _axis in (0, 1, -1):
        REDUCTIONS += case(f"{_name}-axis{_axis}", _name, [(3, 4)], axis=_axis, **_opts)
REDUCTIONS += case("cumprod-signs", "cumprod", [np.array([0.7, -1.2, 0.9, -0.6])])
REDUCTIONS += case("sum-1d", "sum", [(5,)])
REDUCTIONS += case("mean-scalar-axis", "mean", [(4,)], axis=0)


@pytest.mark.parametrize("fn,inputs,opts", ELEMENTWISE + BROADCAST + REDUCTIONS)
def test_gradient_matches_finite_differences(fn, inputs, opts):
    check_grad(fn, inputs, **opts)


def test_variables_as_inputs():
    check_grad(lambda x, y: K.tanh(x) * y, [(3, 1), (1, 4)], variables=True)
    check_grad(lambda x, y: K.sum(x * y, axis=0), [(3, 4), (3, 4)], variables=True)


# ---------------------------------------------------------------- kinks: exact conventions


def _g(fn, *values, **kw):
    return grad_values(fn, [np.asarray(v, np.float64) for v in values], **kw)


def test_relu_at_zero_has_zero_gradient():
    x = [-1.0, 0.0, 2.0]
    np.testing.assert_array_equal(_g(K.relu, x)[0], [0, 0, 1])
    np.testing.assert_array_equal(_g(lambda t: K.relu(t, alpha=0.1), x)[0], [0.1, 0, 1])
    np.testing.assert_array_equal(_g(lambda t: K.relu(t, threshold=1.0), [0.5, 1.0, 1.5])[0],
                                  [0, 0, 1])
    # max_value: the upper kink gets 0 as well (relu6 convention)
    np.testing.assert_array_equal(_g(lambda t: K.relu(t, max_value=2.0),
                                     [0.0, 1.0, 2.0, 3.0])[0], [0, 1, 0, 0])


def test_abs_and_elu_at_zero():
    np.testing.assert_array_equal(_g(K.abs, [-2.0, 0.0, 3.0])[0], [-1, 0, 1])
    # elu at 0 takes the left branch: alpha * exp(0)
    np.testing.assert_allclose(_g(lambda t: K.elu(t, 0.5), [-1.0, 0.0, 1.0])[0],
                               [0.5 * np.exp(-1), 0.5, 1])


def test_maximum_minimum_ties_go_to_the_first_argument():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 5.0, 3.0])
    gx, gy = _g(K.maximum, x, y)
    np.testing.assert_array_equal(gx, [1, 0, 1])
    np.testing.assert_array_equal(gy, [0, 1, 0])
    gx, gy = _g(K.minimum, x, y)
    np.testing.assert_array_equal(gx, [1, 1, 1])
    np.testing.assert_array_equal(gy, [0, 0, 0])


def test_clip_boundaries_pass_the_gradient():
    x = [-1.0, -0.5, 0.0, 0.5, 1.0]
    np.testing.assert_array_equal(_g(lambda t: K.clip(t, -0.5, 0.5), x)[0], [0, 1, 1, 1, 0])


def test_max_min_ties_share_the_gradient():
    np.testing.assert_allclose(_g(K.max, [1.0, 3.0, 3.0])[0], [0, 0.5, 0.5])
    np.testing.assert_allclose(_g(lambda t: K.min(t, axis=1), [[2.0, 2.0, 4.0]])[0],
                               [[0.5, 0.5, 0]])


def test_hard_sigmoid_flat_outside():
    # Keras defines it as clip(0.2x + 0.5, 0, 1): the boundaries pass the gradient
    np.testing.assert_allclose(_g(K.hard_sigmoid, [-3.0, -2.5, 0.0, 2.5, 3.0])[0],
                               [0, 0.2, 0.2, 0.2, 0])


def test_prod_with_zeros():
    np.testing.assert_allclose(_g(K.prod, [2.0, 0.0, 3.0])[0], [0, 6, 0])
    np.testing.assert_allclose(_g(K.prod, [2.0, 0.0, 0.0])[0], [0, 0, 0])
    np.testing.assert_allclose(_g(lambda t: K.prod(t, axis=1), [[2.0, 0.0, 3.0],
                                                                [1.0, 2.0, 4.0]])[0],
                               [[0, 6, 0], [8, 4, 2]])


def test_prod_with_zeros_dynamic_shape_keepdims():
    with floatx64():
        x = K.placeholder((None, None))
        (g,) = K.gradients(K.prod(x, axis=0, keepdims=True), [x])
        xv = np.array([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0], [3.0, 7.0, 4.0]])
        out = _run([x], [g], [xv])[0]
    np.testing.assert_allclose(out, [[0, 35, 0], [6, 0, 0], [0, 0, 0]])


def test_prod_second_order():
    check_grad(lambda x: K.gradients(K.prod(x, axis=1), [x])[0], [(2, 3)], low=0.5, high=1.5,
               rtol=1e-5)


def test_pow_exponent_gradient_on_nonpositive_base_is_zero():
    gx, ga = _g(K.pow, [0.0, -2.0], [2.0, 2.0])
    np.testing.assert_allclose(gx, [0, -4])
    np.testing.assert_allclose(ga, [0, 0])


def test_cast_passes_float_gradients_and_blocks_integer_ones():
    x = np.array([[0.5, 1.5], [2.5, -1.0]])
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    (g,) = _g(lambda t: K.cast(K.cast(t, "float32"), "float64"), x, weights=w)
    np.testing.assert_array_equal(g, w)
    assert g.dtype == np.float64
    (g,) = _g(lambda t: K.cast(K.cast(t, "int32"), "float64") + t, x)
    np.testing.assert_array_equal(g, np.ones_like(x))


def test_nondifferentiable_rounding_ops_give_zero():
    x = [0.3, 1.7, -2.2]
    for f in (K.round, K.sign):
        (g,) = _g(lambda t, f=f: f(t) * t, x)
        np.testing.assert_allclose(g, np.round(x) if f is K.round else np.sign(x))


# ---------------------------------------------------------------- semantics


def _run(inputs, outputs, values):
    return K.function(inputs, outputs, device=devices()[0])(values)


def test_non_scalar_loss_is_summed():
    with floatx64():
        x = K.placeholder((3, 2))
        y = K.placeholder((3, 2))
        gx, gy = K.gradients(x * y, [x, y])
        xv, yv = np.arange(6.0).reshape(3, 2), np.arange(6.0).reshape(3, 2) + 1
        a, b = _run([x, y], [gx, gy], [xv, yv])
    np.testing.assert_array_equal(a, yv)
    np.testing.assert_array_equal(b, xv)


def test_unconnected_inputs_get_zeros_of_their_shape():
    with floatx64():
        x = K.placeholder((None, 3))
        v = K.variable(np.ones((2, 5)))
        u = K.placeholder((None, None))
        loss = K.sum(K.square(x))
        gx, gv, gu = K.gradients(loss, [x, v, u])
        xv = np.arange(6.0).reshape(2, 3)
        a, b, c = _run([x, u], [gx, gv, gu], [xv, np.ones((4, 7))])
    np.testing.assert_array_equal(a, 2 * xv)
    np.testing.assert_array_equal(b, np.zeros((2, 5)))
    np.testing.assert_array_equal(c, np.zeros((4, 7)))


def test_single_variable_returns_a_tensor():
    with floatx64():
        x = K.variable(np.array([1.0, 2.0]))
        g = K.gradients(K.sum(x * x), x)
        assert not isinstance(g, list)
        np.testing.assert_array_equal(_run([], [g], [])[0], [2.0, 4.0])


def test_integer_paths_carry_no_gradient():
    with floatx64():
        x = K.placeholder((2, 3))
        idx = K.cast(K.argmax(x, axis=1), "float64")
        rounded = K.cast(K.cast(x * 10, "int32"), "float64")
        loss = K.sum(idx) + K.sum(rounded) + K.sum(K.cast(K.greater(x, 0), "float64")) \
            + K.sum(x)
        (g,) = K.gradients(loss, [x])
        xv = np.array([[0.1, -0.5, 0.3], [1.0, 2.0, -3.0]])
        np.testing.assert_array_equal(_run([x], [g], [xv])[0], np.ones((2, 3)))


def test_gradient_wrt_integer_input_is_zero():
    with floatx64():
        x = K.placeholder((3,))
        i = K.placeholder((3,), dtype="int32")
        (gi,) = K.gradients(K.sum(x * K.cast(i, "float64")), [i])
        out = _run([x, i], [gi], [np.ones(3), np.array([1, 2, 3])])[0]
    np.testing.assert_array_equal(out, np.zeros(3))


def test_integer_loss_is_rejected():
    x = K.placeholder((3,), dtype="int32")
    with pytest.raises(SymkError):
        K.gradients(K.sum(x), [x])


def test_stop_gradient_blocks():
    with floatx64():
        x = K.placeholder((3,))
        y = K.placeholder((3,))
        (g,) = K.gradients(K.sum(K.stop_gradient(x) * x), [x])
        sg = K.stop_gradient([x, y])
        gx, gy = K.gradients(K.sum(sg[0] * sg[1] + y), [x, y])
        xv, yv = np.array([1.0, -2.0, 3.0]), np.array([4.0, 5.0, 6.0])
        a, b, c = _run([x, y], [g, gx, gy], [xv, yv])
    np.testing.assert_array_equal(a, xv)
    np.testing.assert_array_equal(b, np.zeros(3))
    np.testing.assert_array_equal(c, np.ones(3))


def test_shared_subexpressions_accumulate():
    with floatx64():
        x = K.placeholder((None,))
        h = K.exp(x)
        loss = K.sum(h * h + h)  # d/dx = 2 e^{2x} + e^x
        (g,) = K.gradients(loss, [x])
        xv = np.array([0.1, -0.4, 0.7, 1.2])
        np.testing.assert_allclose(_run([x], [g], [xv])[0], 2 * np.exp(2 * xv) + np.exp(xv),
                                   rtol=1e-12)


def test_gradient_of_float32_graph_is_float32():
    x = K.placeholder((2, 3), dtype="float32")
    (g,) = K.gradients(K.sum(K.tanh(x) * 2.0), [x])
    assert g.dtype == "float32"
    xv = np.array([[0.1, 0.2, 0.3], [-1.0, 0.0, 1.0]], np.float32)
    out = _run([x], [g], [xv])[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * (1 - np.tanh(xv.astype(np.float64)) ** 2), rtol=1e-5)


def test_dynamic_batch_fed_with_different_sizes():
    with floatx64():
        x = K.placeholder((None, 3))
        b = K.variable(np.array([0.5, -0.5, 1.0]))
        loss = K.mean(K.square(K.tanh(x + b)))
        gx, gb_ = K.gradients(loss, [x, b])
        fn = K.function([x], [gx, gb_], device=devices()[0])
        for n in (1, 4):
            xv = np.linspace(-1, 1, 3 * n).reshape(n, 3)
            t = np.tanh(xv + b.value)
            d = 2 * t * (1 - t * t) / (3 * n)
            a, c = fn([xv])
            np.testing.assert_allclose(a, d, rtol=1e-12)
            np.testing.assert_allclose(c, d.sum(0), rtol=1e-12)


def test_gradient_with_respect_to_an_intermediate_tensor():
    with floatx64():
        x = K.placeholder((3,))
        h = K.exp(x)
        loss = K.sum(K.square(h) + x)
        gh, gx = K.gradients(loss, [h, x])
        xv = np.array([0.1, -0.3, 0.5])
        a, b = _run([x], [gh, gx], [xv])
    np.testing.assert_allclose(a, 2 * np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(b, 2 * np.exp(2 * xv) + 1, rtol=1e-12)


def test_gradient_through_the_learning_phase_switch():
    with floatx64():
        x = K.placeholder((2, 40))
        y = K.in_train_phase(K.dropout(x, 0.5, seed=5), x * 3.0)
        (g,) = K.gradients(K.sum(y), [x])
        fn = K.function([x, K.learning_phase()], [y, g], device=devices()[0])
        xv = np.ones((2, 40))
        out0, g0 = fn([xv, 0])
        out1, g1 = fn([xv, 1])
    np.testing.assert_array_equal(g0, np.full((2, 40), 3.0))
    np.testing.assert_array_equal(out0, np.full((2, 40), 3.0))
    np.testing.assert_array_equal(g1, out1)  # x = 1: the gradient is the scaled mask
    assert set(np.unique(g1)) == {0.0, 2.0}
