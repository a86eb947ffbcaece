"""Every differentiable op of the registry, built directly as graph nodes, against finite
differences; a new op without a gradient rule and a check fails ``test_registry``.  Checks
live in ``OP_CASES`` here or in an ``OP_CASES`` of any other ``tests/graph/test_gradients_*.py``
module (one per op family, so that families are added without editing this file)."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest

from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.op import Op, all_ops
from tests.gradcheck import check_grad, node_fn, op, op_case_params

POS = {"low": 0.2, "high": 2.0}
IDX = np.array([1, 0, 1, 3], np.int32)
S = (3, 4)

OP_CASES: dict[str, list[tuple]] = {
    "abs": [(op("abs"), [S], {"kinks": (0,)})],
    "neg": [(op("neg"), [S], {})],
    "square": [(op("square"), [S], {})],
    "sqrt": [(op("sqrt"), [S], POS)],
    "exp": [(op("exp"), [S], {})],
    "expm1": [(op("expm1"), [S], {})],
    "log": [(op("log"), [S], POS)],
    "log1p": [(op("log1p"), [S], {"low": -0.8, "high": 2.0})],
    "sin": [(op("sin"), [S], {})],
    "cos": [(op("cos"), [S], {})],
    "tanh": [(op("tanh"), [S], {})],
    "erf": [(op("erf"), [S], {"low": -2, "high": 2})],
    "sigmoid": [(op("sigmoid"), [S], {"low": -4, "high": 4})],
    "softplus": [(op("softplus"), [S], {"low": -4, "high": 4})],
    "softsign": [(op("softsign"), [S], {"kinks": (0,)})],
    "hard_sigmoid": [(op("hard_sigmoid"), [S], {"low": -3, "high": 3, "kinks": (-2.5, 2.5)})],
    "relu": [(op("relu", alpha=0.3, max_value=0.7, threshold=-0.2), [S],
              {"kinks": (-0.2, 0, 0.7)})],
    "elu": [(op("elu", alpha=0.7), [S], {"kinks": (0,)})],
    "add": [(op("add"), [(3, 1), (4,)], {})],
    "sub": [(op("sub"), [(4,), (3, 1)], {})],
    "mul": [(op("mul"), [(1, 4), (3, 1)], {})],
    "div": [(op("div"), [S, (1, 4)], POS)],
    "pow": [(op("pow"), [S, (4,)], POS)],
    "mod": [(op("mod"), [np.full(S, 1.25) + np.arange(12).reshape(S) * 0.01,
                         np.full((4,), 0.8)], {})],
    "maximum": [(op("maximum"), [S, (4,)], {})],
    "minimum": [(op("minimum"), [(3, 1), S], {})],
    "where": [(op("where"), [np.arange(12).reshape(S) % 3 == 0, S, (4,)], {})],
    "clip": [(op("clip"), [S, np.full((4,), -0.4), np.full((3, 1), 0.5)],
              {"kinks": (-0.4, 0.5)})],
    "cast": [(node_fn(lambda x: gb.mul(gb.cast(gb.cast(x, "float32"), "float64"), x)),
              [np.linspace(-1, 1, 6)], {"eps": 1e-3, "rtol": 1e-4, "atol": 1e-4})],
    "broadcast_like": [(op("broadcast_like"), [(3, 1), S], {})],
    "broadcast_to": [(op("broadcast_to", shape=(2, 3, 4)), [(3, 1)], {})],
    "sum": [(op("sum", axes=(1,), keepdims=False), [S], {})],
    "prod": [(op("prod", axes=(0,), keepdims=True), [S], {"low": 0.5, "high": 1.5})],
    "mean": [(op("mean", axes=(0, 1), keepdims=False), [S], {})],
    "max": [(op("max", axes=(1,), keepdims=True), [S], {})],
    "min": [(op("min", axes=(0,), keepdims=False), [S], {})],
    "logsumexp": [(op("logsumexp", axes=(1,), keepdims=False), [S], {})],
    "cumsum": [(op("cumsum", axis=1, reverse=False), [S], {}),
               (op("cumsum", axis=0, reverse=True), [S], {})],
    "cumprod": [(op("cumprod", axis=1, reverse=False), [S], {"low": 0.5, "high": 1.5}),
                (op("cumprod", axis=0, reverse=True), [S], {"low": 0.5, "high": 1.5})],
    "einsum": [(op("einsum", spec="ab,bc->ac"), [(2, 3), (3, 2)], {}),
               (op("einsum", spec="abc,ad->bd"), [(2, 3, 2), (2, 2)], {})],
    "gemm": [(op("gemm", spec="ij,jk->ik"), [(3, 5), (3, 4), (4, 5), (), ()], {}),
             (op("gemm", spec="ji,kj->ki"), [(5, 3), (4, 3), (5, 4), (), ()], {})],
    "softmax": [(op("softmax", axis=0), [S], {})],
    "log_softmax": [(op("log_softmax", axis=1), [S], {})],
    "print": [(op("print", message=""), [(2,)], {})],
    "reshape": [(op("reshape", shape=(2, 6)), [S], {})],
    "transpose": [(op("transpose", perm=(1, 0)), [S], {})],
    "expand_dims": [(op("expand_dims", axis=1), [S], {})],
    "squeeze": [(op("squeeze", axis=0), [(1, 4)], {})],
    "concatenate": [(op("concatenate", axis=0), [(1, 4), S], {})],
    "concat_part": [(op("concat_part", axis=1, index=1), [(3, 7), (3, 2), (3, 5)], {})],
    "getitem": [(op("getitem", spec=(("s", 2, 0, -1), ("i", 1), ("n",))), [S], {})],
    "slice_grad": [(op("slice_grad", spec=(("s", 1, None, None), ("n",))), [(2, 1, 4), S],
                    {})],
    "gather": [(node_fn(lambda x: apply("gather", [x, gb.const(IDX)])), [(4, 2)], {})],
    "gather_grad": [(node_fn(lambda g, x: apply("gather_grad", [g, gb.const(IDX), x])),
                     [(4, 2), (5, 2)], {})],
    "reverse": [(op("reverse", axes=(0, 1)), [S], {})],
    "tile": [(op("tile", reps=(2, 1)), [S], {})],
    "tile_grad": [(op("tile_grad", reps=(1, 3)), [(2, 6), (2, 2)], {})],
    "repeat": [(op("repeat", rep=2, axis=0), [S], {})],
    "repeat_grad": [(op("repeat_grad", rep=3, axis=1), [(2, 6), (2, 2)], {})],
    "pad": [(op("pad", pads=((1, 0), (2, 1)), value=0), [S], {})],
}


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient(fn, shapes, opts):
    check_grad(fn, shapes, **opts)


def test_registry():
    """Every non-leaf op has a gradient rule or is marked nondifferentiable, and every
    differentiable op has a finite-difference check above."""
    ops = all_ops()
    missing_rule = sorted(n for n, o in ops.items()
                          if not o.nondifferentiable and type(o).vjp is Op.vjp)
    assert not missing_rule, f"ops without a gradient rule: {missing_rule}"
    differentiable = {n for n, o in ops.items() if not o.nondifferentiable}
    unchecked = sorted(differentiable - _checked_ops())
    assert not unchecked, f"differentiable ops without a gradient check: {unchecked}"


def _checked_ops() -> set[str]:
    """Op names with a finite-difference check in any ``tests/graph/test_gradients_*`` module."""
    import tests.graph as pkg

    names: set[str] = set()
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("test_gradients"):
            mod = importlib.import_module(f"tests.graph.{info.name}")
            names |= set(getattr(mod, "OP_CASES", {}))
    return names
