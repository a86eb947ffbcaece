"""Gradients of the collective ops in a single process (no communicator: each is the
identity, its gradient the gradient's allreduce, also the identity) against finite
differences, on every device."""

from __future__ import annotations

import pytest

from tests.gradcheck import check_grad, op, op_case_params

S = (3, 4)

OP_CASES: dict[str, list[tuple]] = {
    "allreduce": [(op("allreduce"), [S], {})],
    "allreduce_group": [(op("allreduce_group", result=1), [S, (2,), (5, 1)], {})],
    "broadcast": [(op("broadcast", root=0), [S], {})],
}


@pytest.mark.parametrize("fn,shapes,opts", op_case_params(OP_CASES))
def test_op_gradient(fn, shapes, opts):
    check_grad(fn, shapes, **opts)
