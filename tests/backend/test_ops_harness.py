"""The op-test harness itself: it must fail on wrong values, dtypes, shapes and static shapes,
and feed ``None`` dims with several batch sizes on every available device."""

from __future__ import annotations

import os

import numpy as np
import pytest

from symk import backend as K
from tests import harness, np_ref
from tests.harness import Arg, check_op


def test_devices():
    devs = harness.available_devices()
    wanted = os.environ.get("SYMK_TEST_DEVICES")
    must = {"interp", "cpu"} if wanted is None else set(wanted.split(",")) - {"cuda"}
    assert must <= set(devs) <= set(harness.DEVICES), devs


def test_passes_on_a_correct_reference():
    check_op("exp", [(3, 4)])


@pytest.mark.parametrize("kw,msg", [
    ({"ref": np_ref.sin}, "Not equal"),
    ({"ref": lambda x: np_ref.exp(x).astype(np.float64)}, "dtype"),
    ({"out_dtype": "float64"}, "dtype"),
    ({"ref": lambda x: np_ref.exp(x)[:1]}, "shape"),
    ({"ref": lambda x: (np_ref.exp(x), x)}, "outputs"),
])
def test_catches_wrong_results(kw, msg):
    with pytest.raises(AssertionError, match=msg):
        check_op("exp", [(3, 4)], **kw)


def test_catches_a_wrong_static_shape():
    def bad(x):
        out = K.exp(x)
        out._keras_shape = (3, 5)
        return out
    with pytest.raises(AssertionError, match="int_shape"):
        check_op(bad, [(3, 4)], ref=np_ref.exp)


def test_catches_an_unknown_static_dim_for_static_inputs():
    with pytest.raises(AssertionError, match="unknown dims"):
        check_op(lambda x: K.reshape(x, K.shape(x)), [(3, 4)], ref=lambda a: a)


def test_feeds_none_dims_with_each_batch_size():
    seen = []

    def ref(x):
        seen.append(x.shape)
        return np_ref.exp(x)
    check_op("exp", [(4, 3)], ref=ref, batch_sizes=(2, 5))
    assert seen == [(4, 3), (2, 3), (5, 3)]
    seen.clear()
    check_op("exp", [(None, 3, None)], ref=ref, batch_sizes=(2, 6))
    assert seen == [(2, 3, 2), (2, 3, 2), (6, 3, 6)]


def test_args_lists_and_multiple_outputs():
    check_op("concatenate", [(2, 3), (2, 4)], list_input=True, axis=1)
    check_op(lambda x, k: [x * k, -x], [(2, 3), Arg(3.0)], ref=lambda a, k: (a * k, -a))
    check_op(lambda x, y: (x + y, K.cast(x > y, "int32")), [(2, 3), (2, 3)],
             ref=lambda a, b: (a + b, (a > b).astype(np.int32)))
