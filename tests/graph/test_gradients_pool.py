"""The pooling ops (pool and its gradient ops) built as graph nodes, against finite
differences.  Random inputs have no ties inside a window, so max-pool gradients are smooth at
the checked points."""

from __future__ import annotations

import pytest

from tests.gradcheck import check_grad, op_case_params
from tests.graph.test_gradients_ops import op

W2 = {"pool_size": (2, 3), "strides": (2, 1), "padding": "same"}
W3 = {"pool_size": (2, 2, 2), "strides": (1, 2, 1), "padding": "valid"}

OP_CASES: dict[str, list[tuple]] = {
    "pool": [(op("pool", mode="max", **W2), [(2, 5, 4, 2)], {}),
             (op("pool", mode="avg", **W2), [(2, 5, 4, 2)], {}),
             (op("pool", mode="max", **W3), [(1, 3, 4, 3, 2)], {}),
             (op("pool", mode="avg", pool_size=(3,), strides=(2,), padding="same"),
              [(2, 6, 2)], {})],
    # (x, g): linear in g; the gradient w.r.t. x is zero away from ties
    "max_pool_grad": [(op("max_pool_grad", **W2), [(2, 5, 4, 2), (2, 3, 4, 2)], {})],
    # (x, h): h read at the windows' maxima of x
    "max_pool_select": [(op("max_pool_select", **W2), [(2, 5, 4, 2), (2, 5, 4, 2)], {}),
                        (op("max_pool_select", **W3), [(1, 3, 4, 3, 2), (1, 3, 4, 3, 2)],
                         {})],
    # (g, x): x only gives the shape
    "avg_pool_grad": [(op("avg_pool_grad", **W2), [(2, 3, 4, 2), (2, 5, 4, 2)], {}),
                      (op("avg_pool_grad", **W3), [(1, 2, 2, 2, 2), (1, 3, 4, 3, 2)], {})],
}


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient(fn, shapes, opts):
    check_grad(fn, shapes, **opts)


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient_dynamic(fn, shapes, opts):
    check_grad(fn, shapes, dynamic=True, **opts)
