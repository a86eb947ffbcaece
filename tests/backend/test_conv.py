"""Convolutions of the K API against naive numpy loops written here (TensorFlow semantics:
cross-correlation, SAME puts the odd pixel at the end, causal pads in front), on every device,
both data formats, odd sizes, strides, dilations and a None batch dim; static shapes against
Keras's output-length formulas; clear errors for bad arguments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError, ShapeError, SymkError
from tests.harness import Arg, check_op

F64 = ("float64",)


# ---------------------------------------------------------------- naive references


def _tf_pads(n, k, s, d, padding):
    """(lo, hi) of one dim, written from TensorFlow's documented SAME rule."""
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return d * (k - 1), 0
    out = (n + s - 1) // s
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
    return total // 2, total - total // 2


def _cl(x, fmt):
    return x if fmt == "channels_last" else np.moveaxis(x, 1, -1)


def _cf(y, fmt):
    return y if fmt == "channels_last" else np.moveaxis(y, -1, 1)


def naive_conv(x, kernel, strides, padding, fmt, dilation, groups=1):
    """Channels-last loop over output positions and kernel taps."""
    x = _cl(np.asarray(x, np.float64), fmt)
    nsp = x.ndim - 2
    ks = kernel.shape[:nsp]
    pads = [_tf_pads(x.shape[1 + i], ks[i], strides[i], dilation[i], padding)
            for i in range(nsp)]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = [(xp.shape[1 + i] - (ks[i] - 1) * dilation[i] - 1) // strides[i] + 1
           for i in range(nsp)]
    cg, f = kernel.shape[-2], kernel.shape[-1]
    m = f // groups
    y = np.zeros((x.shape[0], *out, f))
    for o in itertools.product(*map(range, out)):
        for t in itertools.product(*map(range, ks)):
            pix = xp[(slice(None), *(o[i] * strides[i] + t[i] * dilation[i]
                                     for i in range(nsp)))]
            for g in range(groups):
                y[(slice(None), *o, slice(g * m, (g + 1) * m))] += \
                    pix[:, g * cg:(g + 1) * cg] @ kernel[t][:, g * m:(g + 1) * m]
    return _cf(y, fmt)


