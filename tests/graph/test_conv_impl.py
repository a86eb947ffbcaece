"""The input-gradient paths of ``symk.graph.ops.conv_impl`` (per-tap GEMMs, the flipped
forward convolution, col2im) against the adjoint identity of the naive convolution:
``<conv(x, w), g> == <x, conv_input_grad(g, w)>`` for every x, i.e. elementwise equality
with the naive convolution's transposed matrix applied to ``g``."""

from __future__ import annotations

import numpy as np
import pytest

from symk.graph.ops import conv_impl as ci
from tests.backend.test_conv import naive_conv

CASES = [  # (input shape, kernel spatial, filters, strides, dilation, padding)
    ((2, 7, 3), (3,), 4, (1,), (1,), "valid"),
    ((2, 7, 6, 3), (3, 3), 5, (1, 1), (1, 1), "same"),
    ((2, 8, 7, 2), (2, 3), 3, (1, 1), (2, 1), "same"),
    ((1, 9, 8, 3), (3, 2), 4, (2, 1), (1, 1), "valid"),
    ((1, 5, 4, 6, 2), (3, 1, 2), 3, (1, 1, 1), (1, 1, 1), "same"),
]


def _dense_transpose(xshape, w, strides, dilation, padding):
    """The matrix of the naive convolution, column by column (a unit input each)."""
    cols = []
    for i in range(int(np.prod(xshape))):
        e = np.zeros(int(np.prod(xshape)))
        e[i] = 1.0
        cols.append(naive_conv(e.reshape(xshape), w, strides, padding, "channels_last",
                               dilation).ravel())
    return np.stack(cols, 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[1])}d-s{c[3]}-d{c[4]}-{c[5]}")
def test_input_gradient_algorithms(case, monkeypatch):
    xshape, k, f, strides, dilation, padding = case
    rng = np.random.default_rng(len(xshape) + f)
    w = rng.standard_normal((*k, xshape[-1], f))
    mat = _dense_transpose(xshape, w, strides, dilation, padding)
    pads = [None] * len(k) if padding == "same" else [(0, 0)] * len(k)
    pads_, out = ci.geometry(xshape[1:-1], k, strides, dilation, pads)
    g = rng.standard_normal((xshape[0], *out, f))
    algos = ci.input_grad_algos(k, xshape[-1], f, strides, dilation, pads_, 1)
    assert "scatter" in algos and "taps" in algos
    assert ("flipped" in algos) == (all(s == 1 for s in strides))
    want = mat.T @ g.ravel()
    for algo in algos:
        for block in (None, 40):  # blocks of a few rows: images split across blocks
            if block:
                monkeypatch.setattr(ci, "TAP_BLOCK_ELEMENTS", block)
                monkeypatch.setattr(ci, "SCATTER_BLOCK_ELEMENTS", block)
            got = ci.conv_input_grad(g, w, xshape[1:-1], strides, dilation, pads, 1,
                                     algo=algo)
            np.testing.assert_allclose(got.ravel(), want, rtol=1e-10, atol=1e-10,
                                       err_msg=algo)
            dst = np.full(xshape, np.nan)
            ci.conv_input_grad(g, w, xshape[1:-1], strides, dilation, pads, 1, out=dst,
                               algo=algo)
            np.testing.assert_allclose(dst.ravel(), want, rtol=1e-10, atol=1e-10,
                                       err_msg=algo)
    with pytest.raises(ValueError, match="depthwise"):
        ci.conv_input_grad(g, w, xshape[1:-1], strides, dilation, pads, 1, algo="depthwise")
