"""K.gradients of contractions (dot, batch_dot), shape and data-movement ops, against finite
differences; second-order checks exercise the gradient helper ops' own rules."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.tensor import Tensor
from tests.gradcheck import case, check_grad, grad_values

IDX = np.array([0, 2, 2, 4, 0, -1], np.int32)

CONTRACTIONS = [
    *case("dot-2d", "dot", [(2, 3), (3, 4)]),
    *case("dot-1d-2d", "dot", [(3,), (3, 4)]),
    *case("dot-2d-1d", "dot", [(3, 4), (4,)]),
    *case("dot-3d-2d", "dot", [(2, 3, 4), (4, 5)]),
    *case("dot-2d-3d", "dot", [(2, 3), (4, 3, 5)]),
    *case("dot-3d-3d", "dot", [(2, 3, 4), (2, 4, 5)]),
    *case("dot-scalar", "dot", [(), (3, 4)]),
    *case("batch_dot-2d", "batch_dot", [(2, 3), (2, 3)]),
    *case("batch_dot-3d", "batch_dot", [(2, 3, 4), (2, 4, 5)]),
    *case("batch_dot-3d-2d-axes11", "batch_dot", [(2, 3, 4), (2, 3)], axes=(1, 1)),
    *case("batch_dot-axes22", "batch_dot", [(2, 3, 4), (2, 5, 4)], axes=(2, 2)),
    *case("batch_dot-axes1", "batch_dot", [(2, 4, 3), (2, 4, 5)], axes=1),
    *case("matmul-operator", lambda x, y: x @ y, [(2, 3, 4), (2, 4, 2)]),
]

SHAPE_OPS = [
    *case("transpose", "transpose", [(2, 3, 4)]),
    *case("permute_dimensions", "permute_dimensions", [(2, 3, 4)], pattern=(1, 2, 0)),
    *case("reshape", "reshape", [(2, 6)], shape=(3, 4)),
    *case("reshape-minus1", "reshape", [(3, 4)], shape=(-1, 2)),
    *case("reshape-symbolic", lambda x: K.reshape(x, (-1, K.shape(x)[0])), [(3, 4)]),
    *case("flatten", "flatten", [(2, 3, 4)]),
    *case("identity", lambda x: K.identity(x) * x, [(2, 3)]),
    *case("print_tensor", lambda x: K.print_tensor(x, "gradcheck: ") * 2.0, [(2,)]),
    *case("batch_flatten", "batch_flatten", [(2, 3, 4)]),
    *case("expand_dims-0", "expand_dims", [(3, 4)], axis=0),
    *case("expand_dims-last", "expand_dims", [(3, 4)]),
    *case("expand_dims-1", "expand_dims", [(3, 4)], axis=1),
    *case("squeeze", "squeeze", [(3, 1, 4)], axis=1),
    *case("squeeze-last", "squeeze", [(3, 1)], axis=-1),
    *case("gather-repeated", "gather", [(5, 3), IDX]),
    *case("gather-2d-indices", "gather", [(4, 2, 3), np.array([[0, 1], [1, 1], [3, 0]])]),
    *case("getitem-list", lambda x: x[[0, 2, 2]], [(4, 3)]),
    *case("concatenate-last", lambda a, b: K.concatenate([a, b]), [(2, 3), (2, 4)]),
    *case("concatenate-0-three", lambda a, b, c: K.concatenate([a, b, c], axis=0),
          [(1, 3), (2, 3), (3, 3)]),
    *case("concatenate-same-input", lambda a: K.concatenate([a, a * 2.0], axis=1), [(2, 3)]),
    *case("stack-0", lambda a, b: K.stack([a, b]), [(2, 3), (2, 3)]),
    *case("stack-1", lambda a, b, c: K.stack([a, b, c], axis=1), [(2, 3), (2, 3), (2, 3)]),
    *case("slice-1:3", lambda x: x[1:3], [(4, 3)]),
    *case("slice-step", lambda x: x[:, ::2], [(3, 5)]),
    *case("slice-ellipsis-int", lambda x: x[..., -1], [(2, 3, 4)]),
    *case("slice-newaxis", lambda x: x[None, 0], [(3, 4)]),
    *case("slice-reverse", lambda x: x[::-1, 1:], [(4, 3)]),
    *case("slice-neg-step", lambda x: x[3:0:-2], [(5, 2)]),
    *case("slice-int-newaxis", lambda x: x[1, :, None], [(3, 4)]),
    *case("K.slice", lambda x: K.slice(x, (1, 0), (2, -1)), [(4, 3)]),
    *case("K.slice-3d", lambda x: K.slice(x, (0, 1, 1), (2, 2, 2)), [(2, 3, 4)]),
    *case("reverse-0", "reverse", [(3, 4)], axes=0),
    *case("reverse-both", "reverse", [(3, 4)], axes=[0, 1]),
    *case("reverse-last", "reverse", [(2, 3, 4)], axes=-1),
    *case("tile", "tile", [(2, 3)], n=[2, 3]),
    *case("tile-int", "tile", [(3,)], n=2),
    *case("repeat_elements-1", "repeat_elements", [(2, 3)], rep=2, axis=1),
    *case("repeat_elements-0", "repeat_elements", [(2, 3)], rep=3, axis=0),
    *case("repeat", "repeat", [(2, 3)], n=3),
    *case("temporal_padding", "temporal_padding", [(2, 3, 4)], padding=(1, 2)),
    *case("spatial_2d_padding", "spatial_2d_padding", [(2, 3, 4, 2)],
          padding=((1, 0), (2, 1))),
    *case("spatial_2d_padding-cf", "spatial_2d_padding", [(2, 2, 3, 4)],
          padding=((1, 0), (2, 1)), data_format="channels_first"),
    *case("spatial_3d_padding", "spatial_3d_padding", [(1, 2, 2, 2, 1)],
          padding=((1, 0), (0, 1), (1, 1))),
]


@pytest.mark.parametrize("fn,inputs,opts", CONTRACTIONS + SHAPE_OPS)
def test_gradient_matches_finite_differences(fn, inputs, opts):
    check_grad(fn, inputs, **opts)


def test_gather_repeated_indices_accumulate():
    ref = np.arange(6.0).reshape(3, 2)
    (g,) = grad_values(lambda r, i: K.gather(r, i), [ref, np.array([2, 0, 2, 2])])
    np.testing.assert_array_equal(g, [[1, 1], [0, 0], [3, 3]])


def _einsum(spec):
    def f(*xs):
        return Tensor(gb.einsum(spec, [x.node for x in xs]))
    f.__name__ = f"einsum[{spec}]"
    return f


@pytest.mark.parametrize("spec,shapes", [
    ("ab,c->c", [(2, 3), (4,)]),           # a letter summed in one operand only
    ("abc,cd->bd", [(2, 3, 4), (4, 5)]),   # batch-like letter summed away
    ("ab,ab->ab", [(2, 3), (2, 3)]),
    ("ab,bc->", [(2, 3), (3, 2)]),
])
def test_einsum_rule(spec, shapes):
    check_grad(_einsum(spec), shapes)


# ---------------------------------------------------------------- second order


def _second(inner):
    """x -> d/dx sum(inner(x)**2 * c): differentiating it exercises the gradient ops' rules."""
    def f(x):
        c = K.constant(np.linspace(0.5, 1.5, int(np.prod(K.int_shape(inner(x))))).reshape(
            K.int_shape(inner(x))), dtype="float64")
        return K.gradients(K.sum(K.square(inner(x)) * c), [x])[0]
    f.__name__ = f"second[{getattr(inner, '__name__', 'fn')}]"
    return f


@pytest.mark.parametrize("inner,shape", [
    (lambda x: K.tile(x, [2, 3]), (2, 3)),
    (lambda x: K.gather(x, IDX), (5, 2)),
    (lambda x: K.concatenate([x, K.exp(x)], axis=0), (2, 3)),
    (lambda x: x[1:, ::2], (3, 4)),
    (lambda x: K.repeat_elements(x, 2, axis=0), (2, 3)),
    (lambda x: K.temporal_padding(x, (1, 1)), (1, 2, 2)),
    (lambda x: K.sum(K.exp(x), axis=0), (3, 2)),
    (lambda x: K.softmax(x), (2, 3)),
    (lambda x: K.max(x, axis=1), (2, 3)),
    (lambda x: K.reshape(K.sin(x), (3, 2)), (2, 3)),
    (lambda x: K.dot(x, K.transpose(x)), (2, 3)),
    (lambda x: K.logsumexp(x, axis=-1), (2, 3)),
], ids=["tile", "gather", "concat", "slice", "repeat", "pad", "sum", "softmax", "max",
        "reshape", "dot", "logsumexp"])
def test_second_order(inner, shape):
    check_grad(_second(inner), [shape], rtol=1e-5, atol=1e-7)
