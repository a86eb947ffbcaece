"""Error messages: each bad input raises a ``symk.SymkError`` subclass whose message names the
K function, the shapes involved and the user's ``file:line``; a compiled function's input
errors name the placeholder (name and position) with the expected and actual shape/dtype."""

from __future__ import annotations

import os

import numpy as np
import pytest

import symk
from symk import backend as K
from symk.errors import ArgumentError, DTypeError, InputError, ShapeError, SymkError
from tests.source_lines import marker_line

HERE = os.path.basename(__file__)


def where(line_offset_marker: str) -> str:
    """``test_errors.py:<line>`` of the line holding ``marker`` in this file."""
    return marker_line(__file__, line_offset_marker, "where(")


def check(exc: pytest.ExceptionInfo, kind: type, *needles: str) -> str:
    e = exc.value
    assert isinstance(e, kind) and isinstance(e, SymkError), type(e)
    msg = str(e)
    for n in needles:
        assert n in msg, f"{n!r} not in message:\n{msg}"
    return msg


@pytest.fixture
def a():
    return K.placeholder((None, 3), name="a")


@pytest.fixture
def b():
    return K.placeholder((4, 5), name="b")


# ---------------------------------------------------------------- graph-building errors


def test_dot_incompatible_shapes(a, b):
    with pytest.raises(SymkError) as e:
        K.dot(a, b)  # MARK-dot
    check(e, ShapeError, "K.dot", "(None, 3)", "(4, 5)", where("MARK-dot"))


def test_batch_dot_incompatible_shapes():
    x = K.placeholder((None, 3, 4))
    y = K.placeholder((None, 5, 6))
    with pytest.raises(SymkError) as e:
        K.batch_dot(x, y, axes=(2, 1))  # MARK-batch-dot
    check(e, ShapeError, "K.batch_dot", where("MARK-batch-dot"))
    msg = str(e.value)
    assert "(None, 3, 4)" in msg or "float32[?,3,4]" in msg


def test_broadcast_mismatch_in_k_function(a, b):
    with pytest.raises(SymkError) as e:
        K.maximum(a, b)  # MARK-maximum
    check(e, ShapeError, "K.maximum", "(None, 3)", "(4, 5)", where("MARK-maximum"))


def test_broadcast_mismatch_in_operator(a, b):
    with pytest.raises(SymkError) as e:
        a + b  # MARK-plus
    check(e, ShapeError, "'add'", "(None, 3)", "(4, 5)", where("MARK-plus"))
    assert isinstance(e.value, ValueError)  # what a Python user would catch


def test_concatenate_mismatch(a):
    c = K.placeholder((None, 4), name="c")
    with pytest.raises(SymkError) as e:
        K.concatenate([a, c], axis=0)  # MARK-concat
    check(e, ShapeError, "K.concatenate", "(None, 3)", "(None, 4)", where("MARK-concat"))
    d = K.placeholder((None, 3, 1))
    with pytest.raises(SymkError) as e:
        K.concatenate([a, d], axis=-1)  # MARK-concat-rank
    check(e, ShapeError, "K.concatenate", where("MARK-concat-rank"))


@pytest.mark.parametrize("call,fname", [
    (lambda t: K.sum(t, axis=2), "K.sum"),
    (lambda t: K.mean(t, axis=-3), "K.mean"),
    (lambda t: K.max(t, axis=[0, 0]), "K.max"),
    (lambda t: K.softmax(t, axis=5), "K.softmax"),
    (lambda t: K.argmax(t, axis=2), "K.argmax"),
    (lambda t: K.permute_dimensions(t, (0, 0)), "K.permute_dimensions"),
    (lambda t: K.squeeze(t, 1), "K.squeeze"),
    (lambda t: K.expand_dims(t, 4), "K.expand_dims"),
    (lambda t: K.cumsum(t, axis=3), "K.cumsum"),
    (lambda t: K.reverse(t, axes=7), "K.reverse"),
])
def test_bad_axis(a, call, fname):
    with pytest.raises(SymkError) as e:
        call(a)
    msg = check(e, SymkError, fname, f"{HERE}:{call.__code__.co_firstlineno}")
    assert isinstance(e.value, (ShapeError, ArgumentError))
    assert "(None, 3)" in msg or "float32[?,3]" in msg


@pytest.mark.parametrize("call,fname", [
    (lambda: K.placeholder((2,), dtype="float7"), "K.placeholder"),
    (lambda: K.variable(np.zeros(2), dtype="complex128"), "K.variable"),
    (lambda: K.cast(K.placeholder((2,)), "quaternion"), "K.cast"),
    (lambda: K.zeros((2,), dtype="string"), "K.zeros"),
    (lambda: K.constant(1.0, dtype="float128"), "K.constant"),
    (lambda: K.random_uniform((2,), dtype="notatype"), "K.random_uniform"),
])
def test_unknown_dtype(call, fname):
    with pytest.raises(SymkError) as e:
        call()
    check(e, DTypeError, fname, f"{HERE}:{call.__code__.co_firstlineno}")
    assert isinstance(e.value, TypeError)


