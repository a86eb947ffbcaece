"""Convolutions of the Keras backend API: conv1d/2d/3d, their transposes, depthwise and
separable convolutions (on the one ``conv`` op family of ``symk.graph.ops.conv``, in the
channels-last layout: channels_first is a transpose on each side), and the locally connected
``local_conv1d``/``local_conv2d`` (patches gathered once, then one batched contraction).

Semantics are Keras 2.3.1's TensorFlow backend: kernels are cross-correlations, ``same``
padding puts the odd pixel at the end, ``causal`` (conv1d) pads ``dilation * (k - 1)`` in front.
"""

from __future__ import annotations

import numpy as np

from symk import config
from symk.backend._config import normalize_data_format
from symk.backend._core import api, as_count, as_counts
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.ops.conv_impl import same_pads
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import is_float, result_dtype, shape_str

PADDINGS = ("valid", "same")


def _pads(padding, spatial, ksize, strides, dilation, causal_ok: bool = False) -> tuple:
    """Explicit (lo, hi) pads per spatial dim (None: SAME resolved at run time)."""
    mode = str(padding).lower() if isinstance(padding, str) else padding
    allowed = PADDINGS + (("causal",) if causal_ok else ())
    if mode not in allowed:
        raise ArgumentError(f"`padding` must be one of {', '.join(map(repr, allowed))}, got "
                            f"{padding!r}")
    if mode == "valid":
        return ((0, 0),) * len(ksize)
    if mode == "causal":
        return tuple((d * (k - 1), 0) for k, d in zip(ksize, dilation))
    return tuple(None if s is None else same_pads(s, k, st, d)
                 for s, k, st, d in zip(spatial, ksize, strides, dilation))


def _float_pair(x: Node, kernel: Node) -> tuple[Node, Node]:
    dtype = result_dtype(x.dtype, kernel.dtype)
    if not is_float(dtype):
        dtype = config.floatx()
    return gb.cast(x, dtype), gb.cast(kernel, dtype)


def _to_last(x: Node, fmt: str) -> Node:
    if fmt == "channels_last":
        return x
    return gb.transpose(x, (0, *range(2, x.ndim), 1))


def _from_last(y: Node, fmt: str) -> Node:
    if fmt == "channels_last":
        return y
    return gb.transpose(y, (0, y.ndim - 1, *range(1, y.ndim - 1)))


def _check_rank(x: Node, kernel: Node, nsp: int, what: str = "kernel") -> None:
    if x.ndim != nsp + 2:
        raise ShapeError(f"`x` must have rank {nsp + 2} (batch, {nsp} spatial dims, channels), "
                         f"got shape {shape_str(x.shape)}")
    if kernel.ndim != nsp + 2:
        raise ShapeError(f"`{what}` must have rank {nsp + 2}, got shape "
                         f"{shape_str(kernel.shape)}")
    if any(k is None for k in kernel.shape):
        raise ShapeError(f"`{what}` must have a fully known shape, got "
                         f"{shape_str(kernel.shape)}")


def _conv(x, kernel, nsp: int, strides, padding, data_format, dilation_rate,
          depthwise: bool = False, causal_ok: bool = False) -> Node:
    """The channels-last conv node of a K convolution (the result in ``data_format``)."""
    fmt = normalize_data_format(data_format)
    xn, kn = to_node(x), to_node(kernel)
    _check_rank(xn, kn, nsp, "depthwise_kernel" if depthwise else "kernel")
    strides = as_counts(strides, nsp, "`strides`")
    dilation = as_counts(dilation_rate, nsp, "`dilation_rate`")
    if str(padding).lower() == "causal" and causal_ok and fmt != "channels_last":
        raise ArgumentError('causal padding in conv1d needs data_format="channels_last"')
    xn, kn = _float_pair(xn, kn)
    xl = _to_last(xn, fmt)
    ksize = kn.shape[:nsp]
    pads = _pads(padding, xl.shape[1:-1], ksize, strides, dilation, causal_ok)
    groups = 1
    if depthwise:
        c, m = kn.shape[-2], kn.shape[-1]
        if xl.shape[-1] is not None and xl.shape[-1] != c:
            raise ShapeError(f"the input has {xl.shape[-1]} channels but `depthwise_kernel` "
                             f"{shape_str(kn.shape)} expects {c}")
        kn = gb.reshape(kn, (*ksize, 1, c * m))
        groups = c
    elif xl.shape[-1] is not None and xl.shape[-1] != kn.shape[-2]:
        raise ShapeError(f"the input has {xl.shape[-1]} channels but `kernel` "
                         f"{shape_str(kn.shape)} expects {kn.shape[-2]}")
    y = apply("conv", [xl, kn], strides=strides, dilation=dilation, pads=pads, groups=groups)
    return _from_last(y, fmt)


