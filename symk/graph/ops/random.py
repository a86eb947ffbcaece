"""Random number ops.  Each takes an int shape vector input and a ``seed`` attribute.

``random_uniform``, ``random_binomial`` and ``random_normal`` are counter-based: the value at
flat element index ``i`` of a node's ``c``-th call in a compiled function is a pure function of
(seed, i, c), Philox-4x32-10 (``symk.graph.philox``) written as a scalar expression.  Fusion
treats them as elementwise ops (``counter_based``): they are computed inside generated kernels,
taking the element index from the loop and the call number from the plan, with no numpy at run
time.  Executors keep one ``Counter`` per plan and random node (the call number), so the same
seed gives the same stream of values, call after call, on every device and in every process.
``truncated_normal`` (rejection sampling) keeps a numpy Generator seeded with ``seed``."""

from __future__ import annotations

import numpy as np

from symk.errors import SymkError
from symk.graph import philox
from symk.graph.op import Op, register
from symk.graph.scalar import NUMPY
from symk.graph.types import Type, as_dtype


class Counter:
    """The call number of one random node in one plan: ``take()`` gives it and counts on."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def take(self) -> int:
        n = self.n
        self.n = n + 1
        return n


class RandomOp(Op):
    arity = 1
    is_random = True
    #: computed by a scalar expression of (element index, call number): fuses like an
    #: elementwise op and takes a ``Counter`` where the others take a numpy Generator
    counter_based = False
    nondifferentiable = True
    params: tuple[str, ...] = ()

    @property
    def attr_names(self):  # type: ignore[override]
        return ("dtype", "seed", "shape", *self.params)

    def infer(self, inputs, dtype, seed, shape, **params):
        return Type(as_dtype(dtype), tuple(shape))

    def ref(self, rng: np.random.Generator, shape_vec, dtype, seed, shape, **p):
        shp = tuple(int(s) for s in shape_vec)
        return np.asarray(self.draw(rng, shp, **p)).astype(dtype, copy=False)

    def draw(self, rng, shape, **p):
        raise SymkError(f"internal error: random op '{self.name}' defines no draw")


class CounterRandom(RandomOp):
    counter_based = True
    #: computed inside generated kernels (fused with its consumers); False keeps the numpy
    #: evaluation of the same expression on every device
    in_kernels = True

    def ref(self, state, shape_vec, dtype, seed, shape, **p):  # type: ignore[override]
        shp = tuple(int(s) for s in shape_vec)
        if isinstance(state, Counter):
            count = state.take()
        else:  # a numpy Generator (a scan body's reference evaluation): a fresh call number
            count = int(state.integers(0, 2**32))
        idx = np.arange(int(np.prod(shp, dtype=np.int64)), dtype=np.int64).reshape(shp)
        with np.errstate(over="ignore"):
            v = self.scalar(NUMPY, idx, np.asarray(count, np.int64), dtype=dtype, seed=seed,
                            shape=shape, **p)
        return np.asarray(v).astype(dtype, copy=False).reshape(shp)

    def scalar(self, b, index, count, dtype, seed, shape, **p):
        """The value at flat element ``index`` (int64) of call number ``count`` (int64)."""
        raise SymkError(f"internal error: random op '{self.name}' has no scalar expression")


def _compute_dtype(dtype: str) -> str:
    return dtype if dtype in ("float32", "float64") else "float32"


@register
class RandomUniform(CounterRandom):
    name = "random_uniform"
    params = ("minval", "maxval")

    def scalar(self, b, index, count, dtype, seed, shape, minval, maxval):
        cd = _compute_dtype(dtype)
        u = philox.uniform(b, index, count, seed, cd)
        v = b.add(b.mul(u, b.const(maxval - minval, cd)), b.const(minval, cd))
        return b.cast(v, dtype)


@register
class RandomNormal(CounterRandom):
    name = "random_normal"
    params = ("mean", "stddev")
    # log/cos of LLVM's vector math may differ from numpy's in the last bit, and every device
    # must give identical values: normal draws are evaluated with numpy for now
    in_kernels = False

    def scalar(self, b, index, count, dtype, seed, shape, mean, stddev):
        cd = _compute_dtype(dtype)
        z = philox.normal(b, index, count, seed, cd)
        return b.cast(b.add(b.mul(z, b.const(stddev, cd)), b.const(mean, cd)), dtype)


@register
class TruncatedNormal(RandomOp):
    """Normal values more than two standard deviations from the mean are drawn again."""

    name = "truncated_normal"
    params = ("mean", "stddev")

    def draw(self, rng, shape, mean, stddev):
        z = rng.standard_normal(size=shape)
        bad = np.abs(z) > 2
        while bad.any():
            z[bad] = rng.standard_normal(size=int(bad.sum()))
            bad = np.abs(z) > 2
        return mean + stddev * z


@register
class RandomBinomial(CounterRandom):
    """Bernoulli draws: 1 with probability ``p`` (``u < p``, ``u`` a uniform draw)."""

    name = "random_binomial"
    params = ("p",)

    def scalar(self, b, index, count, dtype, seed, shape, p):
        u = philox.uniform(b, index, count, seed, "float32")
        return b.cast(b.lt(u, b.const(p, "float32")), dtype)
