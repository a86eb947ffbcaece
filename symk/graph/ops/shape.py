"""Shape and data-movement ops: reshape, transpose, expand/squeeze, concatenate, slicing,
gather, reverse, tile, repeat, pad, shape_of, fill, arange; with the helper ops their
gradients need (slice_grad, gather_grad, tile_grad, repeat_grad, concat_part)."""

from __future__ import annotations

import numpy as np

from symk.errors import ShapeError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.op import IndexMap, Op, register
from symk.graph.types import Type, as_dtype, is_int, normalize_axis, shape_str


def _prod(dims):
    n = 1
    for d in dims:
        if d is None:
            return None
        n *= d
    return n


@register
class Reshape(Op):
    """reshape(x[, shape_vec]): ``shape`` holds ints, one -1, or None for dims known only at
    run time (then the int vector ``shape_vec`` gives the whole shape)."""

    name = "reshape"
    reshapes = True
    may_alias = True
    attr_names = ("shape",)

    def infer(self, inputs, shape):
        x = inputs[0]
        shape = tuple(shape)
        if len(inputs) == 1 and any(d is None for d in shape):
            raise ShapeError(f"reshape target {shape} has unknown dims but no shape input")
        if sum(1 for d in shape if d == -1) > 1:
            raise ShapeError(f"reshape target {shape} has more than one -1")
        out = list(shape)
        if -1 in shape:
            known = _prod([d for d in shape if d != -1])
            total = x.size()
            i = shape.index(-1)
            if known is not None and total is not None:
                if known == 0 or total % known:
                    raise ShapeError(f"cannot reshape {shape_str(x.shape)} into {shape}")
                out[i] = total // known
            else:
                out[i] = None
        else:
            total, known = x.size(), _prod(shape)
            if total is not None and known is not None and total != known:
                raise ShapeError(f"cannot reshape {shape_str(x.shape)} ({total} elements) "
                                 f"into {shape_str(shape)} ({known} elements)")
        return Type(x.dtype, tuple(out))

    def ref(self, x, shape_vec=None, shape=()):
        target = tuple(int(s) for s in shape_vec) if shape_vec is not None else tuple(shape)
        try:
            return np.reshape(x, target)
        except ValueError:
            asked = "" if target == tuple(shape) else f" (at run time {target})"
            raise ShapeError(f"cannot reshape an array of shape {x.shape} ({x.size} elements) "
                             f"into the target shape {tuple(shape)}{asked}") from None

    def vjp(self, node, g):
        return [gb.reshape_like(g, node.inputs[0])] + [None] * (len(node.inputs) - 1)


@register
class Transpose(Op):
    name = "transpose"
    may_alias = True
    arity = 1
    attr_names = ("perm",)

    def infer(self, inputs, perm):
        (x,) = inputs
        if sorted(perm) != list(range(x.ndim)):
            raise ShapeError(f"permutation {tuple(perm)} is invalid for a tensor of rank {x.ndim}")
        return Type(x.dtype, tuple(x.shape[p] for p in perm))

    def ref(self, x, perm):
        return np.transpose(x, perm)

    def row_axis(self, node, axes):
        return list(node.attrs["perm"]).index(axes[0])

    def index_map(self, node):
        # source axis j is the output's axis perm.index(j)
        perm = list(node.attrs["perm"])
        return IndexMap(0, tuple((perm.index(j), 0, 1) for j in range(len(perm))))

    def vjp(self, node, g):
        inv = [0] * len(node.attrs["perm"])
        for i, p in enumerate(node.attrs["perm"]):
            inv[p] = i
        return [gb.transpose(g, inv)]


@register
class ExpandDims(Op):
    name = "expand_dims"
    reshapes = True
    may_alias = True
    arity = 1
    attr_names = ("axis",)

    def infer(self, inputs, axis):
        (x,) = inputs
        a = normalize_axis(axis, x.ndim + 1)
        s = list(x.shape)
        s.insert(a, 1)
        return Type(x.dtype, tuple(s))

    def ref(self, x, axis):
        return np.expand_dims(x, axis)

    def row_axis(self, node, axes):
        a = normalize_axis(node.attrs["axis"], node.ndim)
        return axes[0] + (1 if a <= axes[0] else 0)

    def vjp(self, node, g):
        return [gb.squeeze(g, node.attrs["axis"])]