def test_unknown_function_kwarg(a):
    with pytest.raises(SymkError) as e:
        K.function([a], [a * 2.0], fetches=[1])  # MARK-kwarg
    check(e, ArgumentError, "K.function", "fetches", where("MARK-kwarg"))


def test_function_inputs_must_be_tensors(a):
    with pytest.raises(SymkError) as e:
        K.function([a, np.zeros(3)], [a])  # MARK-inputs
    check(e, ArgumentError, "K.function", "input 1", where("MARK-inputs"))


def test_bad_update(a):
    v = K.variable(np.zeros((2, 2)), name="v_err")
    with pytest.raises(SymkError) as e:
        K.function([a], [a], updates=[(v, K.zeros((3, 3)))])  # MARK-update
    check(e, SymkError, "K.function", v.name, "(3, 3)", where("MARK-update"))
    with pytest.raises(SymkError) as e:
        K.update_add(a, 1.0)  # MARK-update-ph
    check(e, ArgumentError, "K.update_add", where("MARK-update-ph"))


def test_set_value_shape_mismatch():
    v = K.variable(np.zeros((2, 3)), name="v_set")
    with pytest.raises(SymkError) as e:
        K.set_value(v, np.zeros((3, 2)))
    check(e, SymkError, "K.set_value", v.name, "(2, 3)", "(3, 2)")
    np.testing.assert_array_equal(K.get_value(v), np.zeros((2, 3)))


def test_unfed_placeholder_names_the_placeholder():
    p = K.placeholder((2,), name="never_fed")  # MARK-unfed
    with pytest.raises(SymkError) as e:
        K.eval(p * 2.0)
    check(e, SymkError, "never_fed", where("MARK-unfed"))


def test_error_hierarchy_is_importable_from_symk():
    for cls in (ShapeError, DTypeError, ArgumentError, InputError):
        assert issubclass(cls, symk.SymkError)
    assert issubclass(ShapeError, ValueError) and issubclass(DTypeError, TypeError)
    assert issubclass(InputError, ValueError)


# ---------------------------------------------------------------- K.function call errors


@pytest.fixture
def f():
    x = K.placeholder((None, 3), name="feat")  # MARK-feat
    i = K.placeholder((2,), dtype="int32", name="idx")  # MARK-idx
    return K.function([x, i], [K.sum(x, axis=1), i * 2], name="fcall")


def test_call_with_wrong_number_of_inputs(f):
    with pytest.raises(SymkError) as e:
        f([np.zeros((1, 3))])
    check(e, InputError, "fcall", "expected 2", "got 1", "'feat'", "'idx'")
    with pytest.raises(InputError):
        f([np.zeros((1, 3)), np.zeros(2, np.int32), np.zeros(1)])


def test_call_with_wrong_rank(f):
    with pytest.raises(SymkError) as e:
        f([np.zeros(3), np.zeros(2, np.int32)])
    check(e, InputError, "input 0", "'feat'", "(None, 3)", "(3,)", where("MARK-feat"))


def test_call_with_wrong_static_dim(f):
    with pytest.raises(SymkError) as e:
        f([np.zeros((5, 4)), np.zeros(2, np.int32)])
    check(e, InputError, "input 0", "'feat'", "(None, 3)", "(5, 4)")
    with pytest.raises(SymkError) as e:
        f([np.zeros((5, 3)), np.zeros(3, np.int32)])
    check(e, InputError, "input 1", "'idx'", "(2,)", "(3,)", where("MARK-idx"))


def test_call_with_strings(f):
    with pytest.raises(SymkError) as e:
        f([np.array([["a", "b", "c"]]), np.zeros(2, np.int32)])
    check(e, InputError, "input 0", "'feat'", "float32", "<U1")


def test_call_with_fractional_floats_into_int_placeholder(f):
    with pytest.raises(SymkError) as e:
        f([np.zeros((1, 3)), np.array([1.5, 2.0])])
    check(e, InputError, "input 1", "'idx'", "int32", "float64", "fractional")


def test_call_with_safe_casts_succeeds(f):
    s, i = f([[[1, 2, 3]], np.array([1.0, 4.0])])  # ints into float32, whole floats into int32
    assert s.dtype == np.float32 and i.dtype == np.int32
    np.testing.assert_array_equal(s, [6.0])
    np.testing.assert_array_equal(i, [2, 8])


def test_call_bool_placeholder_rejects_non_binary_values():
    m = K.placeholder((3,), dtype="bool", name="mask")
    g = K.function([m], [K.cast(m, "int32")])
    np.testing.assert_array_equal(g([np.array([0, 1, 1])])[0], [0, 1, 1])
    with pytest.raises(InputError, match="mask"):
        g([np.array([0, 2, 1])])


def test_call_with_a_dict_is_rejected(f):
    with pytest.raises(SymkError, match="list"):
        f({"feat": np.zeros((1, 3))})
