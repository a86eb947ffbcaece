"""The Tensor handle as Keras uses it: free attributes, identity equality and hashing, static
shape/dtype/ndim/name, variables' names and constraints, the K predicates and static-info
functions, truthiness/iteration errors, and operators with Python numbers and numpy arrays
(numbers checked against numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError, SymkError


@pytest.fixture
def x():
    return K.placeholder((None, 3), name="x_tensor")


# ---------------------------------------------------------------- attributes and identity


def test_arbitrary_attributes_can_be_set(x):
    history = object()
    x._keras_shape = (None, 3)
    x._keras_history = (history, 0, 0)
    x._uses_learning_phase = True
    x.anything_at_all = [1, 2]
    assert x._keras_history[0] is history and x.anything_at_all == [1, 2]
    y = x + 1.0
    y._keras_history = None
    assert y._keras_history is None
    v = K.variable(np.zeros(2))
    v._trainable = False
    assert v._trainable is False


def test_equality_and_hash_are_identity(x):
    y = K.placeholder((None, 3), name="x_tensor")
    assert x == x and not (x != x)
    assert not (x == y) and x != y
    assert isinstance(x == y, bool)  # no graph node is built
    a, b = x + 1.0, x + 1.0
    assert a.node is b.node  # hash-consed graph node ...
    assert a is not b and a != b  # ... but two distinct handles
    h = hash(x)
    x._keras_shape = (None, 3)
    assert hash(x) == h
    d = {x: "x", y: "y", a: "a", b: "b"}
    assert d[x] == "x" and d[y] == "y" and d[a] == "a" and d[b] == "b"
    assert len({x, y, a, b, x}) == 4
    assert x in [y, x] and a not in [b]
    v1, v2 = K.variable(1.0), K.variable(1.0)
    assert v1 != v2 and len({v1, v2}) == 2


def test_static_shape_dtype_ndim_name(x):
    assert x.shape == (None, 3) and isinstance(x.shape, tuple)
    assert list(x.shape) == [None, 3]
    assert x.dtype == "float32" and isinstance(x.dtype, str)
    assert x.ndim == 2
    assert x.name == "x_tensor" and isinstance(x.name, str)
    i = K.placeholder(ndim=3, dtype="int32")
    assert i.shape == (None, None, None) and i.dtype == "int32" and i.ndim == 3
    assert isinstance(i.name, str) and i.name
    s = K.sum(x, axis=1)
    assert s.shape == (None,) and s.dtype == "float32" and s.ndim == 1
    assert isinstance(s.name, str) and s.name
    v = K.variable(np.zeros((2, 5), np.float64), dtype="float64")
    assert v.shape == (2, 5) and v.dtype == "float64" and v.ndim == 2


def test_variables_have_unique_names_and_constraints():
    c = lambda w: w  # noqa: E731
    a = K.variable(np.zeros(2), name="kernel_tt")
    b = K.variable(np.zeros(2), name="kernel_tt", constraint=c)
    assert a.name != b.name and a.name.startswith("kernel_tt") and b.name.startswith("kernel_tt")
    assert a.constraint is None and b.constraint is c
    unnamed = [K.variable(0.0) for _ in range(3)]
    assert len({v.name for v in unnamed}) == 3


# ---------------------------------------------------------------- predicates


class _Evil:
    """An object that raises on every attribute access, including ``__class__``."""

    @property
    def __class__(self):
        raise RuntimeError("do not touch")

    def __getattr__(self, name):
        raise RuntimeError("do not touch")


class _LooksLikeTensor:
    def __init__(self):
        self.node = None
        self.shape = (2,)
        self.dtype = "float32"


NON_SYMK = {  # factories: pytest must not touch the evil object while collecting
    "None": lambda: None, "int": lambda: 0, "float": lambda: 1.5, "str": lambda: "x",
    "list": lambda: [1, 2], "tuple": lambda: (1,), "dict": lambda: {"a": 1},
    "ndarray": lambda: np.zeros(3), "np.float32": lambda: np.float32(1.0),
    "duck": _LooksLikeTensor, "evil": _Evil, "class": lambda: object, "module": lambda: K,
}


@pytest.mark.parametrize("make", NON_SYMK.values(), ids=NON_SYMK.keys())
def test_predicates_false_for_non_symk_objects_and_never_raise(make):
    obj = make()
    assert K.is_variable(obj) is False
    assert K.is_tensor(obj) is False
    assert K.is_placeholder(obj) is False


def test_predicates_on_symk_objects(x):
    v = K.variable(np.ones(3))
    c = K.constant([1.0, 2.0])
    e = x * 2.0
    assert K.is_variable(v) and not K.is_variable(x) and not K.is_variable(e)
    assert all(K.is_tensor(t) for t in (x, v, c, e))
    assert K.is_placeholder(x) and not K.is_placeholder(v) and not K.is_placeholder(e)
    assert not K.is_placeholder(c)
    assert not K.is_sparse(x)


def test_is_keras_tensor(x):
    assert K.is_keras_tensor(x) is False
    x._keras_history = (None, 0, 0)
    assert K.is_keras_tensor(x) is True
    with pytest.raises(ValueError, match="Expected a symbolic tensor"):
        K.is_keras_tensor(np.zeros(2))
    with pytest.raises(SymkError):
        K.is_keras_tensor(3)


def test_int_shape_ndim_count_params(x):
    assert K.int_shape(x) == (None, 3)
    v = K.variable(np.zeros((2, 3)))
    assert K.int_shape(v) == (2, 3)
    assert K.int_shape(K.dot(x, K.transpose(v))) == (None, 2)
    assert K.int_shape(np.zeros((4, 1))) == (4, 1)
    x._keras_shape = (None, 3)
    assert K.int_shape(x) == (None, 3)
    assert K.ndim(x) == 2 and K.ndim(v) == 2 and K.ndim(K.sum(v)) == 0
    assert K.count_params(v) == 6
    assert K.count_params(K.variable(np.zeros((4, 5, 2)))) == 40
    assert K.dtype(v) == "float32" and K.dtype(K.cast(v, "int32")) == "int32"
    assert K.count_params(K.variable(3.0)) == 1


def test_symbolic_shape_and_size(x):
    f = K.function([x], [K.shape(x), K.size(x)])
    s, n = f([np.zeros((5, 3))])
    np.testing.assert_array_equal(s, [5, 3])
    assert int(n) == 15


# ---------------------------------------------------------------- truthiness, iteration, len


def test_bool_raises_a_clear_error(x):
    with pytest.raises(SymkError, match="truth value") as e:
        bool(x)
    assert "x_tensor" in str(e.value) and "K.switch" in str(e.value)
    with pytest.raises(SymkError):
        if x > 0:  # the classic mistake
            pass
    with pytest.raises(SymkError):
        bool(K.variable(1.0))


def test_iteration_raises(x):
    with pytest.raises(SymkError, match="not iterable"):
        iter(x)
    with pytest.raises(SymkError):
        list(x)
    with pytest.raises(SymkError):
        for _ in K.variable(np.zeros(3)):
            pass


def test_len(x):
    assert len(K.variable(np.zeros((4, 2)))) == 4
    with pytest.raises(SymkError, match="unknown first dimension"):
        len(x)


# ---------------------------------------------------------------- operators


def _run(inputs, out, values):
    return K.function(inputs, [out])(values)[0]


@pytest.mark.parametrize("build,ref", [
    (lambda a, b: a + b, lambda a, b: a + b),
    (lambda a, b: a - b, lambda a, b: a - b),
    (lambda a, b: a * b, lambda a, b: a * b),
    (lambda a, b: a / b, lambda a, b: a / b),
    (lambda a, b: a // b, lambda a, b: np.floor_divide(a, b)),
    (lambda a, b: a % b, lambda a, b: np.mod(a, b)),
    (lambda a, b: abs(a) ** b, lambda a, b: np.abs(a) ** b),
    (lambda a, b: -a, lambda a, b: -a),
    (lambda a, b: +a, lambda a, b: a),
    (lambda a, b: abs(a), lambda a, b: np.abs(a)),
    (lambda a, b: a < b, lambda a, b: a < b),
    (lambda a, b: a <= b, lambda a, b: a <= b),
    (lambda a, b: a > b, lambda a, b: a > b),
    (lambda a, b: a >= b, lambda a, b: a >= b),
    (lambda a, b: (a > 0) & (b > 1), lambda a, b: (a > 0) & (b > 1)),
    (lambda a, b: (a > 0) | (b > 1), lambda a, b: (a > 0) | (b > 1)),
    (lambda a, b: ~(a > 0), lambda a, b: ~(a > 0)),
])
def test_binary_and_unary_operators(build, ref):
    rng = np.random.default_rng(1)
    av = rng.normal(size=(4, 3)).astype(np.float32)
    bv = rng.uniform(0.5, 2.0, size=(4, 3)).astype(np.float32)
    a = K.placeholder((None, 3))
    b = K.placeholder((None, 3))
    got = _run([a, b], build(a, b), [av, bv])
    want = ref(av, bv)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("build,ref", [
    (lambda a: 2 - a, lambda a: 2 - a),
    (lambda a: a - 2, lambda a: a - 2),
    (lambda a: 3.5 * a, lambda a: 3.5 * a),
    (lambda a: 1 / a, lambda a: 1 / a),
    (lambda a: 2 ** a, lambda a: 2.0 ** a),
    (lambda a: a ** 2, lambda a: a ** 2),
    (lambda a: 7.0 // a, lambda a: np.floor_divide(np.float32(7.0), a)),
    (lambda a: 5 % a, lambda a: np.mod(np.float32(5), a)),
    (lambda a: np.float32(2) + a, lambda a: 2 + a),
    (lambda a: np.arange(3, dtype=np.float32) + a, lambda a: np.arange(3) + a),
    (lambda a: a * np.arange(3, dtype=np.float32), lambda a: a * np.arange(3)),
])
def test_operators_with_python_numbers_and_arrays_on_either_side(build, ref):
    av = np.array([[0.5, 1.5, 2.5], [3.0, 4.0, 5.5]], np.float32)
    a = K.placeholder((None, 3))
    out = build(a)
    assert K.is_tensor(out)
    got = _run([a], out, [av])
    assert got.dtype == np.float32  # Python numbers do not promote (weak typing)
    np.testing.assert_allclose(got, ref(av).astype(np.float32), rtol=1e-6)


def test_matmul_operator():
    rng = np.random.default_rng(2)
    av, bv = rng.normal(size=(4, 3)), rng.normal(size=(3, 5))
    a = K.placeholder((None, 3), dtype="float64")
    b = K.variable(bv, dtype="float64")
    np.testing.assert_allclose(_run([a], a @ b, [av]), av @ bv, rtol=1e-12)
    np.testing.assert_allclose(_run([a], bv.T @ K.transpose(a), [av]), bv.T @ av.T,
                               rtol=1e-12)


@pytest.mark.parametrize("key", [
    0, -1, slice(1, None), slice(None, None, -1), slice(-3, -1), slice(None, None, 2),
    (slice(None), 1), (slice(None), -2), (Ellipsis, 0), (None, Ellipsis), (0, None, slice(1, 3)),
    (slice(1, 4, 2), slice(None, None, -2)), (Ellipsis,), (1, 2),
])
def test_getitem(key):
    xv = np.arange(20, dtype=np.float32).reshape(5, 4)
    x = K.placeholder((None, 4))
    got = _run([x], x[key], [xv])
    want = xv[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # the static shape agrees with numpy wherever it is known
    static = x[key].shape
    assert len(static) == want.ndim
    assert all(s is None or s == w for s, w in zip(static, want.shape))


def test_getitem_errors():
    x = K.placeholder((2, 3))
    with pytest.raises(SymkError):
        x[0, 0, 0]
    with pytest.raises(ArgumentError):
        x[..., ...]
    with pytest.raises(ArgumentError):
        x["a"]
