"""Shape-manipulating K functions against the numpy references of tests/np_ref.py."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.harness import Arg, check_op, ints

ALL = ("float32", "float64", "int32", "bool")


def test_transpose():
    check_op("transpose", [(3, 4)], dtypes=ALL)
    check_op("transpose", [(2, 3, 4)])
    check_op("transpose", [(5,)])


@pytest.mark.parametrize("pattern", [(1, 0, 2), (2, 0, 1), (0, 2, 1), (0, 1, 2)])
def test_permute_dimensions(pattern):
    check_op("permute_dimensions", [(2, 3, 4), Arg(pattern)], dtypes=["float32", "int32"])


def test_gather():
    check_op("gather", [(6, 3), (4,)], dtypes=[("float32", "int32"), ("float64", "int64")],
             gen=[None, ints(0, 6)], batch_none=False)
    check_op("gather", [(6, 3, 2), (2, 5)], dtypes=[("float32", "int32")], gen=[None, ints(0, 6)],
             batch_none=False)
    check_op("gather", [(6,), (None,)], dtypes=[("int32", "int32")], gen=[None, ints(0, 6)])
    check_op("gather", [(None, 3), (4,)], dtypes=[("float32", "int32")], gen=[None, ints(0, 2)])


@pytest.mark.parametrize("axis", [0, 1, -1, 2, -3])
def test_concatenate(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    a = axis % 3
    for k, s in enumerate(shapes):
        s[a] += k
    check_op("concatenate", [tuple(s) for s in shapes], list_input=True, axis=axis,
             dtypes=["float32", "int32"], batch_none=a != 0)


def test_concatenate_default_axis_and_none_batch():
    check_op("concatenate", [(None, 3), (None, 2)], list_input=True)
    check_op("concatenate", [(4, 3)], list_input=True)


def test_concatenate_incompatible():
    with pytest.raises(ValueError):
        K.concatenate([K.placeholder((2, 3)), K.placeholder((3, 3))], axis=1)


@pytest.mark.parametrize("axis", [0, 1, -1, 2])
def test_stack(axis):
    check_op("stack", [(3, 4), (3, 4), (3, 4)], list_input=True, axis=axis,
             dtypes=["float32", "bool"])


def test_stack_default_axis():
    check_op("stack", [(None, 2), (None, 2)], list_input=True)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (-1, 2), (3, -1, 2), (24,), (2, 3, 4)])
def test_reshape(shape):
    check_op("reshape", [(2, 3, 4), Arg(shape)], dtypes=["float32", "int32"], batch_none=False)


def test_reshape_with_batch_none():
    check_op("reshape", [(None, 3, 4), Arg((-1, 12))])
    check_op("reshape", [(None, 6), Arg((-1, 2, 3))])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("rep", [1, 3])
def test_repeat_elements(axis, rep):
    check_op("repeat_elements", [(2, 3, 4), Arg(rep), Arg(axis)], dtypes=["float32", "int32"])


def test_repeat_elements_batch_axis_none():
    check_op("repeat_elements", [(None, 3), Arg(2), Arg(0)])


def test_repeat():
    check_op("repeat", [(3, 4), Arg(5)], dtypes=["float32", "int32"])


@pytest.mark.parametrize("args,kw", [
    ((5,), {}), ((2, 9), {}), ((1, 10, 3), {}), ((-3,), {}), ((10, 2, -2), {}),
    ((0, 5), {"dtype": "float32"}), ((3,), {"dtype": "int64"}),
])
def test_arange(args, kw):
    check_op("arange", [Arg(a) for a in args], **kw)


def test_arange_symbolic_stop():
    n = K.placeholder((), dtype="int32")
    f = K.function([n], [K.arange(n)])
    np.testing.assert_array_equal(f([4])[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(f([0])[0], np.zeros(0))


@pytest.mark.parametrize("n", [2, (2, 3), [1, 2], (2, 1, 3)])
def test_tile(n):
    shape = (2, 3, 4) if isinstance(n, tuple) and len(n) == 3 else (3, 4)
    check_op("tile", [shape, Arg(n)], dtypes=["float32", "int32"], batch_none=False)


def test_tile_batch_none():
    check_op("tile", [(None, 3), Arg((1, 2))])


def test_flatten_batch_flatten():
    check_op("flatten", [(2, 3, 4)], dtypes=ALL)
    check_op("flatten", [(5,)])
    check_op("batch_flatten", [(2, 3, 4)], dtypes=["float32", "int32"])
    check_op("batch_flatten", [(4, 5)])
    check_op("batch_flatten", [(None, None, 2)], static_shape=False)


@pytest.mark.parametrize("axis", [0, 1, -1, 2, -3])
def test_expand_dims(axis):
    check_op("expand_dims", [(3, 4), Arg(axis)], dtypes=["float32", "bool"])


def test_expand_dims_default_axis():
    check_op("expand_dims", [(3, 4)])


@pytest.mark.parametrize("shape,axis", [((3, 1, 4), 1), ((3, 1, 4), -2), ((3, 4, 1), -1),
                                        ((1, 4), 0)])
def test_squeeze(shape, axis):
    check_op("squeeze", [shape, Arg(axis)], dtypes=["float32", "int32"], batch_none=axis != 0)


def test_squeeze_non_unit_axis_fails():
    with pytest.raises(ValueError):
        K.squeeze(K.placeholder((3, 4)), 1)


@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 3, 4)])
def test_one_hot(shape):
    check_op("one_hot", [shape, Arg(4)], dtypes=["int32", "int64"], gen=ints(0, 4))


@pytest.mark.parametrize("axes", [0, 1, -1, [0, 2], (1, -1), [0, 1, 2]])
def test_reverse(axes):
    check_op("reverse", [(2, 3, 4), Arg(axes)], dtypes=["float32", "int32"])


@pytest.mark.parametrize("start,size", [((0, 0), (2, 3)), ((1, 1), (2, 2)), ((1, 0), (-1, 2)),
                                        ((0, 2), (3, -1))])
def test_slice(start, size):
    check_op("slice", [(3, 4), Arg(start), Arg(size)], dtypes=["float32", "int32"],
             batch_none=False)


def test_slice_3d_and_batch_none():
    # (the None-batch variant is fed batches that hold the window: rows 1..2 need 3 or more)
    check_op("slice", [(4, 5, 6), Arg((1, 2, 0)), Arg((2, 3, 6))], batch_sizes=(3, 5))
    check_op("slice", [(None, 5), Arg((0, 1)), Arg((-1, 3))])


@pytest.mark.parametrize("padding", [(1, 1), (0, 2), (3, 0)])
def test_temporal_padding(padding):
    check_op("temporal_padding", [(2, 3, 4)], dtypes=["float32", "int32"], padding=padding)


def test_temporal_padding_default():
    check_op("temporal_padding", [(2, 3, 4)])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((0, 2), (1, 0))])
def test_spatial_2d_padding(fmt, padding):
    check_op("spatial_2d_padding", [(2, 3, 4, 5)], padding=padding, data_format=fmt)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("padding", [((1, 1), (1, 1), (1, 1)), ((0, 2), (1, 0), (2, 1))])
def test_spatial_3d_padding(fmt, padding):
    check_op("spatial_3d_padding", [(2, 3, 2, 4, 3)], padding=padding, data_format=fmt)


def test_spatial_padding_default_data_format():
    check_op("spatial_2d_padding", [(2, 3, 4, 2)])
    K.set_image_data_format("channels_first")
    check_op("spatial_3d_padding", [(2, 3, 2, 4, 3)],
             ref=lambda x: np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1)]))


def test_unknown_dims_everywhere():
    # embedding lookup: int indices of unknown shape into a static table
    check_op("gather", [(10, 4), (None, None)], dtypes=[("float32", "int32")],
             gen=[None, ints(0, 10)])
    check_op("one_hot", [(None, None), Arg(5)], dtypes=["int32"], gen=ints(0, 5))
    check_op("reverse", [(None, None, 2), Arg([0, 1])])
    check_op("slice", [(None, None), Arg((1, 0)), Arg((1, 2))], static_shape=False)
    check_op("tile", [(None, 3), Arg((2, 1))])
    check_op("concatenate", [(None, 3), (None, 3)], list_input=True, axis=0)
    check_op("permute_dimensions", [(None, 3, None), Arg((2, 0, 1))])
    check_op("spatial_2d_padding", [(None, None, None, 3)], padding=((1, 0), (0, 2)))
    check_op("spatial_3d_padding", [(None, 2, None, None, None)], padding=((1, 0), (0, 2), (1, 1)),
             data_format="channels_first")
    check_op("temporal_padding", [(None, None, 3)], padding=(2, 1))
    check_op("expand_dims", [(None, None), Arg(1)])
    check_op("squeeze", [(None, 1, None), Arg(1)])
    check_op("repeat", [(None, 3), Arg(2)])
    check_op("transpose", [(None, None, 4)])
    check_op("flatten", [(None, None, 2)], static_shape=False)
    check_op("reshape", [(None, 4), Arg((-1, 2, 2))])


def test_reshape_with_a_symbolic_dim():
    check_op(lambda x: K.reshape(x, (K.shape(x)[0], -1)), [(None, 2, 3)],
             ref=lambda a: a.reshape(a.shape[0], -1), static_shape=False)
    check_op(lambda x: K.reshape(x, K.stack([K.shape(x)[0] * 2, 3])), [(None, 2, 3)],
             ref=lambda a: a.reshape(-1, 3), static_shape=False)