@register
class Squeeze(Op):
    name = "squeeze"
    reshapes = True
    may_alias = True
    arity = 1
    attr_names = ("axis",)

    def infer(self, inputs, axis):
        (x,) = inputs
        a = normalize_axis(axis, x.ndim)
        if x.shape[a] not in (1, None):
            raise ShapeError(f"cannot squeeze axis {axis} of size {x.shape[a]} (must be 1)")
        return Type(x.dtype, x.shape[:a] + x.shape[a + 1:])

    def ref(self, x, axis):
        if x.shape[axis] != 1:
            raise ShapeError(f"cannot squeeze axis {axis} of size {x.shape[axis]} (must be 1)")
        return np.squeeze(x, axis)

    def row_axis(self, node, axes):
        a = normalize_axis(node.attrs["axis"], node.inputs[0].ndim)
        return None if a == axes[0] else axes[0] - (1 if a < axes[0] else 0)

    def vjp(self, node, g):
        return [gb.expand_dims(g, normalize_axis(node.attrs["axis"], node.inputs[0].ndim))]


def _concat_type(inputs, axis):
    if not inputs:
        raise ShapeError("concatenate needs at least one tensor")
    nd = inputs[0].ndim
    a = normalize_axis(axis, nd)
    for t in inputs:
        if t.ndim != nd:
            raise ShapeError("concatenate: all tensors must have the same rank, got "
                             + ", ".join(shape_str(t.shape) for t in inputs))
    out = []
    for i in range(nd):
        dims = [t.shape[i] for t in inputs]
        if i == a:
            out.append(None if any(d is None for d in dims) else sum(dims))
        else:
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise ShapeError(f"concatenate on axis {axis}: shapes "
                                 + ", ".join(shape_str(t.shape) for t in inputs)
                                 + f" differ in dimension {i}")
            out.append(known.pop() if known else None)
    return a, tuple(out)


@register
class Concatenate(Op):
    name = "concatenate"
    attr_names = ("axis",)

    def infer(self, inputs, axis):
        from symk.graph.types import result_dtype

        _, shape = _concat_type(inputs, axis)
        return Type(result_dtype(*[t.dtype for t in inputs]), shape)

    def ref(self, *xs, axis):
        return np.concatenate(xs, axis=axis).astype(
            np.result_type(*[x.dtype for x in xs]), copy=False)

    def row_axis(self, node, axes):
        # joined along another axis, every part holding the same rows
        if len(set(axes)) != 1 or axes[0] is None:
            return None
        return None if normalize_axis(node.attrs["axis"], node.ndim) == axes[0] else axes[0]

    def vjp(self, node, g):
        a = node.attrs["axis"]
        return [apply("concat_part", [g, *node.inputs], axis=a, index=i)
                for i in range(len(node.inputs))]


@register
class ConcatPart(Op):
    """concat_part(g, x0..xn-1, index=i): the part of ``g`` that came from x_i in a concat."""

    name = "concat_part"
    may_alias = True
    attr_names = ("axis", "index")

    def infer(self, inputs, axis, index):
        g, parts = inputs[0], inputs[1:]
        t = parts[index]
        return Type(g.dtype, tuple(t.shape[i] if i == normalize_axis(axis, g.ndim) else d
                                   for i, d in enumerate(g.shape)))

    def ref(self, g, *parts, axis, index):
        start = builtins_sum(p.shape[axis] for p in parts[:index])
        idx = [slice(None)] * g.ndim
        idx[axis] = slice(start, start + parts[index].shape[axis])
        return g[tuple(idx)]

    def vjp(self, node, g):
        parts = node.inputs[1:]
        i = node.attrs["index"]
        pieces = [g if j == i else gb.zeros_like(p, g.dtype) for j, p in enumerate(parts)]
        return [gb.concatenate(pieces, node.attrs["axis"])] + [None] * len(parts)


builtins_sum = sum


def getitem_type(shape, spec):
    out = []
    ax = 0
    for e in spec:
        if e[0] == "n":
            out.append(1)
            continue
        if ax >= len(shape):
            raise ShapeError(f"too many indices for a tensor of rank {len(shape)}")
        d = shape[ax]
        if e[0] == "i":
            if d is not None and not -d <= e[1] < d:
                raise ShapeError(f"index {e[1]} is out of bounds for axis {ax} with size {d}")
        elif e[0] == "w":
            out.append(_window_size(d, e[1], e[2], ax))
        else:
            _, start, stop, step = e
            if step == 0:
                raise ShapeError("slice step cannot be zero")
            if d is not None:
                out.append(len(range(*slice(start, stop, step).indices(d))))
            else:
                out.append(None)
        ax += 1
    out.extend(shape[ax:])
    return tuple(out)


