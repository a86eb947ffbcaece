"""Linear algebra and shape manipulation of the Keras backend API."""

from __future__ import annotations

import builtins

import numpy as np

from symk import config
from symk.backend._core import api, as_count, as_dims, as_list, as_real, keras_shaped, shape_spec
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.tensor import Tensor, getitem, to_node
from symk.graph.types import normalize_axis, shape_str

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@api
@keras_shaped()
def dot(x, y):
    """Theano/numpy semantics: contract x's last axis with y's second-to-last (or only) axis.
    A 2-D sparse x times a 2-D dense y never densifies x."""
    from symk.backend._sparse import is_sparse, sparse_dot

    if is_sparse(x) and not is_sparse(y):
        return sparse_dot(x, to_node(y))
    xn, yn = to_node(x), to_node(y)
    if xn.ndim == 0 or yn.ndim == 0:
        return Tensor(gb.mul(xn, yn))
    xl = _LETTERS[: xn.ndim]
    k = xl[-1]
    yl = list(_LETTERS[xn.ndim: xn.ndim + yn.ndim])
    ci = yn.ndim - 2 if yn.ndim >= 2 else 0
    yl[ci] = k
    yl = "".join(yl)
    out = xl[:-1] + yl[:ci] + yl[ci + 1:]
    xk, yk = xn.shape[-1], yn.shape[ci]
    if xk is not None and yk is not None and xk != yk:
        raise ShapeError(f"incompatible shapes {shape_str(xn.shape)} and {shape_str(yn.shape)}: "
                         f"x's last dimension {xk} != y's dimension {ci - yn.ndim} = {yk}")
    return Tensor(gb.einsum(f"{xl},{yl}->{out}", [xn, yn]))


@api
@keras_shaped()
def batch_dot(x, y, axes=None):
    """Keras 2.3 semantics: result has x's dims (less the summed one) then y's dims (less batch
    and summed); a rank-1 result becomes (batch, 1)."""
    xn, yn = to_node(x), to_node(y)
    xs, ys = xn.shape, yn.shape
    if xn.ndim < 2 or yn.ndim < 2:
        raise ShapeError(f"cannot do batch_dot on inputs with rank < 2; got shapes "
                         f"{shape_str(xs)} and {shape_str(ys)}")
    if xs[0] is not None and ys[0] is not None and xs[0] != ys[0]:
        raise ShapeError(f"cannot do batch_dot on inputs with different batch sizes: "
                         f"{shape_str(xs)} and {shape_str(ys)}")
    if axes is None:
        axes = [xn.ndim - 1, yn.ndim - 1 if yn.ndim == 2 else yn.ndim - 2]
    axes = as_list(axes)
    if len(axes) == 1:  # one int: the same axis of both
        axes *= 2
    if len(axes) != 2 or builtins.any(isinstance(a, (list, tuple)) for a in axes):
        raise ArgumentError(f"multiple target dimensions are not supported; expected None, "
                            f"int or (int, int), got {axes}")
    a0 = normalize_axis(axes[0], xn.ndim)
    a1 = normalize_axis(axes[1], yn.ndim)
    if a0 == 0 or a1 == 0:
        raise ShapeError("cannot perform batch_dot over axis 0 (the batch axis)")
    if xs[a0] is not None and ys[a1] is not None and xs[a0] != ys[a1]:
        raise ShapeError(f"cannot do batch_dot on inputs with shapes {shape_str(xs)} and "
                         f"{shape_str(ys)} with axes={list(axes)}: {xs[a0]} != {ys[a1]}")
    xl = list(_LETTERS[: xn.ndim])
    yl = ["a"] + list(_LETTERS[xn.ndim: xn.ndim + yn.ndim - 1])
    yl[a1] = xl[a0]
    out = [c for i, c in enumerate(xl) if i != a0] + [c for i, c in enumerate(yl)
                                                     if i not in (0, a1)]
    res = gb.einsum(f"{''.join(xl)},{''.join(yl)}->{''.join(out)}", [xn, yn])
    if res.ndim == 1:
        res = gb.expand_dims(res, 1)
    return Tensor(res)


@api
@keras_shaped()
def transpose(x):
    node = to_node(x)
    return Tensor(gb.transpose(node, list(range(node.ndim))[::-1]))


@api
@keras_shaped()
def permute_dimensions(x, pattern):
    node = to_node(x)
    pattern = as_dims(pattern, "pattern")
    if sorted(pattern) != list(range(node.ndim)):
        raise ShapeError(f"pattern {pattern} is not a permutation of the {node.ndim} axes of "
                         f"a tensor of shape {shape_str(node.shape)}")
    return Tensor(gb.transpose(node, pattern))


