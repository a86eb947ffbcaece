"""Random number ops.  Each takes an int shape vector input and a ``seed`` attribute; the
executor gives each random node its own generator seeded with ``seed``, so the same seed gives
the same stream of values, call after call."""

from __future__ import annotations

import numpy as np

from symk.errors import SymkError
from symk.graph.op import Op, register
from symk.graph.types import Type, as_dtype


class RandomOp(Op):
    arity = 1
    is_random = True
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


@register
class RandomUniform(RandomOp):
    name = "random_uniform"
    params = ("minval", "maxval")

    def draw(self, rng, shape, minval, maxval):
        return rng.uniform(minval, maxval, size=shape)


@register
class RandomNormal(RandomOp):
    name = "random_normal"
    params = ("mean", "stddev")

    def draw(self, rng, shape, mean, stddev):
        return rng.normal(mean, stddev, size=shape)


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
class RandomBinomial(RandomOp):
    """Bernoulli draws: 1 with probability ``p``."""

    name = "random_binomial"
    params = ("p",)

    def draw(self, rng, shape, p):
        return rng.uniform(0.0, 1.0, size=shape) < p
