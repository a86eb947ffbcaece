"""Philox-4x32-10 (symk.graph.philox): known answers and the statistics of the stream."""

from __future__ import annotations

import numpy as np
import pytest

from symk.graph import philox
from symk.graph.scalar import NUMPY

# Random123's kat_vectors for philox4x32_10: (counter, key, expected)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_known_answers(ctr, key, want):
    got = philox.philox4x32_np(np.array(ctr, np.uint32), np.array(key, np.uint32))
    assert [int(x) for x in got] == list(want)


def test_known_answers_vectorized():
    ctr = np.array([k[0] for k in KAT], np.uint32)
    key = np.array([k[1] for k in KAT], np.uint32)
    got = philox.philox4x32_np(ctr, key)
    assert got.tolist() == [list(k[2]) for k in KAT]


def _uniform(n: int, count: int, seed: int, dtype: str = "float32") -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(philox.uniform(NUMPY, np.arange(n, dtype=np.int64),
                                         np.asarray(count, np.int64), seed, dtype))


def test_uniform_statistics():
    u = _uniform(1_000_000, 0, 1234)
    assert u.dtype == np.float32
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 1e-3
    # histogram: each of 100 bins near 1% (chi-square test at a generous bound)
    h = np.bincount((u * 100).astype(np.int64), minlength=100)
    e = u.size / 100
    chi2 = float(((h - e) ** 2 / e).sum())
    assert chi2 < 180  # 99 degrees of freedom: p(chi2 > 180) ~ 1e-6
    # Kolmogorov-Smirnov distance of the sorted sample
    s = np.sort(u.astype(np.float64))
    d = np.max(np.abs(s - np.arange(1, s.size + 1) / s.size))
    assert d < 1.95 / np.sqrt(s.size)  # p ~ 0.001


def test_uniform_is_24_bit_grid():
    u = _uniform(4096, 3, 7, "float64")
    assert np.all(u * 2**24 == np.floor(u * 2**24))


def test_calls_and_seeds_give_independent_streams():
    a, b = _uniform(100_000, 0, 5), _uniform(100_000, 1, 5)
    c = _uniform(100_000, 0, 6)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    for x, y in ((a, b), (a, c)):
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.02
    np.testing.assert_array_equal(a, _uniform(100_000, 0, 5))


def test_large_seed_uses_both_key_words():
    assert not np.array_equal(_uniform(1000, 0, 1), _uniform(1000, 0, 1 + 2**32))


def test_normal_statistics():
    with np.errstate(over="ignore"):
        z = np.asarray(philox.normal(NUMPY, np.arange(1_000_000, dtype=np.int64),
                                     np.asarray(0, np.int64), 99, "float64"))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.003
