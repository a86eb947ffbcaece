"""Finite-difference gradient checks of the convolution ops (``OP_CASES``: conv and its two
gradient ops, which are differentiable again) and of the K convolution functions."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.node import apply
from tests.gradcheck import case, check_grad, op_case_params
from tests.graph.test_gradients_ops import node_fn, op

GEO_2D = {"strides": (2, 1), "dilation": (1, 2), "pads": ((1, 0), None), "groups": 1}
GEO_GRP = {"strides": (1,), "dilation": (1,), "pads": (None,), "groups": 2}
GEO_DW = {"strides": (2, 2), "dilation": (1, 1), "pads": ((0, 1), (1, 1)), "groups": 3}


def _input_grad(in_spatial, **geo):
    return op("conv_input_grad", in_spatial=in_spatial, **geo)


def _input_grad_dynamic(**geo):
    """conv_input_grad with the output size taken from a third (shape) input at run time."""
    def build(g, w, like):
        return apply("conv_input_grad", [g, w, gb.shape_of(like)],
                     in_spatial=(None,) * (like.ndim - 2), **geo)
    return node_fn(build)


OP_CASES: dict[str, list[tuple]] = {
    "conv": [
        (op("conv", **GEO_2D), [(2, 5, 4, 2), (2, 2, 2, 3)], {}),
        (op("conv", **GEO_GRP), [(1, 5, 4), (3, 2, 4)], {}),
        (op("conv", **GEO_DW), [(1, 4, 5, 3), (2, 2, 1, 6)], {}),
        (op("conv", strides=(1, 2, 1), dilation=(1, 1, 1), pads=((0, 0),) * 3, groups=1),
         [(1, 3, 4, 3, 2), (2, 2, 2, 2, 2)], {}),
    ],
    "conv_input_grad": [
        (_input_grad((5, 4), **GEO_2D), [(2, 3, 4, 3), (2, 2, 2, 3)], {}),
        (_input_grad((4, 5), **GEO_DW), [(1, 2, 3, 6), (2, 2, 1, 6)], {}),
        (_input_grad_dynamic(**GEO_GRP), [(1, 5, 4), (3, 2, 4),
                                         np.zeros((1, 5, 4))], {"dynamic": [True, False, True]}),
    ],
    "conv_kernel_grad": [
        (op("conv_kernel_grad", kernel_shape=(2, 2, 2, 3), **GEO_2D), [(2, 5, 4, 2), (2, 3, 4, 3)],
         {}),
        (op("conv_kernel_grad", kernel_shape=(3, 2, 4), **GEO_GRP), [(1, 5, 4), (1, 5, 4)], {}),
        (op("conv_kernel_grad", kernel_shape=(2, 2, 1, 6), **GEO_DW), [(1, 4, 5, 3), (1, 2, 3, 6)],
         {}),
    ],
}


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient(fn, shapes, opts):
    check_grad(fn, shapes, **opts)


def _transpose2d(x, k):
    return K.conv2d_transpose(x, k, (K.shape(x)[0], 7, 5, 2), strides=(2, 2), padding="same")


K_CASES = [
    *case("conv1d-causal", "conv1d", [(2, 6, 2), (3, 2, 2)], padding="causal",
          dilation_rate=2, dynamic_ok=[True, False]),
    *case("conv2d-cf", "conv2d", [(1, 2, 5, 4), (3, 2, 2, 3)], strides=(2, 1),
          padding="same", data_format="channels_first", dynamic_ok=[True, False]),
    *case("conv3d", "conv3d", [(1, 3, 4, 3, 2), (2, 2, 2, 2, 2)], padding="same",
          dynamic_ok=[True, False]),
    *case("depthwise", "depthwise_conv2d", [(1, 4, 5, 2), (2, 3, 2, 2)], dilation_rate=(1, 2),
          dynamic_ok=[True, False]),
    *case("separable2d", "separable_conv2d", [(1, 4, 4, 2), (2, 2, 2, 2), (1, 1, 4, 3)],
          strides=(2, 2), padding="same", dynamic_ok=[True, False, False]),
    *case("separable1d-cf", "separable_conv1d", [(2, 2, 6), (3, 2, 1), (1, 2, 2)],
          data_format="channels_first", dynamic_ok=[True, False, False]),
    *case("transpose2d", _transpose2d, [(2, 4, 3, 3), (3, 3, 2, 3)], dynamic_ok=[True, False]),
    *case("transpose3d", lambda x, k: K.conv3d_transpose(x, k, (1, 4, 3, 4, 2), (1, 1, 2)),
          [(1, 2, 2, 2, 2), (3, 2, 2, 2, 2)], dynamic_ok=False),
    # strides and dilations in both data formats, odd sizes
    *case("conv1d-cf-strided-dilated", "conv1d", [(2, 2, 9), (3, 2, 3)], strides=2,
          dilation_rate=2, padding="same", data_format="channels_first",
          dynamic_ok=[True, False]),
    *case("conv2d-dilated", "conv2d", [(1, 5, 6, 2), (2, 3, 2, 2)], dilation_rate=(2, 1),
          padding="same", dynamic_ok=[True, False]),
    *case("conv2d-strided-valid", "conv2d", [(2, 7, 5, 1), (3, 2, 1, 2)], strides=(3, 2),
          dynamic_ok=[True, False]),
    *case("conv3d-cf", "conv3d", [(1, 2, 3, 5, 3), (2, 2, 2, 2, 2)], strides=(1, 2, 1),
          padding="same", data_format="channels_first", dynamic_ok=[True, False]),
    *case("depthwise-cf", "depthwise_conv2d", [(1, 2, 5, 4), (3, 2, 2, 2)], strides=(2, 1),
          padding="same", data_format="channels_first", dynamic_ok=[True, False]),
    *case("separable1d-dilated", "separable_conv1d", [(1, 7, 2), (2, 2, 2), (1, 4, 3)],
          dilation_rate=2, padding="same", dynamic_ok=[True, False, False]),
    *case("transpose2d-cf-dilated",
          lambda x, k: K.conv2d_transpose(x, k, (1, 2, 5, 6), dilation_rate=(2, 1),
                                          data_format="channels_first"),
          [(1, 3, 1, 4), (3, 3, 2, 3)], dynamic_ok=False),
    *case("transpose3d-cf",
          lambda x, k: K.conv3d_transpose(x, k, (1, 2, 3, 4, 5), (1, 2, 2), "same",
                                          "channels_first"),
          [(1, 2, 3, 2, 3), (2, 3, 2, 2, 2)], dynamic_ok=False),
    *case("local1d", lambda x, k: K.local_conv1d(x, k, (2,), (2,)), [(2, 6, 2), (3, 4, 2)],
          dynamic_ok=False),
    *case("local2d-cf", lambda x, k: K.local_conv2d(x, k, (2, 2), (1, 2), (2, 2),
                                                    data_format="channels_first"),
          [(1, 2, 3, 5), (4, 8, 2)], dynamic_ok=False),
]


@pytest.mark.parametrize("fn,inputs,opts", K_CASES)
def test_k_gradient(fn, inputs, opts):
    check_grad(fn, inputs, **opts)
