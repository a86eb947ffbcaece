"""Reverse-mode differentiation over Nodes using each op's vector-Jacobian rule."""

from __future__ import annotations

from collections.abc import Sequence

from symk.errors import SymkError
from symk.graph import build as gb
from symk.graph.node import Node, creation_line, toposort
from symk.graph.types import is_float


def gradients(cost: Node, wrt: Sequence[Node]) -> list[Node]:
    """d(sum(cost))/d(w) for each w; zeros for a w the cost does not depend on."""
    if not is_float(cost.dtype):
        raise SymkError(f"gradients: the loss must be floating point, got {cost.dtype}")
    if cost.ndim:
        cost = gb.sum(cost)  # a non-scalar loss is summed, as in Theano
    order = toposort([cost])
    wrt_ids = {id(w) for w in wrt}
    relevant: set[int] = set()
    for n in order:
        if id(n) in wrt_ids or any(id(i) in relevant for i in n.inputs):
            relevant.add(id(n))
    contribs: dict[int, list[Node]] = {id(cost): [gb.ones_like(cost)]}
    total: dict[int, Node] = {}
    for node in reversed(order):
        parts = contribs.pop(id(node), None)
        if parts is None or id(node) not in relevant:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = gb.add(g, p)
        total[id(node)] = g
        if not node.inputs or not any(id(i) in relevant and is_float(i.dtype)
                                      for i in node.inputs):
            continue
        in_grads = node.op.vjp(node, g)
        for inp, gi in zip(node.inputs, in_grads, strict=True):
            if gi is None or id(inp) not in relevant or not is_float(inp.dtype):
                continue
            if gi.dtype != inp.dtype:
                gi = gb.cast(gi, inp.dtype)
            if gi.ndim != inp.ndim or any(a is not None and b is not None and a != b
                                          for a, b in zip(gi.shape, inp.shape)):
                raise SymkError(f"internal error: gradient rule of '{node.op.name}' gave "
                                f"{gi.type} for input {inp.type} (node from "
                                f"{creation_line(node)})")
            contribs.setdefault(id(inp), []).append(gi)
    out = []
    for w in wrt:
        g = total.get(id(w))
        out.append(g if g is not None else gb.zeros_like(w))
    return out
