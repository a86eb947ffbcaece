"""Pooling and resizing functions of the Keras backend API: pool2d, pool3d, resize_images,
resize_volumes.

Pooling runs the ``pool`` op in the canonical channels_last layout; channels_first inputs are
transposed in and out.  Resizing by integer factors is built from existing ops:
nearest-neighbour is a repeat along each spatial axis; bilinear follows TensorFlow 1's
``resize_bilinear`` (align_corners=False, half_pixel_centers=False): output ``j = i*f + r``
reads ``x[i] * (1 - r/f) + x[min(i + 1, n - 1)] * r/f`` along each axis, built as a broadcast
against the ``f`` weights ``r / f`` and a reshape that merges (n, f) into n*f, so it is
differentiable and fuses into one elementwise kernel per axis.
"""

from __future__ import annotations

import numpy as np

from symk import config
from symk.backend._config import normalize_data_format
from symk.backend._core import api, as_count, as_counts, keras_shaped
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.ops.pool import PADDINGS, POOL_MODES
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import is_float, shape_str


def _to_last(node: Node, fmt: str) -> Node:
    if fmt == "channels_last":
        return node
    return gb.transpose(node, (0, *range(2, node.ndim), 1))


def _from_last(node: Node, fmt: str) -> Node:
    if fmt == "channels_last":
        return node
    return gb.transpose(node, (0, node.ndim - 1, *range(1, node.ndim - 1)))


def _pool(x, pool_size, strides, padding, data_format, pool_mode, nsp: int) -> Node:
    fmt = normalize_data_format(data_format)
    pool_size = as_counts(pool_size, nsp, "pool_size")
    strides = as_counts(strides, nsp, "strides")
    if padding not in PADDINGS:
        raise ArgumentError(f"Invalid padding: {padding!r} (expected 'same' or 'valid')")
    if pool_mode not in POOL_MODES:
        raise ArgumentError(f"Invalid pool_mode: {pool_mode!r} (expected 'max' or 'avg')")
    xn = to_node(x)
    if xn.ndim != nsp + 2:
        raise ShapeError(f"x must have rank {nsp + 2} (batch, {nsp} spatial dims and channels "
                         f"in {fmt} order), got {shape_str(xn.shape)}")
    y = apply("pool", [_to_last(xn, fmt)], pool_size=pool_size, strides=strides,
              padding=padding, mode=pool_mode)
    return _from_last(y, fmt)


@api
def pool2d(x, pool_size, strides=(1, 1), padding="valid", data_format=None, pool_mode="max"):
    """2-D max or average pooling of a (batch, rows, cols, channels) tensor (or channels
    first); 'avg' with 'same' padding averages over the valid elements only."""
    return Tensor(_pool(x, pool_size, strides, padding, data_format, pool_mode, 2))


@api
def pool3d(x, pool_size, strides=(1, 1, 1), padding="valid", data_format=None,
           pool_mode="max"):
    """3-D max or average pooling of a (batch, d1, d2, d3, channels) tensor (or channels
    first)."""
    return Tensor(_pool(x, pool_size, strides, padding, data_format, pool_mode, 3))


# ---------------------------------------------------------------- resizing


def _spatial_axes(node: Node, fmt: str, nsp: int) -> list[int]:
    if node.ndim != nsp + 2:
        raise ShapeError(f"x must have rank {nsp + 2} (batch, {nsp} spatial dims and channels "
                         f"in {fmt} order), got {shape_str(node.shape)}")
    return list(range(2, nsp + 2)) if fmt == "channels_first" else list(range(1, nsp + 1))


def _nearest(node: Node, axis: int, f: int) -> Node:
    return node if f == 1 else apply("repeat", [node], rep=f, axis=axis)


def _axis_spec(ndim: int, axis: int, start, stop) -> tuple:
    return tuple(("s", start, stop, None) if i == axis else ("s", None, None, None)
                 for i in range(ndim))


def _merge_axes(node: Node, a: int) -> Node:
    """Reshape merging axes a and a+1 of ``node`` (with a runtime shape when needed)."""
    s = list(node.shape)
    merged = None if s[a] is None or s[a + 1] is None else s[a] * s[a + 1]
    target = s[:a] + [merged] + s[a + 2:]
    if target.count(None) <= 1:
        return gb.reshape(node, [-1 if d is None else d for d in target])
    sv = gb.shape_of(node)

    def part(lo, hi):
        return apply("getitem", [sv], spec=(("s", lo, hi, None),))

    pieces = [part(0, a), gb.mul(part(a, a + 1), part(a + 1, a + 2))]
    if a + 2 < node.ndim:
        pieces.append(part(a + 2, None))
    return apply("reshape", [node, gb.concatenate(pieces, 0)], shape=tuple(target))


def _bilinear(node: Node, axis: int, f: int) -> Node:
    if f == 1:
        return node
    nd = node.ndim
    nxt = gb.concatenate([apply("getitem", [node], spec=_axis_spec(nd, axis, 1, None)),
                          apply("getitem", [node], spec=_axis_spec(nd, axis, -1, None))], axis)
    wshape = [1] * (nd + 1)
    wshape[axis + 1] = f
    t = (np.arange(f, dtype=np.float64) / f).reshape(wshape)
    lo, hi = gb.expand_dims(node, axis + 1), gb.expand_dims(nxt, axis + 1)
    # lo*(1-t) + hi*t: every op is over the output domain, so one kernel computes it
    mixed = gb.add(gb.mul(lo, gb.const(1.0 - t, node.dtype)), gb.mul(hi, gb.const(t, node.dtype)))
    return _merge_axes(mixed, axis)


@api
@keras_shaped()
def resize_images(x, height_factor, width_factor, data_format=None, interpolation="nearest"):
    """Upsample the rows and columns of a 4-D tensor by integer factors ('nearest' repeats,
    'bilinear' interpolates like TensorFlow 1's resize_bilinear)."""
    fmt = normalize_data_format(data_format)
    fh, fw = as_count(height_factor, "height_factor", 1), as_count(width_factor, "width_factor", 1)
    if interpolation not in ("nearest", "bilinear"):
        raise ArgumentError(f'interpolation should be one of "nearest" or "bilinear", got '
                            f"{interpolation!r}")
    node = to_node(x)
    rows, cols = _spatial_axes(node, fmt, 2)
    if interpolation == "nearest":
        return Tensor(_nearest(_nearest(node, rows, fh), cols, fw))
    if not is_float(node.dtype):
        node = gb.cast(node, config.floatx())
    return Tensor(_bilinear(_bilinear(node, rows, fh), cols, fw))


@api
def resize_volumes(x, depth_factor, height_factor, width_factor, data_format=None):
    """Nearest-neighbour upsampling of the three spatial dims of a 5-D tensor."""
    fmt = normalize_data_format(data_format)
    factors = (as_count(depth_factor, "depth_factor", 1),
               as_count(height_factor, "height_factor", 1),
               as_count(width_factor, "width_factor", 1))
    node = to_node(x)
    for axis, f in zip(_spatial_axes(node, fmt, 3), factors):
        node = _nearest(node, axis, f)
    return Tensor(node)
