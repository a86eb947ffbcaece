"""Run-time shape checks of compiled kernels, and the errors every device raises when a step
fails at run time.

A native kernel indexes its inputs with the extents its lowering assumed (``in_checks`` of a
``LoweredKernel``: dimensions declared ``None`` that must equal a size read from another input,
or a static extent).  ``kernel_sizes_checked`` verifies them before a launch (the ``cpu`` device
inlines the same loop in its step and calls ``kernel_mismatch`` only to word the error), so a
kernel is never handed an array smaller than what it reads.  ``step_failure`` turns any other
failure of a step (numpy's own shape errors in extern calls) into a ``ShapeError`` naming the K
function, the input shapes and the user's line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symk.errors import ShapeError, SymkError
from symk.graph.node import Node, creation_line, describe_origin, node_name
from symk.graph.types import shape_str


def describe_tensor(node: Node) -> str:
    """``'x' (placeholder float32[?,4], created at file:line)`` or the op that made it."""
    name = node_name(node)
    if node.op.is_leaf:
        label = f"'{name}' " if name else ""
        return f"{label}({node.op.name} {node.type}, created at {creation_line(node)})"
    label = f"'{name}', " if name else ""
    return f"the result of {describe_origin(node)[:-1]}, {label}{node.type})"


def kernel_sizes_checked(call: Any, shapes: Sequence[tuple[int, ...]],
                         nodes: Sequence[Node] = ()) -> list[int]:
    """The kernel's size parameters read from its inputs' run-time ``shapes``, after checking
    every extent its indexing assumes (a ``ShapeError`` if one differs).  The call counters
    of its random nodes (``counter_args``) follow them in the kernel's parameters."""
    try:  # (entries (-1, j) of size_sources are call counters of random nodes, not sizes)
        sizes = [shapes[i][ax] for i, ax in call.size_sources if i >= 0]
        for j, ax, k, d in call.in_checks:
            if shapes[j][ax] != (sizes[k] if k >= 0 else d):
                raise IndexError
    except IndexError:
        raise kernel_mismatch(call, shapes, nodes) from None
    if call.nonempty and not all(sizes[k] for k in call.nonempty):
        raise empty_reduction(nodes)
    return sizes


def empty_reduction(nodes: Sequence[Node]) -> ShapeError:
    """The error for a kernel whose max/min/argmax/argmin (``Op.needs_elements``) reduces an
    axis that is empty at run time (the native loop would return its start value)."""
    r = next((n for n in nodes if n.op.needs_elements), None)
    if r is None:  # pragma: no cover - only kernels holding such a reduction check
        return ShapeError("a reduction with no value over zero elements got an empty axis")
    return ShapeError(f"{describe_origin(r)} reduces an axis that is empty at run time, of "
                      f"{describe_tensor(r.inputs[0])}: the {r.op.name} of no elements is "
                      "undefined")


def _consumer(nodes: Sequence[Node], x: Node) -> Node | None:
    """The first kernel node reading ``x`` (the user's operation that combined it)."""
    return next((n for n in nodes if any(i is x for i in n.inputs)), None)


def kernel_mismatch(call: Any, shapes: Sequence[Any], nodes: Sequence[Node] = ()
                    ) -> ShapeError:
    """The error for the first assumption of ``call`` that the run-time ``shapes`` break."""
    shapes = [tuple(np.shape(s)) if not isinstance(s, tuple) else s for s in shapes]
    ins = call.inputs
    for j, x in enumerate(ins):
        if len(shapes[j]) != x.ndim:
            return ShapeError(f"{describe_tensor(x)} has rank {len(shapes[j])} at run time "
                              f"(shape {shapes[j]}); its type is {x.type}")
    sizes = [shapes[i][ax] for i, ax in call.size_sources if i >= 0]
    for j, ax, k, d in call.in_checks:
        got = shapes[j][ax]
        want = sizes[k] if k >= 0 else d
        if got == want:
            continue
        x = ins[j]
        user = _consumer(nodes, x)
        where = f" in {describe_origin(user)}" if user is not None else ""
        if k >= 0:
            i, sax = call.size_sources[k]
            why = (f"must be {want}, the size of dimension {sax} of {describe_tensor(ins[i])}, "
                   f"which has shape {shapes[i]}")
        else:
            why = f"must be {want} (its static size in this computation)"
        hint = (" (symk broadcasts only dimensions declared as 1)" if got == 1 else "")
        return ShapeError(f"run-time shapes do not agree{where}: {describe_tensor(x)} has shape "
                          f"{shapes[j]}, and its dimension {ax} {why}{hint}")
    return ShapeError(f"internal error: kernel {call.name} rejected input shapes {shapes}")


def step_failure(node: Node, e: BaseException, args: Sequence[Any]) -> SymkError:
    """A step's run-time failure as a symk error naming the K function and the user's line
    (SymkErrors keep their class and gain the line; numpy's value/index errors are shape
    errors of the inputs)."""
    if isinstance(e, SymkError):
        return type(e)(f"{e}\n  in {describe_origin(node)}")
    shapes = ", ".join(shape_str(np.shape(a)) for a in args)
    kind = ShapeError if isinstance(e, (ValueError, IndexError)) else SymkError
    ins = "".join(f"\n  input {k}: {describe_tensor(x)}, shape {shape_str(np.shape(a))}"
                  for k, (x, a) in enumerate(zip(node.inputs, args)))
    return kind(f"{describe_origin(node)} failed at run time on inputs of shape {shapes}: "
                f"{e}{ins}")


def counter_args(plan: Any, call: Any, nodes: Sequence[Node]) -> list[int]:
    """The next call numbers of the kernel's counter-based random nodes (the ``(-1, j)``
    entries of ``size_sources``: node ``j`` of the kernel), passed after its sizes."""
    return [plan.counter(nodes[j]).take() for i, j in call.size_sources if i < 0]
