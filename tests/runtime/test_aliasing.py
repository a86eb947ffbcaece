"""Returned arrays never alias variables, fed arrays or each other's variable storage, while
fresh results are returned without a copy."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K


@pytest.mark.parametrize("device", ["interp", "cpu"])
def test_views_of_leaves_are_copied_and_fresh_results_are_not(device):
    v = K.variable(np.arange(6.0).reshape(2, 3))
    x = K.placeholder((2, 3))
    f = K.function([x], [K.transpose(v), K.reshape(x, (3, 2)), K.dot(x, K.transpose(v))],
                   device=device)
    xv = np.ones((2, 3), np.float32)
    tv, rx, d = f([xv])
    tv[0, 0] = 100.0
    rx[0, 0] = 100.0
    assert K.get_value(v)[0, 0] == 0.0 and xv[0, 0] == 1.0  # neither leaf was touched
    np.testing.assert_allclose(d, xv @ np.arange(6.0).reshape(2, 3).T)


@pytest.mark.parametrize("device", ["interp", "cpu"])
def test_an_update_value_also_returned_is_stored_as_a_copy(device):
    p = K.variable(np.zeros((2, 2)))
    new = p + 1.0
    f = K.function([], [K.reshape(new, (4,)), new], updates=[(p, new)], device=device)
    flat, same = f([])
    flat[0] = 50.0
    same[1, 1] = 60.0
    np.testing.assert_array_equal(K.get_value(p), np.ones((2, 2)))


@pytest.mark.parametrize("device", ["cpu"])
def test_transposed_products_come_back_contiguous(device):
    a = K.placeholder((5, 3))
    b = K.placeholder((5, 4))
    g = K.function([a, b], [K.dot(K.transpose(a), b), K.batch_dot(a, a, axes=1)],
                   device=device)
    av = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    bv = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    prod, bd = g([av, bv])
    np.testing.assert_allclose(prod, av.T @ bv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bd[:, 0], (av * av).sum(1), rtol=1e-5)
