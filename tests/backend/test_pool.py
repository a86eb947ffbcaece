"""pool2d, pool3d, resize_images and resize_volumes against naive numpy loops written here,
on every device; K-level gradients against finite differences; errors for bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError, DTypeError, ShapeError
from tests.gradcheck import check_grad, grad_values
from tests.harness import check_op, fixed

FLOATS = ("float32", "float64")


# ---------------------------------------------------------------- naive references


def naive_pool(x, pool_size, strides=None, padding="valid", data_format=None, pool_mode="max"):
    """Loop over output positions; each window is clipped to the input (no padding values)."""
    nsp = x.ndim - 2
    strides = strides or (1,) * nsp
    cf = (data_format or K.image_data_format()) == "channels_first"
    if cf:
        x = np.moveaxis(x, 1, -1)
    sizes, lows = [], []
    for n, k, s in zip(x.shape[1:-1], pool_size, strides):
        if padding == "valid":
            o, lo = (n - k) // s + 1, 0
        else:
            o = math.ceil(n / s)
            lo = max((o - 1) * s + k - n, 0) // 2
        sizes.append(o)
        lows.append(lo)
    out = np.zeros((x.shape[0], *sizes, x.shape[-1]), x.dtype)
    axes = tuple(range(1, nsp + 1))
    for pos in np.ndindex(*sizes):
        sl = []
        for p, k, s, lo, n in zip(pos, pool_size, strides, lows, x.shape[1:-1]):
            start = p * s - lo
            sl.append(slice(max(start, 0), min(start + k, n)))
        win = x[(slice(None), *sl, slice(None))].astype(np.float64)
        red = win.max(axis=axes) if pool_mode == "max" else win.mean(axis=axes)
        out[(slice(None), *pos, slice(None))] = red
    return np.moveaxis(out, -1, 1) if cf else out


def naive_resize(x, factors, data_format, interpolation="nearest"):
    """TensorFlow 1 resize_nearest_neighbor / resize_bilinear (align_corners=False,
    half_pixel_centers=False) written as loops over output positions, one axis at a time."""
    cf = data_format == "channels_first"
    out = np.moveaxis(x, 1, -1) if cf else x
    out = out.astype(np.float64) if interpolation == "bilinear" else out
    for ax, f in enumerate(factors, 1):
        n = out.shape[ax]
        src = np.moveaxis(out, ax, 0)
        res = np.zeros((n * f,) + src.shape[1:], out.dtype)
        for j in range(n * f):
            pos = j * (n / (n * f))
            i0 = int(math.floor(pos))
            if interpolation == "nearest":
                res[j] = src[min(i0, n - 1)]
            else:
                i1 = min(i0 + 1, n - 1)
                t = pos - i0
                res[j] = src[i0] + (src[i1] - src[i0]) * t
        out = np.moveaxis(res, 0, ax)
    out = out.astype(x.dtype if x.dtype.kind == "f" else K.floatx()) \
        if interpolation == "bilinear" else out
    return np.moveaxis(out, -1, 1) if cf else out


def _ref_resize_images(x, height_factor, width_factor, data_format, interpolation="nearest"):
    return naive_resize(x, (height_factor, width_factor), data_format, interpolation)


def _ref_resize_volumes(x, depth_factor, height_factor, width_factor, data_format):
    return naive_resize(x, (depth_factor, height_factor, width_factor), data_format)


def _cf(shape, fmt):
    """A channels_last shape moved to channels_first when ``fmt`` asks for it."""
    return shape if fmt == "channels_last" else (shape[0], shape[-1], *shape[1:-1])


# ---------------------------------------------------------------- pool2d / pool3d

POOL2D = [
    # (input NHWC, pool_size, strides)
    ((2, 6, 6, 3), (2, 2), (2, 2)),
    ((2, 7, 5, 2), (3, 3), (2, 2)),     # odd sizes, overlapping windows
    ((1, 5, 8, 4), (2, 3), (1, 2)),     # rectangular window, unequal strides
    ((3, 4, 4, 1), (4, 4), (1, 1)),     # window == input
    ((2, 9, 7, 2), (3, 2), (3, 3)),     # stride == window along rows
    ((2, 5, 5, 3), (1, 1), (2, 2)),     # 1x1 window: strided subsampling
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape,pool,strides", POOL2D)
def test_pool2d(shape, pool, strides, fmt, padding, mode):
    check_op("pool2d", [_cf(shape, fmt)], ref=naive_pool, dtypes=FLOATS, pool_size=pool,
             strides=strides, padding=padding, data_format=fmt, pool_mode=mode)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2d_unknown_spatial_dims(mode):
    # every None dim is fed with the batch sizes 4 and 7 (the spatial dims too)
    for fmt, shape in (("channels_last", (None, None, None, 3)),
                       ("channels_first", (None, 2, None, None))):
        check_op("pool2d", [shape], ref=naive_pool, pool_size=(2, 3), strides=(2, 1),
                 padding="same", data_format=fmt, pool_mode=mode, batch_sizes=(4, 7))


def test_pool2d_defaults_and_int_arguments():
    check_op("pool2d", [(2, 4, 6, 3)], ref=naive_pool, pool_size=(2, 2))
    check_op("pool2d", [(2, 5, 6, 3)], ref=lambda x, *a, **k: naive_pool(x, (2, 2), (2, 2)),
             pool_size=2, strides=2)
    old = K.image_data_format()
    K.set_image_data_format("channels_first")
    try:
        check_op("pool2d", [(2, 3, 5, 6)], ref=naive_pool, pool_size=(2, 2), strides=(2, 2),
                 padding="same", pool_mode="avg")
    finally:
        K.set_image_data_format(old)


def test_pool2d_max_of_ints_and_negative_values():
    # a max over windows that hang over the edge must not see the padding (all values < 0)
    x = -np.arange(1, 2 * 5 * 5 + 1, dtype=np.float32).reshape(1, 5, 5, 2)
    out = check_op("pool2d", [(1, 5, 5, 2)], ref=naive_pool, gen=fixed(x), pool_size=(3, 3),
                   strides=(2, 2), padding="same")
    assert out[0].max() < 0
    check_op("pool2d", [(2, 5, 4, 2)], ref=naive_pool, dtypes=("int32",), pool_size=(2, 2),
             strides=(1, 2), padding="same")


POOL3D = [
    ((2, 4, 4, 4, 2), (2, 2, 2), (2, 2, 2)),
    ((1, 5, 3, 6, 3), (3, 2, 2), (2, 1, 3)),
    ((2, 3, 5, 4, 1), (1, 3, 2), (1, 2, 2)),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape,pool,strides", POOL3D)
def test_pool3d(shape, pool, strides, fmt, padding, mode):
    check_op("pool3d", [_cf(shape, fmt)], ref=naive_pool, pool_size=pool, strides=strides,
             padding=padding, data_format=fmt, pool_mode=mode)


def test_pool_static_shapes():
    x = K.placeholder((None, 7, None, 3))
    assert K.int_shape(K.pool2d(x, (2, 2), (2, 2), "valid")) == (None, 3, None, 3)
    assert K.int_shape(K.pool2d(x, (2, 2), (2, 2), "same")) == (None, 4, None, 3)
    xc = K.placeholder((None, 3, 7, 9))
    assert K.int_shape(K.pool2d(xc, (3, 2), (2, 3), "same", "channels_first")) == \
        (None, 3, 4, 3)
    v = K.placeholder((2, 5, 6, 7, 4))
    assert K.int_shape(K.pool3d(v, (2, 3, 2), (2, 2, 3), "valid", pool_mode="avg")) == \
        (2, 2, 2, 2, 4)


def test_pool_errors():
    x = K.placeholder((2, 4, 4, 3))
    with pytest.raises(ArgumentError, match="pool_mode"):
        K.pool2d(x, (2, 2), pool_mode="median")
    with pytest.raises(ArgumentError, match="padding"):
        K.pool2d(x, (2, 2), padding="full")
    with pytest.raises(ArgumentError, match="data_format"):
        K.pool2d(x, (2, 2), data_format="NHWC")
    with pytest.raises(ArgumentError, match="pool_size"):
        K.pool2d(x, (2, 2, 2))
    with pytest.raises(ArgumentError, match="strides"):
        K.pool2d(x, (2, 2), strides=(0, 1))
    with pytest.raises(ShapeError, match="rank 4"):
        K.pool2d(K.placeholder((2, 4, 3)), (2, 2))
    with pytest.raises(ShapeError, match="rank 5"):
        K.pool3d(x, (2, 2, 2))
    with pytest.raises(ShapeError, match="does not fit"):
        K.pool2d(x, (5, 2))
    with pytest.raises(DTypeError, match="float"):
        K.pool2d(K.placeholder((2, 4, 4, 3), dtype="int32"), (2, 2), pool_mode="avg")
    # a window larger than a dim known only at run time fails when the function runs
    xd = K.placeholder((None, None, 4, 3))
    f = K.function([xd], [K.pool2d(xd, (3, 2))])
    with pytest.raises(ShapeError, match="does not fit"):
        f([np.zeros((1, 2, 4, 3), np.float32)])


# ---------------------------------------------------------------- pool gradients


POOL_GRADS = [
    ((2, 5, 5, 2), (2, 2), (2, 2), "valid"),
    ((1, 5, 4, 2), (3, 3), (2, 1), "same"),   # overlapping windows, padded edges
    ((2, 3, 4, 1), (2, 3), (1, 2), "same"),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape,pool,strides,padding", POOL_GRADS)
def test_pool2d_gradient(shape, pool, strides, padding, mode):
    check_grad("pool2d", [shape], pool_size=pool, strides=strides, padding=padding,
               pool_mode=mode)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2d_gradient_channels_first_dynamic(mode):
    check_grad("pool2d", [(2, 2, 5, 4)], dynamic=True, pool_size=(2, 2), strides=(2, 1),
               padding="same", data_format="channels_first", pool_mode=mode)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool3d_gradient(mode):
    check_grad("pool3d", [(1, 3, 4, 3, 2)], pool_size=(2, 2, 2), strides=(1, 2, 2),
               padding="same", pool_mode=mode)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool3d_gradient_channels_first_valid(mode):
    check_grad("pool3d", [(1, 2, 5, 3, 4)], pool_size=(2, 2, 3), strides=(2, 1, 1),
               padding="valid", data_format="channels_first", pool_mode=mode)


def test_pool_second_order_gradient():
    """d/dx of sum((d sum(pool(x) * w) / dx) * x): exercises the gradient of the gradients
    (max_pool_grad -> max_pool_select, avg_pool_grad -> pool)."""
    for mode in ("max", "avg"):
        def f(x, mode=mode):
            y = K.pool2d(x * x, (2, 2), (1, 1), "same", pool_mode=mode)
            g = K.gradients(K.sum(y * y), [x])[0]
            return g * x
        check_grad(f, [(1, 3, 4, 2)], low=0.2, high=2.0)


def test_max_pool_gradient_ties_go_to_first_position():
    # a constant window: the whole gradient goes to its first (row-major) element
    x = np.ones((1, 4, 4, 1))
    (g,) = grad_values(lambda t: K.pool2d(t, (2, 2), (2, 2)), [x])
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    np.testing.assert_array_equal(g[0, :, :, 0], want)
    # overlapping windows sharing one maximum add their gradients there
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 5.0
    (g,) = grad_values(lambda t: K.pool2d(t, (2, 2), (1, 1)), [x])
    assert g[0, 1, 1, 0] == 4 and g.sum() == 4


# ---------------------------------------------------------------- resizing


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape,fh,fw", [((2, 3, 4, 2), 2, 3), ((1, 1, 5, 3), 3, 1),
                                          ((2, 4, 3, 1), 1, 2)])
def test_resize_images(shape, fh, fw, fmt, interp):
    check_op("resize_images", [_cf(shape, fmt)], ref=_ref_resize_images, dtypes=FLOATS,
             height_factor=fh, width_factor=fw, data_format=fmt, interpolation=interp)


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
def test_resize_images_unknown_spatial_dims_and_ints(interp):
    check_op("resize_images", [(None, None, None, 2)], ref=_ref_resize_images,
             height_factor=2, width_factor=3, data_format="channels_last",
             interpolation=interp, batch_sizes=(3, 4))
    check_op("resize_images", [(None, 2, None, None)], ref=_ref_resize_images,
             height_factor=3, width_factor=2, data_format="channels_first",
             interpolation=interp, batch_sizes=(3, 4))
    check_op("resize_images", [(2, 3, 3, 2)], ref=_ref_resize_images, dtypes=("int32",),
             height_factor=2, width_factor=2, data_format="channels_last",
             interpolation=interp)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_resize_volumes(fmt):
    check_op("resize_volumes", [_cf((2, 2, 3, 4, 2), fmt)], ref=_ref_resize_volumes,
             dtypes=("float32", "int32"), depth_factor=2, height_factor=1, width_factor=3,
             data_format=fmt)


def test_resize_static_shapes_and_errors():
    x = K.placeholder((None, 3, None, 2))
    assert K.int_shape(K.resize_images(x, 2, 3, "channels_last")) == (None, 6, None, 2)
    assert K.int_shape(K.resize_images(x, 2, 3, "channels_last", "bilinear")) == \
        (None, 6, None, 2)
    assert K.int_shape(K.resize_images(x, 2, 3, "channels_first")) == (None, 3, None, 6)
    v = K.placeholder((2, 2, 3, 4, 5))
    assert K.int_shape(K.resize_volumes(v, 2, 3, 4, "channels_first")) == (2, 2, 6, 12, 20)
    with pytest.raises(ArgumentError, match="interpolation"):
        K.resize_images(x, 2, 2, "channels_last", interpolation="bicubic")
    with pytest.raises(ArgumentError, match="height_factor"):
        K.resize_images(x, 0, 2, "channels_last")
    with pytest.raises(ArgumentError, match="width_factor"):
        K.resize_images(x, 2, 1.5, "channels_last")
    with pytest.raises(ArgumentError, match="data_format"):
        K.resize_volumes(v, 2, 2, 2, "NDHWC")
    with pytest.raises(ShapeError, match="rank 5"):
        K.resize_volumes(x, 2, 2, 2, "channels_last")


@pytest.mark.parametrize("interp", ["nearest", "bilinear"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_resize_images_gradient(fmt, interp):
    check_grad("resize_images", [(2, 3, 2, 2)], height_factor=2, width_factor=3,
               data_format=fmt, interpolation=interp)


def test_resize_gradient_dynamic():
    check_grad("resize_images", [(1, 3, 2, 2)], dynamic=True, height_factor=3,
               width_factor=2, data_format="channels_last", interpolation="bilinear")
    check_grad("resize_volumes", [(1, 2, 2, 3, 1)], dynamic=True, depth_factor=2,
               height_factor=1, width_factor=2, data_format="channels_last")


def test_resize_volumes_gradient_channels_first():
    check_grad("resize_volumes", [(1, 2, 3, 2, 2)], depth_factor=3, height_factor=2,
               width_factor=1, data_format="channels_first")


def test_max_pool_gradient_keeps_inf_at_the_maximum_only():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.ones((1, 2, 2, 1))
    w[0, 0, 0, 0] = np.inf
    (g,) = grad_values(lambda t: K.pool2d(t, (2, 2), (2, 2)), [x], weights=w)
    want = np.zeros((4, 4))
    want[1, 1], want[1, 3], want[3, 1], want[3, 3] = np.inf, 1, 1, 1
    np.testing.assert_array_equal(g[0, :, :, 0], want)
