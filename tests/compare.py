"""Array comparison shared by the test suites: exact for integers and bools; for floats the
same NaN positions, the same infinities (sign included) and the rest within tolerance."""

from __future__ import annotations

import numpy as np


def assert_match(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6,
                 what: str = "") -> None:
    """Same shape and dtype; integers and bools exactly equal; floats with NaNs in the same
    places, the same infinities (sign included) and the rest within tolerance."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    gn, wn = np.isnan(got), np.isnan(want)
    assert np.array_equal(gn, wn), f"{what}: NaN positions differ\n{got}\n{want}"
    gi, wi = np.isinf(got), np.isinf(want)
    assert np.array_equal(gi, wi) and np.array_equal(got[gi], want[wi]), \
        f"{what}: infinities differ\n{got}\n{want}"
    ok = ~(gn | gi)
    np.testing.assert_allclose(got[ok].astype(np.float64), want[ok].astype(np.float64),
                               rtol=rtol, atol=atol, err_msg=what)
