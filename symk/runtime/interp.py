"""The reference executor (device ``interp``): evaluates nodes in topological order with each
op's numpy reference.  Simple and exact on purpose: it is the oracle for every faster target.

Every computed value is checked against its node's static type, so a wrong type rule is caught
here rather than becoming a silently wrong number elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symk.errors import ShapeError, SymkError
from symk.graph.node import Node, creation_line
from symk.graph.storage import Storage
from symk.graph.tensor import storage_of

Step = tuple[Node, Any, tuple[int, ...], dict[str, Any], int]


class InterpPlan:
    """An evaluation order over ``roots`` with slots for every node."""

    def __init__(self, roots: Sequence[Node], fed: Sequence[Node]) -> None:
        fed_ids = {id(n) for n in fed}
        order = _toposort_stop_at(roots, fed_ids)
        self.slot: dict[int, int] = {id(n): i for i, n in enumerate(order)}
        self.order = order
        self.fed_slots = [self.slot.get(id(n), -1) for n in fed]
        self.variables: list[tuple[int, Storage]] = []
        self.constants: list[tuple[int, np.ndarray]] = []
        self.defaults: list[tuple[int, Node]] = []
        self.steps: list[Step] = []
        self.rngs: dict[int, np.random.Generator] = {}
        for i, n in enumerate(order):
            if id(n) in fed_ids:
                continue
            op = n.op
            if op.name == "variable":
                self.variables.append((i, storage_of(n)))
            elif op.name == "constant":
                self.constants.append((i, n.attrs["value"].array))
            elif op.name == "placeholder":
                self.defaults.append((i, n))
            else:
                ins = tuple(self.slot[id(x)] for x in n.inputs)
                if op.is_random:
                    self.rngs[i] = np.random.default_rng(n.attrs["seed"])
                self.steps.append((n, op.ref, ins, dict(n.attrs), i))

    def run(self, feeds: Sequence[np.ndarray]) -> list[Any]:
        vals: list[Any] = [None] * len(self.order)
        for s, v in zip(self.fed_slots, feeds):
            if s >= 0:
                vals[s] = v
        for i, var in self.variables:
            vals[i] = var.value
        for i, c in self.constants:
            vals[i] = c
        for i, n in self.defaults:
            d = n.attrs.get("default")
            if d is None:
                name = n.attrs.get("uid")
                from symk.graph.node import node_name

                raise SymkError(f"placeholder '{node_name(n) or name}' (created at "
                                f"{creation_line(n)}) is needed but was not fed; pass it in "
                                "the function's inputs")
            vals[i] = d.array
        with np.errstate(all="ignore"):
            for node, fn, ins, attrs, out in self.steps:
                args = [vals[j] for j in ins]
                try:
                    if out in self.rngs:
                        v = fn(self.rngs[out], *args, **attrs)
                    else:
                        v = fn(*args, **attrs)
                except SymkError as e:
                    raise type(e)(f"{e}\n  in op '{node.op.name}' created at "
                                  f"{creation_line(node)}") from None
                except (ValueError, IndexError, TypeError, FloatingPointError) as e:
                    raise SymkError(f"op '{node.op.name}' failed at run time on inputs of shape "
                                    f"{[np.shape(a) for a in args]}: {e}\n  node created at "
                                    f"{creation_line(node)}") from None
                v = np.asarray(v)
                _check(node, v, args)
                vals[out] = v
        return vals


def _toposort_stop_at(roots: Sequence[Node], fed_ids: set[int]) -> list[Node]:
    """Topological order of what ``roots`` need, not descending below fed nodes."""
    order: list[Node] = []
    seen: set[int] = set()
    for r in roots:
        if id(r) in seen:
            continue
        seen.add(id(r))
        stack = [(r, 0)]
        while stack:
            n, i = stack[-1]
            ins = () if id(n) in fed_ids else n.inputs
            if i < len(ins):
                stack[-1] = (n, i + 1)
                c = ins[i]
                if id(c) not in seen:
                    seen.add(id(c))
                    stack.append((c, 0))
            else:
                stack.pop()
                order.append(n)
    return order


def _check(node: Node, v: np.ndarray, args: list[Any]) -> None:
    t = node.type
    if v.dtype.name != t.dtype:
        raise SymkError(f"internal error: op '{node.op.name}' produced {v.dtype.name}, its type "
                        f"rule says {t.dtype} (node created at {creation_line(node)})")
    if v.ndim != t.ndim or any(d is not None and d != s for d, s in zip(t.shape, v.shape)):
        raise SymkError(f"internal error: op '{node.op.name}' produced shape {v.shape}, its "
                        f"type rule says {t} (node created at {creation_line(node)})")
    if node.op.elementwise:
        for inp, a in zip(node.inputs, args):
            off = v.ndim - inp.ndim
            for k, d in enumerate(inp.shape):
                if d is None and np.shape(a)[k] == 1 and v.shape[off + k] != 1:
                    raise ShapeError(
                        f"op '{node.op.name}': input of static shape {inp.shape} had size 1 in "
                        f"dimension {k} at run time and was broadcast to {v.shape[off + k]}; "
                        "symk broadcasts only dimensions declared as 1 (reshape or declare the "
                        f"dimension as 1)\n  node created at {creation_line(node)}")