@api
@keras_shaped()
def gather(reference, indices):
    idx = to_node(indices)
    return Tensor(apply("gather", [to_node(reference), idx]))


@api
@keras_shaped()
def concatenate(tensors, axis=-1):
    """Concatenation along ``axis``; of sparse tensors only, a sparse tensor (as Keras's
    TensorFlow backend); a mix of sparse and dense tensors concatenates their dense values."""
    from symk.backend._sparse import is_sparse, sparse_concat

    tensors = list(tensors)
    nodes = [to_node(t) for t in tensors]
    if not nodes:
        raise ArgumentError("concatenate needs at least one tensor")
    axis = normalize_axis(axis, nodes[0].ndim)
    if builtins.all(is_sparse(t) for t in tensors):
        return sparse_concat(tensors, axis)
    if len(nodes) == 1:
        return Tensor(nodes[0])
    return Tensor(apply("concatenate", nodes, axis=axis))


@api
@keras_shaped(always=True)
def reshape(x, shape):
    node = to_node(x)
    static, vec = shape_spec(shape, wildcards=1)
    out = Tensor(gb.reshape(node, static) if vec is None else
                 apply("reshape", [node, vec], shape=static))
    # as Theano's backend: Keras's network reads _uses_learning_phase from every tensor with a
    # _keras_shape, and TimeDistributed feeds reshaped tensors through a network
    if out is not x:
        out._uses_learning_phase = getattr(x, "_uses_learning_phase", False)
    return out


@api
@keras_shaped()
def repeat_elements(x, rep, axis):
    node = to_node(x)
    return Tensor(apply("repeat", [node], rep=as_count(rep, "rep"),
                        axis=normalize_axis(axis, node.ndim)))


@api
@keras_shaped()
def repeat(x, n):
    node = to_node(x)
    if node.ndim != 2:
        raise ShapeError(f"repeat needs a 2D tensor, got shape {shape_str(node.shape)}")
    return Tensor(apply("tile", [gb.expand_dims(node, 1)], reps=(1, as_count(n, "n"), 1)))


@api
def arange(start, stop=None, step=1, dtype="int32"):
    for what, v in (("start", start), ("stop", stop), ("step", step)):
        if v is not None and not isinstance(v, Tensor) and not np.isfinite(as_real(v, what)):
            raise ArgumentError(f"{what} must be a finite number, got {v!r}")
    if not isinstance(step, Tensor) and step == 0:
        raise ArgumentError("step must not be 0")
    if builtins.any(isinstance(v, Tensor) for v in (start, stop, step)):
        if stop is None:
            start, stop = 0, start
        parts = [gb.cast(to_node(v), "int64") for v in (start, stop, step)]
        return Tensor(apply("arange", parts, dtype=dtype))
    if stop is None:
        start, stop = 0, builtins.max(start, 0)
    if (stop - start) / step > 2 ** 31:
        raise ArgumentError(f"arange({start}, {stop}, {step}) would have more than 2**31 "
                            "elements")
    return Tensor(gb.const(np.arange(start, stop, step).astype(dtype)))


@api
@keras_shaped(always=True)
def tile(x, n):
    node = to_node(x)
    if isinstance(n, Tensor) or (isinstance(n, (list, tuple))
                                 and builtins.any(isinstance(r, Tensor) for r in n)):
        return Tensor(_tile_dynamic(node, n))
    reps = as_dims(n, "n")
    if len(reps) > node.ndim:
        raise ShapeError(f"tile: {len(reps)} repetitions for a tensor of rank {node.ndim}")
    reps = (1,) * (node.ndim - len(reps)) + reps
    return Tensor(apply("tile", [node], reps=reps))


def _tile_dynamic(node, reps):
    """tile with repetitions known only at run time (Keras's confusion-matrix metrics tile by
    the batch size): broadcast x of shape (d0..dn) viewed as (1,d0,..,1,dn) against a filled
    (r0,d0,..,rn,dn), then merge each pair of axes."""
    if isinstance(reps, Tensor):
        if reps.ndim != 1 or reps.shape[0] is None:
            raise ArgumentError("symbolic tile repetitions must be a 1-D tensor of known length")
        rvec = gb.cast(reps.node, "int32")
        k = reps.shape[0]
    else:
        rvec = stack([gb.cast(to_node(r), "int32") for r in reps]).node
        k = len(reps)
    if k != node.ndim:
        raise ShapeError(f"tile: {k} symbolic repetitions for a tensor of rank {node.ndim} "
                         "(one per axis needed)")
    sv = gb.shape_of(node)
    pairs = []
    for i in range(node.ndim):
        pairs += [getitem(rvec, builtins.slice(i, i + 1)), getitem(sv, builtins.slice(i, i + 1))]
    wide = apply("concatenate", pairs, axis=0)
    view = node
    for i in range(node.ndim):
        view = gb.expand_dims(view, 2 * i)
    wide_static = tuple(d for dim in node.shape for d in (None, dim))
    mask = apply("fill", [wide], value=True, dtype="bool", shape=wide_static)
    big = gb.where(mask, view, view)
    return apply("reshape", [big, gb.mul(rvec, sv)], shape=(None,) * node.ndim)


