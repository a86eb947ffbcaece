"""Philox-4x32-10, the counter-based random generator of symk's random ops (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011; the generator of Random123, cuRAND and
JAX).

The generator is written once as a scalar expression (``philox4x32``, using only the
primitives of ``symk.graph.scalar``: uint32/uint64 add and mul, ``bitxor`` and ``shr``), so the
numpy scalar builder evaluates it on whole arrays (the ``interp`` device, which defines the
stream) and codegen renders the very same expression inside kernels.

Stream of a random node with seed ``s``: the value at flat element index ``i`` of call number
``c`` (0 for the first call of a compiled function, then 1, 2, ...) is word 0 (and word 1 for
normal draws) of ``philox4x32(counter=(i mod 2**32, c mod 2**32, salt, i >> 32),
key=(s mod 2**32, s >> 32 mod 2**32))``.  ``salt`` tells the kinds of draws apart (``SALT``).
A uint32 word ``x`` becomes a float in [0, 1) from its top 24 bits: ``u = (x >> 8) * 2**-24``
(exact in float32 and float64); normal draws use Box-Muller on words 0 and 1:
``sqrt(-2 log(1 - u0)) * cos(2 pi u1)`` computed in the output's float dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symk.graph.scalar import NUMPY

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9  # golden ratio
W1 = 0xBB67AE85  # sqrt(3) - 1
ROUNDS = 10
#: counter word 2 of each kind of draw
SALT = {"uniform": 0, "normal": 1}


def _mulhilo(b: Any, m: int, x: Any) -> tuple[Any, Any]:
    p = b.mul(b.cast(x, "uint64"), b.const(m, "uint64"))
    return b.cast(b.shr(p, b.const(32, "uint64")), "uint32"), b.cast(p, "uint32")


def philox4x32(b: Any, ctr: tuple[Any, Any, Any, Any], key: tuple[Any, Any],
               rounds: int = ROUNDS) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32-``rounds`` of uint32 counter words ``ctr`` under uint32 key words ``key``,
    with the scalar builder ``b``."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0 = b.add(k0, b.const(W0, "uint32"))
            k1 = b.add(k1, b.const(W1, "uint32"))
        hi0, lo0 = _mulhilo(b, M0, c0)
        hi1, lo1 = _mulhilo(b, M1, c2)
        c0, c1, c2, c3 = (b.bitxor(b.bitxor(hi1, c1), k0), lo1,
                          b.bitxor(b.bitxor(hi0, c3), k1), lo0)
    return c0, c1, c2, c3


def key_words(seed: int) -> tuple[int, int]:
    s = int(seed) & 0xFFFFFFFFFFFFFFFF
    return s & 0xFFFFFFFF, s >> 32


def bits(b: Any, index: Any, count: Any, seed: int, salt: int) -> tuple[Any, Any, Any, Any]:
    """The four uint32 words of element ``index`` (int64) of call ``count`` (int64)."""
    i = b.cast(index, "uint64")
    ctr = (b.cast(i, "uint32"), b.cast(count, "uint32"), b.const(salt, "uint32"),
           b.cast(b.shr(i, b.const(32, "uint64")), "uint32"))
    k0, k1 = key_words(seed)
    return philox4x32(b, ctr, (b.const(k0, "uint32"), b.const(k1, "uint32")))


def to_unit(b: Any, x: Any, dtype: str) -> Any:
    """uint32 ``x`` -> float in [0, 1) of ``dtype``: ``(x >> 8) * 2**-24``."""
    top = b.cast(b.shr(x, b.const(8, "uint32")), dtype)
    return b.mul(top, b.const(2.0 ** -24, dtype))


def uniform(b: Any, index: Any, count: Any, seed: int, dtype: str) -> Any:
    return to_unit(b, bits(b, index, count, seed, SALT["uniform"])[0], dtype)


def normal(b: Any, index: Any, count: Any, seed: int, dtype: str) -> Any:
    w = bits(b, index, count, seed, SALT["normal"])
    u0, u1 = to_unit(b, w[0], dtype), to_unit(b, w[1], dtype)
    one = b.const(1.0, dtype)
    r = b.sqrt(b.mul(b.const(-2.0, dtype), b.log(b.sub(one, u0))))
    return b.mul(r, b.cos(b.mul(b.const(2 * np.pi, dtype), u1)))


def philox4x32_np(ctr: Any, key: Any, rounds: int = ROUNDS) -> np.ndarray:
    """numpy Philox: ``ctr`` (..., 4) and ``key`` (..., 2) uint32 arrays -> (..., 4) uint32."""
    ctr = np.asarray(ctr, np.uint32)
    key = np.asarray(key, np.uint32)
    with np.errstate(over="ignore"):
        out = philox4x32(NUMPY, tuple(ctr[..., j] for j in range(4)),
                         (key[..., 0], key[..., 1]), rounds)
    return np.stack([np.asarray(w, np.uint32) for w in out], axis=-1)
