"""The facts passes, codegen and runtimes read off an op (``Op.commutative``, ``reshapes``,
``may_alias``, ``combine``, ``averages``, ``broadcast_attr``) hold for each op's own numpy
reference: commutative ops commute, reshaping ops return their input's data in another shape,
a reduction's partial results combine as its ``combine`` says, and an elementwise op's output
has the broadcast shape of its inputs unless an attribute joins the broadcast."""

from __future__ import annotations

import numpy as np
import pytest

import symk.backend  # noqa: F401  (registers every op)
from symk.graph.op import REGISTRY
from symk.graph.ops.reduce import identity

RNG = np.random.default_rng(0)
COMBINE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum,
           "any": np.logical_or, "all": np.logical_and}


def _binary_elementwise():
    return sorted(n for n, op in REGISTRY.items()
                  if op.elementwise and getattr(op, "arity", None) == 2 and not op.attr_names)


@pytest.mark.parametrize("name", _binary_elementwise())
def test_commutative_is_true_exactly_for_ops_that_commute(name):
    op = REGISTRY[name]
    a = RNG.integers(1, 5, (4, 5)).astype("float64")
    b = RNG.integers(1, 5, (4, 5)).astype("float64")
    if op.kind == "logical":
        a, b = a > 2, b > 3
    commutes = np.array_equal(op.ref(a, b), op.ref(b, a))
    assert op.commutative == commutes, (name, op.commutative)


def test_reshaping_ops_return_their_inputs_data():
    x = np.arange(12.0).reshape(3, 4)
    cases = {"reshape": dict(shape=(4, 3)), "expand_dims": dict(axis=1),
             "squeeze": dict(axis=1)}
    names = {n for n, op in REGISTRY.items() if op.reshapes}
    assert names == set(cases)
    for name, attrs in cases.items():
        src = x.reshape(3, 1, 4) if name == "squeeze" else x
        out = REGISTRY[name].ref(src, **attrs)
        assert out.size == x.size and np.shares_memory(out, x), name
        assert REGISTRY[name].may_alias


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items()
                                        if op.combine is not None))
def test_a_reductions_partials_combine_as_it_says(name):
    op = REGISTRY[name]
    x = RNG.standard_normal((6, 5)) + 0.5
    if op.combine in ("any", "all"):
        x = x > 0.2
    whole = op.ref(x, axes=[0])
    lo, hi = op.ref(x[:2], axes=[0]), op.ref(x[2:], axes=[0])
    if op.averages:  # the means of the parts, weighted by their counts
        lo, hi = lo * 2 / 6, hi * 4 / 6
    combined = COMBINE[op.combine](lo, hi)
    np.testing.assert_allclose(combined, whole, rtol=1e-12)
    start = np.asarray(identity(op.combine, str(np.asarray(whole).dtype)))
    np.testing.assert_allclose(COMBINE[op.combine](start, whole), whole)


#: a value for each attribute an elementwise op takes (broadcast_to's shape widens (3, 1))
ATTRS = {"shape": (2, 3, 4), "dtype": "float32", "alpha": 0.1, "max_value": None,
         "threshold": 0.0}


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items() if op.elementwise))
def test_broadcast_attr_is_true_exactly_for_ops_widening_the_inputs_broadcast(name):
    op = REGISTRY[name]
    shapes = [(3, 1), (1, 4), (3, 4)][:op.arity]
    xs = [RNG.integers(1, 5, s).astype("float64") for s in shapes]
    if op.kind == "logical":
        xs = [x > 2 for x in xs]
    out = op.ref(*xs, **{k: ATTRS[k] for k in op.attr_names})
    widened = out.shape != np.broadcast_shapes(*shapes)
    assert op.broadcast_attr == widened, (name, out.shape)