def _window_size(d, start, stop, ax):
    """Size of a window ('w', start, stop, None): unlike a Python slice it must lie inside
    the axis (0 <= start <= stop <= d; stop None: to the end), else a ShapeError."""
    if d is not None and (start > d or (stop is not None and stop > d)):
        end = "the end" if stop is None else stop
        raise ShapeError(f"window [{start}:{end}] of axis {ax} is out of range for its size {d}")
    if stop is None:
        return None if d is None else d - start
    return stop - start


def spec_index(spec):
    idx = []
    for e in spec:
        if e[0] == "n":
            idx.append(None)
        elif e[0] == "i":
            idx.append(e[1])
        else:
            idx.append(slice(e[1], e[2], e[3]))
    return tuple(idx)


def slice_axes(spec, shape) -> list[tuple] | None:
    """Per axis of a tensor of ``shape`` indexed by ``spec``: ``("full", out_axis)``,
    ``("slice", out_axis, start, step, n)`` (normalized, static) or ``("index", k)`` (k >= 0);
    None when a dim the spec slices or indexes is unknown, or for a window (its bounds are
    checked at run time by the reference)."""
    out: list[tuple] = []
    oa = 0
    ax = 0
    for e in spec:
        if e[0] == "n":
            oa += 1
            continue
        if e[0] == "w" or ax >= len(shape):
            return None
        d = shape[ax]
        if e[0] == "i":
            if d is None:
                return None
            out.append(("index", e[1] % d))
        else:
            _, start, stop, step = e
            if d is None:
                if start not in (None, 0) or stop is not None or step not in (None, 1):
                    return None
                out.append(("full", oa))
            else:
                r = range(*slice(start, stop, step).indices(d))
                if r.start == 0 and r.step == 1 and len(r) == d:
                    out.append(("full", oa))
                else:
                    out.append(("slice", oa, r.start, r.step, len(r)))
            oa += 1
        ax += 1
    for _ in range(ax, len(shape)):
        out.append(("full", oa))
        oa += 1
    return out


def _rows_read_whole(spec, shape, axis: int) -> int | None:
    """The output axis of ``x[spec]`` that is axis ``axis`` of ``x`` read whole by a plain
    ``:`` (whatever its size), else None."""
    m = slice_axes(spec, shape)
    if m is None or axis >= len(m) or m[axis][0] != "full":
        return None
    entries = [e for e in spec if e[0] != "n"]  # (axes past the spec are read whole)
    if axis < len(entries) and tuple(entries[axis]) != ("s", None, None, None):
        return None
    return m[axis][1]


@register
class GetItem(Op):
    """x[spec] with static ints, slices and newaxis (``spec`` entries: ('i', k),
    ('s', start, stop, step), ('n',)); ellipsis is expanded when the node is built.  A window
    ('w', start, stop, None) is a slice that must lie inside its axis (K.slice): checked when
    the node is built for static dims and by the reference at run time otherwise."""

    name = "getitem"
    may_alias = True
    arity = 1
    attr_names = ("spec",)

    def infer(self, inputs, spec):
        (x,) = inputs
        return Type(x.dtype, getitem_type(x.shape, spec))

    def ref(self, x, spec):
        if any(e[0] == "w" for e in spec):
            getitem_type(x.shape, spec)  # windows over dims known only now
        try:
            return np.asarray(x[spec_index(spec)])
        except IndexError as e:
            raise ShapeError(f"indexing a tensor of shape {x.shape}: {e}") from None

    def row_axis(self, node, axes):
        # a static index or slice of other axes; the rows' axis is read whole (``:``)
        return _rows_read_whole(node.attrs["spec"], node.inputs[0].shape, axes[0])

    def vjp(self, node, g):
        return [apply("slice_grad", [g, node.inputs[0]], spec=node.attrs["spec"])]

    def index_map(self, node):
        m = slice_axes(node.attrs["spec"], node.inputs[0].shape)
        if m is None:
            return None
        axes = tuple((e[1], 0, 1) if e[0] == "full" else (e[1], e[2], e[3])
                     if e[0] == "slice" else (None, e[1], 0) for e in m)
        return IndexMap(0, axes)


