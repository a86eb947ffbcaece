"""Random tensors and dropout: statistics within tolerance, ranges, dtypes, reproducible seeds."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.harness import available_devices

N = 20000  # samples: the standard error of a mean of unit-variance draws is 0.007


def _draw(t, inputs=(), values=()):
    """The value of t on every available device (all identical for a seeded tensor)."""
    outs = [K.function(list(inputs), [t], device=d)(list(values))[0]
            for d in available_devices()]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    return outs[0]


def _close(value, want, se, k=5.0):
    assert abs(value - want) < k * se, f"{value} is not within {k} standard errors of {want}"


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_random_uniform(dtype):
    t = K.random_uniform((N,), minval=-2.0, maxval=3.0, dtype=dtype, seed=1)
    v = _draw(t)
    assert v.dtype == np.dtype(dtype or K.floatx()) and t.dtype == v.dtype.name
    assert v.shape == (N,) and K.int_shape(t) == (N,)
    assert v.min() >= -2.0 and v.max() < 3.0
    _close(v.mean(), 0.5, 5 / np.sqrt(12 * N))
    _close(v.var(), 25 / 12, 25 / 12 * np.sqrt(0.8 / N))


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_random_normal(dtype):
    t = K.random_normal((100, N // 100), mean=1.5, stddev=2.0, dtype=dtype, seed=2)
    v = _draw(t)
    assert v.dtype == np.dtype(dtype or K.floatx()) and v.shape == (100, N // 100)
    _close(v.mean(), 1.5, 2 / np.sqrt(N))
    _close(v.std(), 2.0, 2 / np.sqrt(2 * N))


def test_truncated_normal():
    t = K.truncated_normal((N,), mean=-1.0, stddev=0.5, seed=3)
    v = _draw(t)
    assert v.dtype == np.float32
    assert np.all(np.abs(v - (-1.0)) <= 2 * 0.5 + 1e-6), "values beyond two stddev"
    _close(v.mean(), -1.0, 0.5 / np.sqrt(N))
    # the standard deviation of a normal truncated at +-2 sigma is 0.8796 sigma
    _close(v.std(), 0.5 * 0.87962566, 0.5 / np.sqrt(2 * N))


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_random_binomial(p):
    t = K.random_binomial((N,), p=p, seed=4)
    v = _draw(t)
    assert v.dtype == np.float32 and set(np.unique(v)) <= {0.0, 1.0}
    _close(v.mean(), p, np.sqrt(max(p * (1 - p), 1e-4) / N))


@pytest.mark.parametrize("name,kw", [("random_uniform", {}), ("random_normal", {}),
                                     ("truncated_normal", {}), ("random_binomial", {"p": 0.5})])
def test_same_seed_same_values(name, kw):
    a = K.eval(getattr(K, name)((50,), seed=123, **kw))
    b = K.eval(getattr(K, name)((50,), seed=123, **kw))
    c = K.eval(getattr(K, name)((50,), seed=124, **kw))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_with_symbolic_shape():
    x = K.placeholder((None, 3))
    t = K.random_uniform(K.shape(x), seed=5)
    assert K.ndim(t) == 2
    f = K.function([x], [t])
    for b in (2, 7):
        v = f([np.zeros((b, 3), np.float32)])[0]
        assert v.shape == (b, 3) and v.min() >= 0 and v.max() < 1


@pytest.mark.parametrize("level", [0.0, 0.2, 0.5, 0.8])
def test_dropout_scales_and_drops(level):
    x = K.placeholder((None, 100))
    f = K.function([x], [K.dropout(x, level, seed=6)])
    a = np.full((N // 100, 100), 2.0, np.float32)
    v = f([a])[0]
    assert v.shape == a.shape and v.dtype == np.float32
    kept = v != 0
    np.testing.assert_allclose(v[kept], 2.0 / (1.0 - level), rtol=1e-6)
    _close(1.0 - kept.mean(), level, np.sqrt(max(level * (1 - level), 1e-4) / N))


def test_dropout_noise_shape_broadcasts():
    x = K.placeholder((400, 5))
    v = K.function([x], [K.dropout(x, 0.5, noise_shape=(400, 1), seed=7)])(
        [np.ones((400, 5), np.float32)])[0]
    assert np.all((v == 0).all(axis=1) | (v == 2.0).all(axis=1)), "rows are dropped whole"
    _close((v[:, 0] == 0).mean(), 0.5, 0.5 / np.sqrt(400))


def test_dropout_same_seed_same_mask():
    x = K.placeholder((10, 10))
    a = np.random.default_rng(0).standard_normal((10, 10)).astype(np.float32)
    v1 = K.function([x], [K.dropout(x, 0.5, seed=8)])([a])[0]
    v2 = K.function([x], [K.dropout(x, 0.5, seed=8)])([a])[0]
    np.testing.assert_array_equal(v1, v2)


def test_dropout_bad_level():
    with pytest.raises(ValueError):
        K.dropout(K.placeholder((2, 2)), 1.0)


def test_random_variables():
    u = K.random_uniform_variable((100, 100), low=-1.0, high=1.0, seed=9)
    v = K.get_value(u)
    assert K.is_variable(u) and v.dtype == np.float32 and v.shape == (100, 100)
    assert v.min() >= -1 and v.max() < 1
    _close(v.mean(), 0.0, 2 / np.sqrt(12 * 10000))
    n = K.random_normal_variable((100, 100), mean=3.0, scale=0.5, dtype="float64", seed=10)
    w = K.get_value(n)
    assert w.dtype == np.float64
    _close(w.mean(), 3.0, 0.5 / 100)
    _close(w.std(), 0.5, 0.5 / np.sqrt(2 * 10000))
    again = K.get_value(K.random_uniform_variable((100, 100), -1.0, 1.0, seed=9))
    np.testing.assert_array_equal(again, v)


def test_dropout_symbolic_noise_shape():
    # Keras's SpatialDropout1D passes (shape[0], 1, shape[2]) with shape = K.shape(inputs)
    x = K.placeholder((None, 6, 50))
    s = K.shape(x)
    f = K.function([x], [K.dropout(x, 0.5, noise_shape=(s[0], 1, s[2]), seed=11)])
    v = f([np.ones((40, 6, 50), np.float32)])[0]
    assert v.shape == (40, 6, 50)
    assert np.all(v == v[:, :1, :]), "the mask is shared along the axis with noise dim 1"
    assert set(np.unique(v)) == {0.0, 2.0}
    _close((v[:, 0, :] == 0).mean(), 0.5, 0.5 / np.sqrt(2000))