def ref_conv(nsp):
    def ref(x, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        fmt = data_format or "channels_last"
        st = (strides,) * nsp if isinstance(strides, int) else strides
        dl = (dilation_rate,) * nsp if isinstance(dilation_rate, int) else dilation_rate
        return naive_conv(x, kernel, st, padding, fmt, dl)
    return ref


def ref_depthwise(x, dk, strides=(1, 1), padding="valid", data_format=None,
                  dilation_rate=(1, 1)):
    c, m = dk.shape[-2:]
    kernel = dk.reshape(dk.shape[:-2] + (1, c * m))
    return naive_conv(x, kernel, strides, padding, data_format or "channels_last",
                      dilation_rate, groups=c)


def ref_separable(nsp):
    def ref(x, dk, pk, strides=1, padding="valid", data_format=None, dilation_rate=1):
        fmt = data_format or "channels_last"
        st = (strides,) * nsp if isinstance(strides, int) else strides
        dl = (dilation_rate,) * nsp if isinstance(dilation_rate, int) else dilation_rate
        c, m = dk.shape[-2:]
        y = _cl(naive_conv(x, dk.reshape(dk.shape[:-2] + (1, c * m)), st, padding, fmt, dl,
                           groups=c), fmt)
        return _cf(y @ pk.reshape(pk.shape[-2:]), fmt)
    return ref


def ref_transpose(nsp):
    """Scatter every input pixel through the kernel (kernel: (*K, out_c, in_c))."""
    def ref(x, kernel, output_shape, strides=(1,) * nsp, padding="valid", data_format=None,
            dilation_rate=(1,) * nsp):
        fmt = data_format or "channels_last"
        x = _cl(np.asarray(x, np.float64), fmt)
        shape = list(output_shape)
        if fmt == "channels_first":
            shape = [shape[0], *shape[2:], shape[1]]
        sp = shape[1:-1]
        ks = kernel.shape[:nsp]
        pads = [_tf_pads(sp[i], ks[i], strides[i], dilation_rate[i], padding)
                for i in range(nsp)]
        full = [sp[i] + sum(pads[i]) for i in range(nsp)]
        y = np.zeros((x.shape[0], *full, kernel.shape[-2]))
        for o in itertools.product(*map(range, x.shape[1:-1])):
            for t in itertools.product(*map(range, ks)):
                pos = tuple(o[i] * strides[i] + t[i] * dilation_rate[i] for i in range(nsp))
                y[(slice(None), *pos)] += x[(slice(None), *o)] @ kernel[t].T
        crop = (slice(None), *(slice(lo, lo + s) for (lo, _), s in zip(pads, sp)))
        return _cf(y[crop], fmt)
    return ref


def ref_local1d(x, kernel, kernel_size, strides, data_format=None):
    out_len, _, f = kernel.shape
    k, s = kernel_size[0], strides[0]
    y = np.zeros((x.shape[0], out_len, f))
    for o in range(out_len):
        y[:, o] = x[:, o * s:o * s + k, :].reshape(x.shape[0], -1) @ kernel[o]
    return y


def ref_local2d(x, kernel, kernel_size, strides, output_shape, data_format=None):
    fmt = data_format or "channels_last"
    rows, cols = output_shape
    f = kernel.shape[-1]
    y = np.zeros((x.shape[0], rows, cols, f))
    for i, j in itertools.product(range(rows), range(cols)):
        r = slice(i * strides[0], i * strides[0] + kernel_size[0])
        c = slice(j * strides[1], j * strides[1] + kernel_size[1])
        patch = x[:, :, r, c] if fmt == "channels_first" else x[:, r, c, :]
        y[:, i, j] = patch.reshape(x.shape[0], -1) @ kernel[i * cols + j]
    return _cf(y, fmt)


# ---------------------------------------------------------------- value checks

FMTS = ("channels_last", "channels_first")


def _x(shape_last, fmt):
    """A placeholder shape (None batch) in ``fmt`` from a channels-last shape."""
    shp = (None, *shape_last[1:])
    return shp if fmt == "channels_last" else (None, shp[-1], *shp[1:-1])


@pytest.mark.parametrize("fmt,padding,strides,dilation", [
    (fmt, *case) for case in [("valid", 1, 1), ("same", 2, 1), ("same", 1, 2), ("valid", 3, 1),
                              ("causal", 1, 2), ("same", 3, 1)] for fmt in FMTS
    if not (case[0] == "causal" and fmt == "channels_first")])  # an error test covers that
def test_conv1d(fmt, padding, strides, dilation):
    check_op("conv1d", [_x((0, 11, 3), fmt), (3, 3, 4)], ref=ref_conv(1), dtypes=F64,
             strides=strides, padding=padding, data_format=fmt, dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,dilation,ksize", [
    ("valid", (1, 1), (1, 1), (3, 3)), ("same", (2, 2), (1, 1), (3, 2)),
    ("same", (1, 1), (2, 3), (3, 3)), ("valid", (2, 3), (1, 1), (2, 4)),
    ("same", (3, 2), (1, 1), (4, 4)), ("valid", (1, 1), (2, 1), (1, 2))])
def test_conv2d(fmt, padding, strides, dilation, ksize):
    check_op("conv2d", [_x((0, 9, 10, 3), fmt), (*ksize, 3, 5)], ref=ref_conv(2), dtypes=F64,
             strides=strides, padding=padding, data_format=fmt, dilation_rate=dilation)


def test_conv2d_float32_default_args():
    out = check_op("conv2d", [(None, 7, 6, 4), (3, 3, 4, 8)], ref=ref_conv(2), rtol=1e-5,
                   out_dtype="float32",
                   atol=1e-5)
    assert out[0].dtype == np.float32


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", (1, 1, 1), (1, 1, 1)), ("same", (2, 1, 2), (1, 1, 1)),
    ("same", (1, 1, 1), (2, 1, 2))])