@api
def conv1d(x, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    return Tensor(_conv(x, kernel, 1, strides, padding, data_format, dilation_rate, causal_ok=True))


@api
def conv2d(x, kernel, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1)):
    return Tensor(_conv(x, kernel, 2, strides, padding, data_format, dilation_rate))


@api
def conv3d(x, kernel, strides=(1, 1, 1), padding="valid", data_format=None,
           dilation_rate=(1, 1, 1)):
    return Tensor(_conv(x, kernel, 3, strides, padding, data_format, dilation_rate))


@api
def depthwise_conv2d(x, depthwise_kernel, strides=(1, 1), padding="valid", data_format=None,
                     dilation_rate=(1, 1)):
    return Tensor(_conv(x, depthwise_kernel, 2, strides, padding, data_format, dilation_rate,
                        depthwise=True))


def _separable(x, depthwise_kernel, pointwise_kernel, nsp, strides, padding, data_format,
               dilation_rate, causal_ok=False) -> Node:
    fmt = normalize_data_format(data_format)
    y = _conv(x, depthwise_kernel, nsp, strides, padding, fmt, dilation_rate, depthwise=True,
              causal_ok=causal_ok)
    y = _to_last(y, fmt)
    pw = to_node(pointwise_kernel)
    if pw.ndim != nsp + 2 or any(d != 1 for d in pw.shape[:nsp]):
        raise ShapeError(f"`pointwise_kernel` must have shape {(1,) * nsp + ('C*M', 'F')}, got "
                         f"{shape_str(pw.shape)}")
    if pw.shape[-2] != y.shape[-1]:
        raise ShapeError(f"`pointwise_kernel` {shape_str(pw.shape)} expects {pw.shape[-2]} "
                         f"channels, the depthwise convolution gives {y.shape[-1]}")
    pw = gb.cast(gb.reshape(pw, pw.shape[nsp:]), y.dtype)
    letters = "abcde"[:nsp + 1]
    y = gb.einsum(f"{letters}y,yz->{letters}z", [y, pw])
    return _from_last(y, fmt)


@api
def separable_conv1d(x, depthwise_kernel, pointwise_kernel, strides=1, padding="valid",
                     data_format=None, dilation_rate=1):
    return Tensor(_separable(x, depthwise_kernel, pointwise_kernel, 1, strides, padding,
                             data_format, dilation_rate, causal_ok=True))


@api
def separable_conv2d(x, depthwise_kernel, pointwise_kernel, strides=(1, 1), padding="valid",
                     data_format=None, dilation_rate=(1, 1)):
    return Tensor(_separable(x, depthwise_kernel, pointwise_kernel, 2, strides, padding,
                             data_format, dilation_rate))


# ---------------------------------------------------------------- transposed convolutions


def _static_value(node: Node, depth: int = 0) -> np.ndarray | None:
    """The value of an integer shape expression when it is known while building (constants
    and the shapes of static tensors, through any deterministic ops), else None."""
    from symk.graph.ops.leaves import const_array

    name = node.op.name
    if name == "constant":
        return const_array(node)
    if name == "shape_of":
        shape = node.inputs[0].shape
        return None if None in shape else np.asarray(shape, np.int32)
    if name == "getitem" and node.inputs[0].op.name == "shape_of":
        spec = node.attrs["spec"]
        shape = node.inputs[0].inputs[0].shape
        if len(spec) == 1 and spec[0][0] == "i" and shape[spec[0][1]] is not None:
            return np.asarray(shape[spec[0][1]], np.int32)
    if node.op.is_leaf or node.op.is_random or depth > 32 or node.type.size() is None:
        return None
    vals = [_static_value(i, depth + 1) for i in node.inputs]
    if any(v is None for v in vals):
        return None
    return np.asarray(node.op.ref(*vals, **node.attrs))


