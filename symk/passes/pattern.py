"""A small pattern language over Nodes.

``Pat("log", Pat("softmax", X, attrs={"axis": A}))`` matches ``log(softmax(x, axis=a))`` and
binds ``X`` and ``A``.  Captures are ``Var`` objects (any node, optionally constrained by a
predicate); attribute values may be captured with ``AttrVar``.  Commutative binary ops match
their operands in either order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symk.graph.node import Node

Bindings = dict[str, Any]


@dataclass(frozen=True)
class Var:
    """Capture any node (satisfying ``pred`` when given) under ``name``."""

    name: str
    pred: Callable[[Node], bool] | None = None


@dataclass(frozen=True)
class AttrVar:
    """Capture an attribute value under ``name``."""

    name: str


@dataclass(frozen=True)
class Pat:
    op: str
    inputs: tuple[Any, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # bind the matched node itself

    def __init__(self, op: str, *inputs: Any, attrs: dict[str, Any] | None = None,
                 name: str | None = None) -> None:
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "attrs", dict(attrs or {}))
        object.__setattr__(self, "name", name)


def const_pred(value: float | None = None) -> Callable[[Node], bool]:
    """Predicate: a constant node (all elements equal to ``value`` when given)."""
    def pred(n: Node) -> bool:
        if n.op.name != "constant":
            return False
        if value is None:
            return True
        a = n.attrs["value"].array
        if a.size == 1:
            return bool(a.reshape(()) == value)  # (the common case, without a reduction)
        return a.size > 0 and bool(np.all(a == value))
    pred.op = "constant"  # type: ignore[attr-defined]  # lets rule sets pre-check the op
    return pred


def Const(name: str, value: float | None = None) -> Var:  # noqa: N802
    return Var(name, const_pred(value))


def match(pat: Any, node: Node, b: Bindings | None = None) -> Bindings | None:
    """Bindings if ``node`` matches ``pat`` (consistently with ``b``), else None."""
    b = {} if b is None else b
    if isinstance(pat, Var):
        if pat.pred is not None and not pat.pred(node):
            return None
        old = b.get(pat.name)
        if old is not None:
            return b if old is node else None
        return {**b, pat.name: node}
    if not isinstance(pat, Pat) or (pat.op != "*" and node.op.name != pat.op):
        return None
    for k, v in pat.attrs.items():
        have = node.attrs.get(k)
        if isinstance(v, AttrVar):
            if v.name in b and b[v.name] != have:
                return None
            b = {**b, v.name: have}
        elif callable(v):
            if not v(have):
                return None
        elif have != v:
            return None
    if pat.inputs:
        if len(pat.inputs) != len(node.inputs):
            return None
        orders = [node.inputs]
        if pat.op != "*" and node.op.commutative and len(node.inputs) == 2:
            orders.append(node.inputs[::-1])
        for ins in orders:
            bb: Bindings | None = b
            for p, i in zip(pat.inputs, ins):
                bb = match(p, i, bb)
                if bb is None:
                    break
            if bb is not None:
                b = bb
                break
        else:
            return None
    if pat.name:
        if b.get(pat.name, node) is not node:  # the name is bound to another node
            return None
        b = {**b, pat.name: node}
    return b