@register
class SliceGrad(Op):
    """slice_grad(g, x): zeros shaped like x with g written at x[spec]."""

    name = "slice_grad"
    arity = 2
    attr_names = ("spec",)

    def infer(self, inputs, spec):
        return Type(inputs[0].dtype, inputs[1].shape)

    def ref(self, g, x, spec):
        z = np.zeros(x.shape, g.dtype)
        z[spec_index(spec)] = g
        return z

    def row_axis(self, node, axes):
        # g written into x's shape: rows stay rows where the slice reads x's rows whole
        ag, ax = axes
        if ag is None or ax is None:
            return None
        return ax if _rows_read_whole(node.attrs["spec"], node.inputs[1].shape, ax) == ag \
            else None

    def vjp(self, node, g):
        return [apply("getitem", [g], spec=node.attrs["spec"]), None]

    def index_map(self, node):
        g, x = node.inputs
        m = slice_axes(node.attrs["spec"], x.shape)
        if m is None or any(e[0] == "slice" and (e[3] != 1 or e[4] < 1) for e in m):
            return None
        by_out = {e[1]: (j, e) for j, e in enumerate(m) if e[0] != "index"}
        axes, extents = [], []
        for b in range(g.ndim):  # g's axes: the slice's output axes
            if b not in by_out:  # a new axis: g's dim is 1
                axes.append((None, 0, 0))
                extents.append(-1)
                continue
            j, e = by_out[b]
            axes.append((j, 0, 1) if e[0] == "full" else (j, e[2], 1))
            extents.append(e[4] if e[0] == "slice" else -1)
        pins = tuple((j, e[1]) for j, e in enumerate(m) if e[0] == "index")
        return IndexMap(0, tuple(axes), True, tuple(extents), pins)


@register
class Gather(Op):
    """gather(x, indices) = x[indices] along axis 0."""

    name = "gather"
    arity = 2
    extern = True

    def infer(self, inputs):
        x, idx = inputs
        if not is_int(idx.dtype):
            from symk.errors import DTypeError

            raise DTypeError(f"gather indices must be integers, got {idx.dtype}")
        if x.ndim < 1:
            raise ShapeError("gather needs a reference tensor of rank >= 1")
        return Type(x.dtype, idx.shape + x.shape[1:])

    def ref(self, x, idx):
        if idx.size and (idx.min() < -x.shape[0] or idx.max() >= x.shape[0]):
            raise ShapeError(f"gather: index out of range [{idx.min()}, {idx.max()}] for a "
                             f"reference of {x.shape[0]} rows")
        return x[idx]

    def vjp(self, node, g):
        x, idx = node.inputs
        return [apply("gather_grad", [g, idx, x]), None]


@register
class GatherGrad(Op):
    """gather_grad(g, idx, x): zeros like x with rows of g added at idx (duplicates sum)."""

    name = "gather_grad"
    arity = 3
    extern = True

    def infer(self, inputs):
        return Type(inputs[0].dtype, inputs[2].shape)

    def ref(self, g, idx, x):
        z = np.zeros(x.shape, g.dtype)
        np.add.at(z, idx, g)
        return z

    def vjp(self, node, g):
        return [apply("gather", [g, node.inputs[1]]), None, None]


@register
class Reverse(Op):
    name = "reverse"
    may_alias = True
    arity = 1
    attr_names = ("axes",)

    def infer(self, inputs, axes):
        (x,) = inputs
        for a in axes:
            normalize_axis(a, x.ndim)
        return x

    def ref(self, x, axes):
        return np.flip(x, tuple(axes)) if axes else x

    def vjp(self, node, g):
        return [apply("reverse", [g], axes=node.attrs["axes"])]


@register
class Tile(Op):
    name = "tile"
    arity = 1
    attr_names = ("reps",)

    def infer(self, inputs, reps):
        (x,) = inputs
        if len(reps) != x.ndim:
            raise ShapeError(f"tile: {len(reps)} repetitions for a tensor of rank {x.ndim}")
        return Type(x.dtype, tuple(None if d is None else d * r for d, r in zip(x.shape, reps)))

    def ref(self, x, reps):
        return np.tile(x, reps)

    def vjp(self, node, g):
        return [apply("tile_grad", [g, node.inputs[0]], reps=node.attrs["reps"])]