def _dim(d, name: str) -> int | Node | None:
    """One entry of an output_shape: an int, a scalar int node, or None."""
    if d is None:
        return None
    if isinstance(d, (Tensor, Node)):
        node = to_node(d)
        v = _static_value(node)
        if v is not None:
            return int(v)
        if node.ndim != 0 and node.shape != (1,):
            raise ArgumentError(f"`{name}` entries must be scalars, got a tensor of shape "
                                f"{shape_str(node.shape)}")
        return gb.reshape(gb.cast(node, "int32"), (1,))
    return as_count(d, f"`{name}` entry")


def _output_dims(output_shape, rank: int, fmt: str) -> list:
    """output_shape (in ``fmt`` order) as channels-last entries (ints, nodes or None)."""
    if isinstance(output_shape, (Tensor, Node)):
        node = to_node(output_shape)
        if node.shape != (rank,):
            raise ArgumentError(f"`output_shape` must be a vector of {rank} ints, got a tensor "
                                f"of shape {shape_str(node.shape)}")
        v = _static_value(node)
        dims = list(v.tolist()) if v is not None else [
            apply("getitem", [node], spec=(("i", k),)) for k in range(rank)]
    else:
        dims = list(output_shape)
    if len(dims) != rank:
        raise ArgumentError(f"`output_shape` must have {rank} entries, got {output_shape!r}")
    dims = [_dim(d, "output_shape") for d in dims]
    if fmt == "channels_first":
        dims = [dims[0], *dims[2:], dims[1]]
    return dims


def _conv_transpose(x, kernel, output_shape, nsp, strides, padding, data_format,
                    dilation_rate) -> Node:
    fmt = normalize_data_format(data_format)
    xn, kn = to_node(x), to_node(kernel)
    _check_rank(xn, kn, nsp)
    strides = as_counts(strides, nsp, "`strides`")
    dilation = as_counts(dilation_rate, nsp, "`dilation_rate`")
    xn, kn = _float_pair(xn, kn)
    xl = _to_last(xn, fmt)
    dims = _output_dims(output_shape, nsp + 2, fmt)
    spatial = dims[1:-1]
    if any(d is None for d in spatial):
        raise ArgumentError(f"`output_shape` must give every spatial dim, got {output_shape!r}")
    if isinstance(dims[-1], int) and dims[-1] != kn.shape[-2]:
        raise ShapeError(f"`output_shape` asks for {dims[-1]} channels but `kernel` "
                         f"{shape_str(kn.shape)} gives {kn.shape[-2]}")
    if xl.shape[-1] is not None and xl.shape[-1] != kn.shape[-1]:
        raise ShapeError(f"the input has {xl.shape[-1]} channels but `kernel` "
                         f"{shape_str(kn.shape)} expects {kn.shape[-1]} (kernels of a "
                         "transposed convolution are (*spatial, out_channels, in_channels))")
    static = tuple(d if isinstance(d, int) else None for d in spatial)
    pads = _pads(padding, static, kn.shape[:nsp], strides, dilation)
    extra = []
    if None in static:
        parts = [gb.const(np.asarray([d], np.int32)) if isinstance(d, int) else d
                 for d in [0, *spatial, 0]]
        extra = [apply("concatenate", parts, axis=0)]
    y = apply("conv_input_grad", [xl, kn, *extra], strides=strides, dilation=dilation,
              pads=pads, groups=1, in_spatial=static)
    return _from_last(y, fmt)


@api
def conv2d_transpose(x, kernel, output_shape, strides=(1, 1), padding="valid", data_format=None,
                     dilation_rate=(1, 1)):
    return Tensor(_conv_transpose(x, kernel, output_shape, 2, strides, padding, data_format,
                                  dilation_rate))


