"""Sparse placeholders: ``K.placeholder(sparse=True)``, ``K.is_sparse``, ``K.to_dense`` and
sparse ``K.dot`` against dense numpy products, fed with scipy.sparse matrices or
``(indices, values, dense_shape)`` triples on every device; feeding errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from symk import backend as K
from symk.errors import InputError, ShapeError
from symk.graph.node import toposort
from tests.harness import available_devices


def _matrix(rows, cols, density, seed, fmt="csr", dtype=np.float32):
    return sp.random(rows, cols, density=density, format=fmt, random_state=seed, dtype=dtype)


def test_is_sparse_and_static_info():
    x = K.placeholder((None, 7), sparse=True)
    d = K.placeholder((None, 7))
    assert K.is_sparse(x) and not K.is_sparse(d) and not K.is_sparse(np.zeros(2))
    assert K.int_shape(x) == (None, 7) and K.ndim(x) == 2 and K.dtype(x) == "float32"
    dense = K.to_dense(x)
    assert not K.is_sparse(dense) and K.int_shape(dense) == (None, 7)
    assert K.to_dense(d) is d
    assert K.is_sparse(K.placeholder(ndim=2, sparse=True, dtype="float64"))


@pytest.mark.parametrize("dev", available_devices())
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_dot_matches_dense(dev, fmt, dtype):
    rng = np.random.default_rng(0)
    x = K.placeholder((None, 6), sparse=True, dtype=dtype)
    w = K.placeholder((6, 3), dtype=dtype)
    y = K.dot(x, w)
    assert K.int_shape(y) == (None, 3) and y.dtype == dtype
    # the product reads the COO parts: no densified operand in the graph
    assert "sparse_to_dense" not in {nd.op.name for nd in toposort([y.node])}
    f = K.function([x, w], [y, K.to_dense(x)], device=dev)
    wv = rng.normal(size=(6, 3)).astype(dtype)
    for rows, density in ((5, 0.4), (1, 0.5), (9, 0.0), (3, 1.0)):
        m = _matrix(rows, 6, density, rows, fmt, dtype)
        out, dense = f([m, wv])
        np.testing.assert_allclose(out, m.toarray() @ wv, rtol=1e-5 if dtype == "float32"
                                   else 1e-12, atol=1e-6)
        assert out.dtype == dtype and out.shape == (rows, 3)
        np.testing.assert_array_equal(dense, m.toarray())


@pytest.mark.parametrize("dev", available_devices())
def test_triple_feed_duplicates_and_mixed_dtypes(dev):
    """An (indices, values, dense_shape) triple; repeated indices sum (as in scipy); int
    values are cast to the placeholder's dtype; a float64 dense operand promotes."""
    x = K.placeholder((3, 4), sparse=True)
    w = K.variable(np.arange(8.0).reshape(4, 2), dtype="float64")
    f = K.function([x], [K.dot(x, w), K.to_dense(x) * 2.0], device=dev)
    idx = np.array([[0, 1], [2, 3], [0, 1]])
    vals = np.array([1, 2, 3])
    dense = np.zeros((3, 4))
    dense[0, 1], dense[2, 3] = 4, 2
    out, d2 = f([(idx, vals, (3, 4))])
    assert out.dtype == np.float64 and d2.dtype == np.float32
    np.testing.assert_allclose(out, dense @ np.arange(8.0).reshape(4, 2))
    np.testing.assert_allclose(d2, 2 * dense)


@pytest.mark.parametrize("dev", available_devices())
def test_gradient_wrt_dense_operand_and_values(dev):
    """d sum(G * (A @ W)) / dW = A^T G; through to_dense the gradient reaches the values."""
    rng = np.random.default_rng(1)
    m = _matrix(4, 5, 0.5, 2, "coo", np.float64)
    x = K.placeholder((None, 5), sparse=True, dtype="float64")
    w = K.variable(rng.normal(size=(5, 3)), dtype="float64")
    g = rng.normal(size=(4, 3))
    gp = K.placeholder((None, 3), dtype="float64")
    (gw,) = K.gradients(K.sum(gp * K.dot(x, w)), [w])
    (gv,) = K.gradients(K.sum(gp * K.dot(x, w)), [x.values])
    got_w, got_v = K.function([x, gp], [gw, gv], device=dev)([m, g])
    np.testing.assert_allclose(got_w, m.toarray().T @ g, rtol=1e-12)
    coo = m.tocoo()
    coo.sum_duplicates()  # the order in which the values are fed
    np.testing.assert_allclose(got_v, np.einsum("kj,kj->k", g[coo.row],
                                                K.get_value(w)[coo.col]), rtol=1e-12)


