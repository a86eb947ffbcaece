"""Row separability of a scan body: when a loop may run as independent loops over its rows.

Most recurrent steps treat each batch row on its own: ``h_t[b]`` depends on ``x_t[b]`` and
``h_{t-1}[b]`` only (a product with a weight, gates, a mask per row).  Such a loop over a
batch of B rows is the same as loops over any partition of the rows, run side by side with
no exchange between them: the runtime gives each core a share of the rows for the whole
loop (no synchronisation per step).

:func:`row_split` decides it from each op's own rule (``Op.row_axis``: where the rows of its
inputs go, or None when the op mixes rows or does not say), starting from axis 0 of every
sequence step and carry, and requiring every output and new carry to keep its rows on axis
0.  It returns the body rebuilt with an unknown number of rows, so its compiled kernels take
any share of them.  A loop constant with as many rows (a recurrent dropout mask; the ones a
gradient multiplies by) is split with the rows when that makes the body separable.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from symk.errors import SymkError
from symk.graph.node import Node, substitute
from symk.graph.ops.scan import ScanBody, placeholder_like

#: body -> how it splits by rows (None: it does not), once decided
_decided: weakref.WeakKeyDictionary[ScanBody, RowSplit | None] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RowSplit:
    """A separable body rebuilt with an unknown number of rows (``body``: same inputs in the
    same order), and the indices of its constants that hold rows too (per-row values fixed
    over time, such as a recurrent dropout mask): each share of the rows reads its rows of
    those."""

    body: ScanBody
    row_consts: tuple[int, ...]


def row_axes(body: ScanBody, row_consts: Sequence[int] = ()) -> dict[int, int] | None:
    """{id(node): its row axis} over the body's nodes (absent: the same for every row), with
    the rows on axis 0 of every sequence step, carry and constant in ``row_consts``; None
    when some op mixes rows or some output or new carry would not keep its rows on axis 0."""
    loop = _row_inputs(body, row_consts)
    rows = {p.shape[0] if p.ndim else -1 for p in loop}
    if len(rows) != 1 or -1 in rows:
        return None
    axes: dict[int, int] = {id(p): 0 for p in loop}
    for n in body.order:
        if id(n) in axes or n.op.is_leaf:
            continue
        ins = [axes.get(id(i)) for i in n.inputs]
        if all(a is None for a in ins):
            continue  # the same for every row
        if n.op.is_random:
            return None  # a share of the rows would draw other numbers
        a = n.op.row_axis(n, ins)
        if a is None:
            return None
        axes[id(n)] = a
    if any(axes.get(id(r)) != 0 for r in body.outs + body.new_carries):
        return None
    return axes


def row_split(body: ScanBody) -> RowSplit | None:
    """How ``body`` splits by rows (axis 0 of sequence steps and carries), when every row is
    computed from the same row alone; else None.  Constants with as many rows are first
    taken as per-row values, then (when that fails) as shared by all rows.  Decided once
    per body."""
    if body in _decided:
        return _decided[body]
    made: RowSplit | None = None
    first = body.seqs[0] if body.seqs else (body.carries[0] if body.carries else None)
    rows = first.shape[0] if first is not None and first.ndim else -1
    candidates = tuple(i for i, c in enumerate(body.consts) if c.ndim and c.shape[0] == rows)
    for row_consts in ((candidates, ()) if candidates else ((),)):
        if row_axes(body, row_consts) is not None:
            made = _generalized(body, row_consts)
            break
    _decided[body] = made
    return made


def _generalized(body: ScanBody, row_consts: tuple[int, ...]) -> RowSplit | None:
    """``body`` with an unknown number of rows, or None when some op fixes it."""
    mapping: dict[int, Node] = {id(p): placeholder_like(p, (None,) + p.shape[1:])
                                for p in _row_inputs(body, row_consts)}
    try:
        roots = substitute(list(body.outs) + list(body.new_carries), mapping)
    except SymkError:  # a shape fixed by the number of rows somewhere: keep them
        return None
    if not all(r.shape[:1] == (None,) for r in roots):
        return None
    k = len(body.outs)
    return RowSplit(ScanBody([mapping[id(p)] for p in body.seqs],
                             [mapping[id(p)] for p in body.carries],
                             [mapping.get(id(p), p) for p in body.consts],
                             roots[:k], roots[k:]), row_consts)


def _row_inputs(body: ScanBody, row_consts: Sequence[int]) -> list[Node]:
    """The body's placeholders holding rows on axis 0: sequence steps, carries and the
    constants in ``row_consts``."""
    return list(body.seqs) + list(body.carries) + [body.consts[i] for i in row_consts]
