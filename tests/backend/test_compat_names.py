"""Backend names only one reference backend has (TensorFlow session/initialization helpers,
Theano's pattern_broadcast), aliases, in_top_k; and the whole public name list of Keras
2.3.1's tensorflow and theano backends, parsed from their source files."""

from __future__ import annotations

import ast
import importlib.util
import os

import numpy as np
import pytest

from symk import backend as K
from symk import config
from symk.errors import ArgumentError, ShapeError, SymkError
from tests.harness import available_devices, check_op, fixed, ints

#: Theano-only private CTC helpers (the CTC family implements ctc_batch_cost/ctc_decode)
_NOT_PUBLIC_API = {"ctc_cost", "ctc_create_skip_idxs", "ctc_interleave_blanks",
                   "ctc_path_probs", "ctc_update_log_p"}


def _backend_source_names(module: str) -> set[str]:
    spec = importlib.util.find_spec("keras")
    if spec is None or spec.origin is None:
        pytest.skip("keras is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "backend", module)
    with open(path) as f:
        tree = ast.parse(f.read())
    return {s.name for s in tree.body
            if isinstance(s, ast.FunctionDef) and not s.name.startswith("_")}


@pytest.mark.parametrize("module", ["tensorflow_backend.py", "theano_backend.py"])
def test_every_public_function_of_the_reference_backends_exists(module):
    missing = sorted(_backend_source_names(module) - set(dir(K)) - _NOT_PUBLIC_API)
    assert missing == []


def test_aliases_and_tensorflow_helpers():
    x = K.variable(np.zeros((2, 3)))
    assert K.get_variable_shape(x) == (2, 3)
    assert K.is_symbolic(K.placeholder((2,))) and K.is_symbolic(x)
    assert not K.is_symbolic(np.zeros(2)) and not K.is_symbolic(3.0)
    K.manual_variable_initialization(True)
    K.manual_variable_initialization(False)
    K.v1_variable_initialization()
    with pytest.raises(SymkError, match="session"):
        K.get_session()
    with pytest.raises(SymkError, match="session"):
        K.set_session(None)


def test_pattern_broadcast():
    x = K.placeholder((None, 1, None))
    y = K.pattern_broadcast(x, (False, True, True))
    assert K.int_shape(y) == (None, 1, 1)
    v = np.arange(3.0, dtype=np.float32).reshape(3, 1, 1)
    # the now-static size 1 broadcasts against another tensor
    z = y + K.placeholder((None, 2, 4))
    out = K.function([x], [y])([v])[0]
    np.testing.assert_array_equal(out, v)
    assert K.int_shape(z) == (None, 2, 4)
    with pytest.raises(ShapeError, match="must be 1"):
        K.function([x], [y])([np.zeros((3, 1, 2), np.float32)])
    with pytest.raises(ShapeError, match="size 3"):
        K.pattern_broadcast(K.placeholder((2, 3)), (False, True))
    with pytest.raises(ArgumentError, match="flags"):
        K.pattern_broadcast(K.placeholder((2, 3)), (True,))


def np_in_top_k(predictions, targets, k):
    """Target's prediction is among the k largest (a tie with the k-th value counts in, as
    in TensorFlow's in_top_k)."""
    out = np.zeros(len(targets), bool)
    for i, (row, t) in enumerate(zip(predictions, targets)):
        kth = np.sort(row)[::-1][min(k, len(row)) - 1] if k > 0 else np.inf
        out[i] = row[t] >= kth
    return out


@pytest.mark.parametrize("k", [1, 2, 5])
def test_in_top_k(k):
    check_op("in_top_k", [(6, 5), (6,)], ref=np_in_top_k, dtypes=[("float32", "int32")],
             gen=[None, ints(0, 5)], k=k)


def test_in_top_k_ties():
    p = np.array([[0.1, 0.5, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3], [0.9, 0.1, 0.0, 0.0]])
    t = np.array([2, 3, 1])
    out = check_op("in_top_k", [(3, 4), (3,)], ref=np_in_top_k,
                   dtypes=[("float32", "int64")], gen=[fixed(p), fixed(t)], k=1)
    np.testing.assert_array_equal(out[0], [True, True, False])


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_in_top_k_ties_straddling_k(k):
    """Keras's backend_test case: half of each row tied with the target's score, so the tied
    group straddles the k-th place for some k; the whole group counts as in (TensorFlow)."""
    p = np.array([[0.4, 0.9, 0.4, 0.1, 0.4, 0.7], [0.2, 0.2, 0.8, 0.2, 0.9, 0.5],
                  [0.6, 0.6, 0.6, 0.6, 0.1, 0.0]])
    t = np.array([0, 0, 3])
    out = check_op("in_top_k", [(3, 6), (3,)], ref=np_in_top_k,
                   dtypes=[("float32", "int32")], gen=[fixed(p), fixed(t)], k=k)
    np.testing.assert_array_equal(out[0], [k >= 3, k >= 4, True])


def test_in_top_k_invalid_rows_are_false():
    p = np.array([[0.1, 0.5, 0.2], [np.inf, 0.1, 0.0], [np.nan, 0.2, 0.1], [0.3, 0.2, 0.1],
                  [0.3, 0.2, 0.1]])
    t = np.array([1, 0, 1, 3, -1])
    out = check_op("in_top_k", [(5, 3), (5,)], ref=lambda p, t, k: np.array([1, 0, 0, 0, 0],
                                                                            bool),
                   dtypes=[("float32", "int32")], gen=[fixed(p), fixed(t)], k=2)
    np.testing.assert_array_equal(out[0], [True, False, False, False, False])


@pytest.mark.parametrize("dev", available_devices())
@pytest.mark.parametrize("fn,expected", [("update_add", 3.5), ("update_sub", -1.5),
                                         ("update", 2.5)])
def test_eval_of_an_update_applies_it(fn, expected, dev):
    """As with Keras's TensorFlow backend, K.eval(K.update*(v, ...)) writes the variable and
    returns its new value (Keras's backend_test.py evaluates update ops this way)."""
    old = config.device()
    config.set_device(dev)
    try:
        v = K.variable(np.ones((2, 3)))
        out = K.eval(getattr(K, fn)(v, np.full((2, 3), 2.5)))
        np.testing.assert_allclose(out, np.full((2, 3), expected))
        np.testing.assert_allclose(K.get_value(v), np.full((2, 3), expected))
        out[0, 0] = 100.0  # the result is not the variable's storage
        assert K.get_value(v)[0, 0] == expected
    finally:
        config.set_device(old)