@pytest.mark.parametrize("dev", available_devices())
def test_dense_ops_on_a_sparse_tensor_use_its_dense_value(dev):
    x = K.placeholder((None, 3), sparse=True)
    f = K.function([x], [K.sum(x, axis=1), K.concatenate([x, x]), x * 3.0], device=dev)
    m = _matrix(4, 3, 0.5, 5)
    s, c, t = f([m])
    d = m.toarray()
    np.testing.assert_allclose(s, d.sum(1), rtol=1e-6)
    np.testing.assert_array_equal(c, np.concatenate([d, d], -1))
    np.testing.assert_allclose(t, 3 * d, rtol=1e-6)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("value,match", [
    (np.zeros((2, 4), np.float32), "scipy.sparse matrix"),
    (lambda: _matrix(2, 5, 0.5, 0), "dimension 1: 5 != 4"),
    (([[0, 0]], [1.0], (2, 4, 1)), "dense shape must be 2"),
    (([[0, 4]], [1.0], (2, 4)), "out of range"),
    (([[0, 1]], [1.0, 2.0], (2, 4)), "expected 1 values"),
    (([[0.5, 1]], [1.0], (2, 4)), "indices must be integers"),
    (([[0, 1]], ["a"], (2, 4)), "cannot be cast"),
])
def test_feed_errors(value, match):
    x = K.placeholder((None, 4), sparse=True, name="sp_in")
    f = K.function([x], [K.to_dense(x)], device=available_devices()[0])
    v = value() if callable(value) else value
    with pytest.raises(InputError, match=match):
        f([v])


def test_build_errors():
    x = K.placeholder((None, 4), sparse=True)
    with pytest.raises(ShapeError, match="incompatible"):
        K.dot(x, K.placeholder((5, 2)))
    with pytest.raises(ShapeError, match="2-D dense"):
        K.dot(x, K.placeholder((4, 2, 3)))
    with pytest.raises(ShapeError, match="2-D sparse"):
        K.dot(K.placeholder((2, 3, 4), sparse=True), K.placeholder((4, 2)))


@pytest.mark.parametrize("dev", available_devices())
def test_sparse_variable_dot_concatenate_to_dense(dev):
    """K.variable of a scipy.sparse matrix is a sparse tensor (as with Keras's TensorFlow
    backend): K.dot reads its COO parts, K.concatenate of sparse tensors is sparse (also with a
    sparse placeholder), K.to_dense / K.eval give the dense value."""
    a = _matrix(4, 5, 0.4, 1, "csr")
    b = _matrix(4, 3, 0.5, 2, "csc")
    wv = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    va, vb = K.variable(a), K.variable(b, dtype="float64")
    assert K.is_sparse(va) and not K.is_variable(va) and K.int_shape(va) == (4, 5)
    assert va.dtype == "float32" and vb.dtype == "float64"
    y = K.dot(va, K.variable(wv))
    assert "sparse_to_dense" not in {nd.op.name for nd in toposort([y.node])}
    cols = K.concatenate([va, vb])  # axis -1
    x = K.placeholder((None, 5), sparse=True)
    rows = K.concatenate([va, x, va], axis=0)
    mixed = K.concatenate([va, K.placeholder((4, 2))], axis=1)
    assert K.is_sparse(cols) and K.is_sparse(rows) and not K.is_sparse(mixed)
    assert K.int_shape(cols) == (4, 8) and cols.dtype == "float64"
    assert K.int_shape(rows) == (None, 5) and K.int_shape(mixed) == (4, 7)
    ph = _matrix(3, 5, 0.5, 3, "coo")
    f = K.function([x], [K.to_dense(cols), K.to_dense(rows), K.dot(rows, K.variable(wv)), y],
                   device=dev)
    dense_cols, dense_rows, prod, prod_a = f([ph])
    np.testing.assert_allclose(dense_cols, np.hstack([a.toarray(), b.toarray()]))
    stacked = np.vstack([a.toarray(), ph.toarray(), a.toarray()])
    np.testing.assert_array_equal(dense_rows, stacked)
    np.testing.assert_allclose(prod, stacked @ wv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prod_a, a.toarray() @ wv, rtol=1e-5, atol=1e-6)