@register
class TileGrad(Op):
    """tile_grad(g, x): sum of the tiles of g, shaped like x."""

    name = "tile_grad"
    arity = 2
    attr_names = ("reps",)

    def infer(self, inputs, reps):
        return Type(inputs[0].dtype, inputs[1].shape)

    def ref(self, g, x, reps):
        inter = []
        for r, d in zip(reps, x.shape):
            inter += [r, d]
        return g.reshape(inter).sum(axis=tuple(range(0, 2 * x.ndim, 2)))

    def vjp(self, node, g):
        return [apply("tile", [g], reps=node.attrs["reps"]), None]


@register
class Repeat(Op):
    """repeat(x, rep, axis): each element repeated ``rep`` times along ``axis`` (np.repeat)."""

    name = "repeat"
    arity = 1
    attr_names = ("rep", "axis")

    def infer(self, inputs, rep, axis):
        (x,) = inputs
        a = normalize_axis(axis, x.ndim)
        s = list(x.shape)
        s[a] = None if s[a] is None else s[a] * rep
        return Type(x.dtype, tuple(s))

    def ref(self, x, rep, axis):
        return np.repeat(x, rep, axis=axis)

    def vjp(self, node, g):
        return [apply("repeat_grad", [g, node.inputs[0]], **node.attrs)]


@register
class RepeatGrad(Op):
    name = "repeat_grad"
    arity = 2
    attr_names = ("rep", "axis")

    def infer(self, inputs, rep, axis):
        return Type(inputs[0].dtype, inputs[1].shape)

    def ref(self, g, x, rep, axis):
        a = axis % x.ndim
        s = list(x.shape)
        s.insert(a + 1, rep)
        return g.reshape(s).sum(axis=a + 1)

    def vjp(self, node, g):
        return [apply("repeat", [g], **node.attrs), None]


@register
class Pad(Op):
    """Constant padding: ``pads`` is a (lo, hi) pair per axis."""

    name = "pad"
    arity = 1
    attr_names = ("pads", "value")

    def infer(self, inputs, pads, value=0):
        (x,) = inputs
        if len(pads) != x.ndim:
            raise ShapeError(f"pad: {len(pads)} (lo, hi) pairs for a tensor of rank {x.ndim}")
        return Type(x.dtype, tuple(None if d is None else d + lo + hi
                                   for d, (lo, hi) in zip(x.shape, pads)))

    def ref(self, x, pads, value=0):
        return np.pad(x, pads, constant_values=value)

    def vjp(self, node, g):
        spec = tuple(("s", lo, (-hi if hi else None), None) for lo, hi in node.attrs["pads"])
        return [apply("getitem", [g], spec=spec)]


@register
class ShapeOf(Op):
    name = "shape_of"
    arity = 1
    nondifferentiable = True
    shape_only = True

    def infer(self, inputs):
        return Type("int32", (inputs[0].ndim,))

    def ref(self, x):
        return np.asarray(x.shape, dtype=np.int32)


@register
class Count(Op):
    """count(x): the number of elements of ``x`` over ``axes`` (the product of those run-time
    dims) as a scalar of ``dtype``; ``x`` is read for its shape only (a mean's divisor)."""

    name = "count"
    arity = 1
    nondifferentiable = True
    shape_only = True
    attr_names = ("axes", "dtype")

    def infer(self, inputs, axes, dtype):
        (x,) = inputs
        if any(not -x.ndim <= a < x.ndim for a in axes):
            raise ShapeError(f"count: axes {tuple(axes)} out of range for {x}")
        return Type(as_dtype(dtype), ())

    def ref(self, x, axes, dtype):
        n = 1
        for a in axes:
            n *= x.shape[a]
        return np.asarray(n, dtype=dtype)


@register
class Fill(Op):
    """fill(shape_vec): a tensor of the runtime shape ``shape_vec`` filled with ``value``."""

    name = "fill"
    arity = 1
    nondifferentiable = True
    attr_names = ("value", "dtype", "shape")

    def infer(self, inputs, value, dtype, shape):
        return Type(as_dtype(dtype), tuple(shape))

    def ref(self, shape_vec, value, dtype, shape):
        return np.full(tuple(int(s) for s in shape_vec), value, dtype=dtype)


@register
class Arange(Op):
    """arange(start, stop, step) with scalar tensor bounds known only at run time."""

    name = "arange"
    arity = 3
    nondifferentiable = True
    attr_names = ("dtype",)

    def infer(self, inputs, dtype):
        return Type(as_dtype(dtype), (None,))

    def ref(self, start, stop, step, dtype):
        return np.arange(start, stop, step, dtype=dtype)