def test_conv3d(fmt, padding, strides, dilation):
    check_op("conv3d", [_x((0, 5, 6, 7, 2), fmt), (3, 2, 3, 2, 3)], ref=ref_conv(3),
             dtypes=F64, strides=strides, padding=padding, data_format=fmt,
             dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,dilation,mult", [
    ("valid", (1, 1), (1, 1), 1), ("same", (2, 1), (1, 1), 2), ("same", (1, 1), (2, 2), 3)])
def test_depthwise_conv2d(fmt, padding, strides, dilation, mult):
    check_op("depthwise_conv2d", [_x((0, 8, 7, 3), fmt), (3, 3, 3, mult)], ref=ref_depthwise,
             dtypes=F64, strides=strides, padding=padding, data_format=fmt,
             dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", (1, 1), (1, 1)), ("same", (2, 2), (1, 1)), ("same", (1, 1), (2, 1))])
def test_separable_conv2d(fmt, padding, strides, dilation):
    check_op("separable_conv2d", [_x((0, 8, 9, 3), fmt), (3, 3, 3, 2), (1, 1, 6, 4)],
             ref=ref_separable(2), dtypes=F64, strides=strides, padding=padding,
             data_format=fmt, dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", 1, 1), ("same", 2, 1), ("same", 1, 2)])
def test_separable_conv1d(fmt, padding, strides, dilation):
    check_op("separable_conv1d", [_x((0, 10, 3), fmt), (3, 3, 2), (1, 6, 5)],
             ref=ref_separable(1), dtypes=F64, strides=strides, padding=padding,
             data_format=fmt, dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,out_sp,dilation", [
    ("valid", (1, 1), (7, 8), (1, 1)), ("same", (2, 2), (10, 12), (1, 1)),
    ("same", (2, 3), (9, 14), (1, 1)), ("valid", (2, 2), (12, 14), (1, 1)),
    ("valid", (1, 1), (9, 10), (2, 2)), ("same", (1, 1), (5, 6), (2, 1))])
def test_conv2d_transpose(fmt, padding, strides, out_sp, dilation):
    ref = ref_transpose(2)
    x_sp = [-(-o // s) if padding == "same" else (o - (3 - 1) * d - 1) // s + 1
            for o, s, d in zip(out_sp, strides, dilation)]
    oshape = (None, *out_sp, 2) if fmt == "channels_last" else (None, 2, *out_sp)
    check_op("conv2d_transpose", [_x((0, *x_sp, 4), fmt), (3, 3, 2, 4), Arg(oshape)],
             ref=lambda x, k, o, **kw: ref(x, k, o, **kw), dtypes=F64, strides=strides,
             padding=padding, data_format=fmt, dilation_rate=dilation)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("padding,strides,out_sp", [
    ("valid", (1, 1, 1), (5, 4, 6)), ("same", (2, 1, 2), (6, 3, 5))])
def test_conv3d_transpose(fmt, padding, strides, out_sp):
    ref = ref_transpose(3)
    x_sp = [-(-o // s) if padding == "same" else (o - 2 - 1) // s + 1
            for o, s in zip(out_sp, strides)]
    oshape = (None, *out_sp, 2) if fmt == "channels_last" else (None, 2, *out_sp)
    check_op("conv3d_transpose", [_x((0, *x_sp, 3), fmt), (3, 3, 3, 2, 3), Arg(oshape)],
             ref=lambda x, k, o, **kw: ref(x, k, o, **kw), dtypes=F64, strides=strides,
             padding=padding, data_format=fmt)


def test_conv2d_transpose_symbolic_output_shape():
    """Keras's Conv2DTranspose passes the batch size (and spatial sizes computed from
    K.shape) as tensors; unknown spatial sizes are resolved at run time."""
    ref = ref_transpose(2)
    kern = np.random.default_rng(1).standard_normal((3, 3, 2, 4))
    for spatial in [(5, 6), (None, None)]:
        x = K.placeholder((None, *spatial, 4), dtype="float64")
        s = K.shape(x)
        out_shape = (s[0], s[1] * 2 + 1, s[2] * 2 + 1, 2)
        y = K.conv2d_transpose(x, K.constant(kern, dtype="float64"), out_shape, strides=(2, 2))
        assert K.int_shape(y) == ((None, 11, 13, 2) if spatial[0] else (None, None, None, 2))
        xv = np.random.default_rng(2).standard_normal((3, 5, 6, 4))
        got = K.function([x], [y])([xv])[0]
        np.testing.assert_allclose(got, ref(xv, kern, (3, 11, 13, 2), strides=(2, 2)),
                                   rtol=1e-10, atol=1e-10)


def test_conv2d_same_unknown_spatial():
    """SAME padding with strides on unknown spatial dims is resolved when the shape is fed."""
    kern = np.random.default_rng(3).standard_normal((3, 2, 3, 2))
    x = K.placeholder((None, None, None, 3), dtype="float64")
    y = K.conv2d(x, K.constant(kern, dtype="float64"), strides=(2, 3), padding="same")
    assert K.int_shape(y) == (None, None, None, 2)
    f = K.function([x], [y])
    for shape in [(2, 7, 8, 3), (1, 4, 9, 3)]:
        xv = np.random.default_rng(4).standard_normal(shape)
        np.testing.assert_allclose(f([xv])[0], naive_conv(xv, kern, (2, 3), "same",
                                                          "channels_last", (1, 1)),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("strides", [(1,), (2,)])
def test_local_conv1d(strides):
    out_len = (11 - 3) // strides[0] + 1
    check_op("local_conv1d", [(None, 11, 3), (out_len, 9, 4), Arg((3,)), Arg(strides)],
             ref=ref_local1d, dtypes=F64)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("strides", [(1, 1), (2, 3)])
def test_local_conv2d(fmt, strides):
    ks = (3, 2)
    out_sp = ((7 - ks[0]) // strides[0] + 1, (8 - ks[1]) // strides[1] + 1)
    check_op("local_conv2d", [_x((0, 7, 8, 3), fmt), (out_sp[0] * out_sp[1], 18, 4), Arg(ks),
                              Arg(strides), Arg(out_sp)],
             ref=ref_local2d, dtypes=F64, data_format=fmt)


# ---------------------------------------------------------------- static shapes


def keras_conv_output_length(n, k, padding, s, d=1):
    """keras.utils.conv_utils.conv_output_length."""
    dk = k + (k - 1) * (d - 1)
    if padding in ("same", "causal"):
        length = n
    else:
        length = n - dk + 1
    return (length + s - 1) // s


@pytest.mark.parametrize("n,k,s,d", list(itertools.product((5, 8, 13), (1, 3, 4), (1, 2, 3),
                                                           (1, 2))))
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_int_shape_matches_keras(n, k, s, d, padding):
    if padding == "valid" and n < (k - 1) * d + 1:
        return
    x = K.placeholder((None, n, n + 1, 2))
    y = K.conv2d(x, K.placeholder((k, k, 2, 3)), strides=(s, s), padding=padding,
                 dilation_rate=(d, d))
    assert K.int_shape(y) == (None, keras_conv_output_length(n, k, padding, s, d),
                              keras_conv_output_length(n + 1, k, padding, s, d), 3)
    y1 = K.conv1d(K.placeholder((None, n, 2)), K.placeholder((k, 2, 3)), strides=s,
                  padding="causal", dilation_rate=d)
    assert K.int_shape(y1) == (None, keras_conv_output_length(n, k, "causal", s, d), 3)


# ---------------------------------------------------------------- errors


def test_errors():
    x = K.placeholder((None, 8, 8, 3))
    k = K.placeholder((3, 3, 3, 4))
    with pytest.raises(ArgumentError, match="padding"):
        K.conv2d(x, k, padding="full")
    with pytest.raises(ArgumentError, match="data_format"):
        K.conv2d(x, k, data_format="NHWC")
    with pytest.raises(ShapeError, match="channels"):
        K.conv2d(x, K.placeholder((3, 3, 5, 4)))
    with pytest.raises(ShapeError, match="channels"):
        K.conv2d(x, k, data_format="channels_first")
    with pytest.raises(ShapeError, match="rank"):
        K.conv2d(x, K.placeholder((3, 3, 4)))
    with pytest.raises(ShapeError, match="rank"):
        K.conv3d(x, k)
    with pytest.raises(ArgumentError, match="strides"):
        K.conv2d(x, k, strides=(1, 2, 3))
    with pytest.raises(ArgumentError, match="dilation_rate"):
        K.conv2d(x, k, dilation_rate=0)
    with pytest.raises(ShapeError, match="empty output|smaller"):
        K.conv2d(x, K.placeholder((9, 3, 3, 4)))
    with pytest.raises(ArgumentError, match="causal"):
        K.conv1d(K.placeholder((None, 3, 8)), K.placeholder((2, 3, 4)), padding="causal",
                 data_format="channels_first")
    with pytest.raises(ArgumentError, match="padding"):
        K.conv2d(x, k, padding="causal")
    with pytest.raises(ShapeError, match="depthwise_kernel"):
        K.depthwise_conv2d(x, K.placeholder((3, 3, 2, 1)))
    with pytest.raises(ShapeError, match="pointwise_kernel"):
        K.separable_conv2d(x, K.placeholder((3, 3, 3, 2)), K.placeholder((1, 1, 5, 4)))
    with pytest.raises(ShapeError, match="output_shape|spatial"):
        K.conv2d_transpose(K.placeholder((None, 4, 4, 4)), K.placeholder((3, 3, 2, 4)),
                           (None, 20, 20, 2))
    with pytest.raises(ShapeError, match="channels"):
        K.conv2d_transpose(K.placeholder((None, 4, 4, 4)), K.placeholder((3, 3, 2, 4)),
                           (None, 6, 6, 3))
    with pytest.raises(ShapeError, match="kernel"):
        K.local_conv1d(K.placeholder((None, 10, 3)), K.placeholder((4, 8, 2)), (3,), (2,))


def test_error_names_user_function():
    x = K.placeholder((None, 8, 8, 3))
    with pytest.raises(SymkError, match=r"K\.conv2d"):
        K.conv2d(x, K.placeholder((3, 3, 5, 4)))


def test_runtime_transpose_mismatch():
    """A fed input that does not convolve back to the requested output size is rejected."""
    x = K.placeholder((None, None, None, 4), dtype="float64")
    s = K.shape(x)
    y = K.conv2d_transpose(x, K.constant(np.ones((3, 3, 2, 4))), (s[0], 9, s[2] + 2, 2))
    f = K.function([x], [y])
    assert f([np.ones((1, 7, 5, 4))])[0].shape == (1, 9, 7, 2)
    with pytest.raises(SymkError, match="spatial"):
        f([np.ones((1, 6, 5, 4))])


@pytest.mark.parametrize("device", ["cpu", "interp"])
@pytest.mark.parametrize("fn, xs, ws", [(K.conv1d, (2, 5, 0), (3, 0, 4)),
                                        (K.conv2d, (2, 5, 5, 0), (3, 3, 0, 4))])
def test_zero_input_channels_give_zeros_and_their_gradients(device, fn, xs, ws):
    """An empty sum over channels: zeros, like numpy's einsum over an empty axis (the
    few-taps rewrite and the im2col path used to crash on it)."""
    x = K.placeholder(xs)
    w = K.variable(np.zeros(ws, np.float32))
    y = fn(x, w)
    gx, gw = K.gradients(K.sum(y * y) + K.sum(x), [x, w])
    f = K.function([x], [y, gx, gw], device=device)
    out, dx, dw = f([np.ones(xs, np.float32)])
    want_sp = tuple(n - k + 1 for n, k in zip(xs[1:-1], ws[:-2]))
    assert out.shape == (xs[0], *want_sp, ws[-1]) and not out.any()
    assert dw.shape == ws
    np.testing.assert_array_equal(dx, np.ones(xs, np.float32))  # (only sum(x) reaches x)


def test_a_kernel_of_spatial_size_zero_is_a_shape_error():
    x = K.placeholder((2, 5, 3))
    y = K.conv1d(x, K.variable(np.zeros((0, 3, 4), np.float32)))
    with pytest.raises(ShapeError, match="at least 1"):
        K.function([x], [y])([np.ones((2, 5, 3), np.float32)])