@api
def conv3d_transpose(x, kernel, output_shape, strides=(1, 1, 1), padding="valid",
                     data_format=None):
    return Tensor(_conv_transpose(x, kernel, output_shape, 3, strides, padding, data_format,
                                  (1, 1, 1)))


# ---------------------------------------------------------------- locally connected


def _local(x: Node, kernel: Node, ksize, strides, out_sp, fmt: str) -> Node:
    """Unshared-weight convolution: gather the patches of every output position, then one
    batched contraction with that position's weights."""
    nsp = len(ksize)
    if fmt == "channels_first":
        x = _to_last(x, fmt)
    spatial = x.shape[1:-1]
    if any(s is None for s in spatial) or x.shape[-1] is None:
        raise ShapeError(f"local convolutions need known spatial and channel dims, got input "
                         f"{shape_str(x.shape)}")
    c = x.shape[-1]
    npos = int(np.prod(out_sp))
    taps = int(np.prod(ksize))
    if kernel.ndim != 3 or kernel.shape[0] != npos or kernel.shape[1] != taps * c:
        raise ShapeError(f"`kernel` must have shape ({npos}, {taps * c}, filters) for "
                         f"{npos} output positions, {taps} taps and {c} channels, got "
                         f"{shape_str(kernel.shape)}")
    f = kernel.shape[2]
    # flat spatial index of tap t of output position o
    strides_flat = np.cumprod((1, *spatial[::-1]))[:-1][::-1]
    pos = np.stack(np.meshgrid(*[np.arange(o) * s for o, s in zip(out_sp, strides)],
                               indexing="ij"), -1).reshape(npos, nsp)
    tap = np.stack(np.meshgrid(*[np.arange(k) for k in ksize], indexing="ij"),
                   -1).reshape(taps, nsp)
    idx = ((pos[:, None, :] + tap[None, :, :]) * strides_flat).sum(-1).astype(np.int32)
    # the batch dim as -1 only when unknown (with an empty dim elsewhere -1 is ambiguous)
    n = -1 if x.shape[0] is None else x.shape[0]
    xs = gb.reshape(gb.transpose(x, (*range(1, nsp + 1), 0, nsp + 1)),
                    (int(np.prod(spatial)), n, c))
    patches = apply("gather", [xs, gb.const(idx)])  # (P, taps, N, C)
    if fmt == "channels_first":
        kern = gb.reshape(kernel, (npos, c, taps, f))
        y = gb.einsum("pknc,pckf->npf", [patches, kern])
    else:
        kern = gb.reshape(kernel, (npos, taps, c, f))
        y = gb.einsum("pknc,pkcf->npf", [patches, kern])
    y = gb.reshape(y, (n, *out_sp, f))
    return _from_last(y, fmt)


@api
def local_conv1d(inputs, kernel, kernel_size, strides, data_format=None):
    normalize_data_format(data_format)  # validated; Keras's 1D version is channels-last only
    xn, kn = _float_pair(to_node(inputs), to_node(kernel))
    if xn.ndim != 3:
        raise ShapeError(f"`inputs` must have rank 3 (batch, steps, channels), got "
                         f"{shape_str(xn.shape)}")
    ksize = as_counts(kernel_size, 1, "`kernel_size`")
    strides = as_counts(strides, 1, "`strides`")
    if kn.ndim != 3 or kn.shape[0] is None:
        raise ShapeError(f"`kernel` must have shape (output_length, features, filters), got "
                         f"{shape_str(kn.shape)}")
    return Tensor(_local(xn, kn, ksize, strides, (kn.shape[0],), "channels_last"))


@api
def local_conv2d(inputs, kernel, kernel_size, strides, output_shape, data_format=None):
    fmt = normalize_data_format(data_format)
    xn, kn = _float_pair(to_node(inputs), to_node(kernel))
    if xn.ndim != 4:
        raise ShapeError(f"`inputs` must have rank 4, got {shape_str(xn.shape)}")
    ksize = as_counts(kernel_size, 2, "`kernel_size`")
    strides = as_counts(strides, 2, "`strides`")
    out_sp = as_counts(output_shape, 2, "`output_shape`")
    return Tensor(_local(xn, kn, ksize, strides, out_sp, fmt))