@api
@keras_shaped()
def flatten(x):
    node = to_node(x)
    if None not in node.shape:
        return Tensor(gb.reshape(node, (-1,)))
    return Tensor(gb.reshape(node, (-1,)))


@api
@keras_shaped()
def batch_flatten(x):
    node = to_node(x)
    rest = node.shape[1:]
    if None not in rest:
        return Tensor(gb.reshape(node, (-1, int(np.prod(rest, dtype=np.int64)))))
    sv = gb.shape_of(node)
    tail = apply("prod", [apply("getitem", [sv], spec=(("s", 1, None, None),))], axes=(0,),
                 keepdims=False)
    vec = apply("concatenate", [gb.const(np.asarray([-1], np.int32)), gb.reshape(tail, (1,))],
                axis=0)
    return Tensor(apply("reshape", [node, vec], shape=(-1, None)))


@api
@keras_shaped()
def expand_dims(x, axis=-1):
    node = to_node(x)
    return Tensor(gb.expand_dims(node, normalize_axis(axis, node.ndim + 1)))


@api
@keras_shaped()
def squeeze(x, axis):
    node = to_node(x)
    return Tensor(gb.squeeze(node, normalize_axis(axis, node.ndim)))


@api
def stack(x, axis=0):
    nodes = [to_node(t) for t in x]
    if not nodes:
        raise ArgumentError("stack needs at least one tensor")
    axis = normalize_axis(axis, nodes[0].ndim + 1)
    return Tensor(apply("concatenate", [gb.expand_dims(t, axis) for t in nodes], axis=axis))


@api
def one_hot(indices, num_classes):
    idx = to_node(indices)
    classes = gb.const(np.arange(as_count(num_classes, "num_classes", 1), dtype=np.int64))
    hot = gb.eq(gb.expand_dims(gb.cast(idx, "int64"), idx.ndim), classes)
    return Tensor(gb.cast(hot, config.floatx()))


@api
def reverse(x, axes):
    node = to_node(x)
    axes = tuple(sorted(normalize_axis(a, node.ndim) for a in as_list(axes)))
    return Tensor(apply("reverse", [node], axes=axes))


@api
@keras_shaped(always=True)
def slice(x, start, size):  # noqa: A001
    node = to_node(x)
    start = as_dims(start, "start")
    size = as_dims(size, "size", wildcards=None)  # -1: everything from start on (tf.slice)
    if not len(start) == len(size) == node.ndim:
        raise ShapeError(f"start {start} and size {size} must both have one entry per "
                         f"dimension of the tensor of shape {shape_str(node.shape)}")
    spec = tuple(("w", b, None if s == -1 else b + s, None) for b, s in zip(start, size))
    return Tensor(apply("getitem", [node], spec=spec))


def _pad(x, pattern):
    node = to_node(x)
    return Tensor(apply("pad", [node], pads=tuple(pattern), value=0))


def _pad_pairs(padding, count: int) -> list[tuple[int, int]]:
    """``count`` (before, after) pairs of non-negative ints."""
    try:
        items = [padding] if count == 1 else list(padding)
    except TypeError:
        items = []
    pairs = [as_dims(p, "padding") for p in items]
    if len(pairs) != count or builtins.any(len(p) != 2 for p in pairs):
        what = "a (before, after) pair" if count == 1 else f"{count} (before, after) pairs"
        raise ArgumentError(f"padding must be {what} of ints >= 0, got {padding!r}")
    return pairs


@api
@keras_shaped()
def temporal_padding(x, padding=(1, 1)):
    return _pad(x, [(0, 0), *_pad_pairs(padding, 1), (0, 0)])


def _spatial(padding, nsp, data_format):
    from symk.backend._config import normalize_data_format

    pads = _pad_pairs(padding, nsp)
    fmt = normalize_data_format(data_format)
    if fmt == "channels_first":
        return [(0, 0), (0, 0)] + pads
    return [(0, 0)] + pads + [(0, 0)]


@api
@keras_shaped()
def spatial_2d_padding(x, padding=((1, 1), (1, 1)), data_format=None):
    return _pad(x, _spatial(padding, 2, data_format))


@api
@keras_shaped()
def spatial_3d_padding(x, padding=((1, 1), (1, 1), (1, 1)), data_format=None):
    return _pad(x, _spatial(padding, 3, data_format))
