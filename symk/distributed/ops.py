"""The collectives as ``K``-level calls: ``allreduce`` and ``broadcast`` of tensors (symbolic
ops in the graph) or of arrays and numbers (computed at once), and ``broadcast_variables``.

An average is the sum times ``1 / size()``, a constant the fusion pass folds into the kernels
that use it (a gradient's average costs no pass of its own).  In a job of one process every
call returns its argument (tensors) or a copy of it (values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from symk.backend import _variables as kv
from symk.backend._core import is_sym
from symk.distributed.comm import mpi_communicator, size
from symk.errors import ArgumentError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.ops.collective import pack, unpack
from symk.graph.tensor import Tensor, to_node


def _root(root_rank: Any) -> int:
    if isinstance(root_rank, bool) or not isinstance(root_rank, (int, np.integer)):
        raise ArgumentError(f"root_rank must be an int, got {root_rank!r}")
    r = int(root_rank)
    if not 0 <= r < size():
        raise ArgumentError(f"root_rank {r} is not one of the {size()} ranks")
    return r


def _scaled(node, ranks: int):
    """The average of a sum over ``ranks``: floor division for integers (the dtype stays)."""
    if np.dtype(node.dtype).kind in "iu":
        return gb.floordiv(node, gb.const(np.asarray(ranks, node.dtype)))
    return gb.mul(node, gb.const(np.asarray(1.0 / ranks, node.dtype)))


def allreduce(tensor: Any, average: bool = True, name: str | None = None) -> Any:
    """The sum (``average``: the mean) of ``tensor`` over the ranks.  A tensor gives a tensor
    (an op of its graph); an array or a number gives an array, computed now."""
    if not is_sym(tensor):
        value = np.array(tensor, copy=True, order="C")
        comm = mpi_communicator()
        if comm is None:
            return value
        flat = value.reshape(-1)
        comm.allreduce(flat, flat, f"allreduce{f' {name!r}' if name else ''} of an array of "
                              f"shape {value.shape}")
        out = flat.reshape(value.shape)
        if average:
            out = out // comm.size if out.dtype.kind in "iu" else out / comm.size
        return out
    ranks = size()
    if ranks == 1:
        return tensor
    node = apply("allreduce", [to_node(tensor)])
    return Tensor(_scaled(node, ranks) if average else node, name)


def broadcast(tensor: Any, root_rank: int, name: str | None = None) -> Any:
    """Rank ``root_rank``'s ``tensor`` on every rank (a tensor, or an array computed now)."""
    root = _root(root_rank)
    if not is_sym(tensor):
        value = np.array(tensor, copy=True, order="C")
        comm = mpi_communicator()
        if comm is not None:
            comm.broadcast_(value.reshape(-1), root,
                            f"broadcast of an array of shape {value.shape}")
        return value
    if size() == 1:
        return tensor
    return Tensor(apply("broadcast", [to_node(tensor)], root=root), name)


def broadcast_variables(variables: Sequence[Any], root_rank: int = 0) -> None:
    """Set every variable to rank ``root_rank``'s value (one collective per dtype)."""
    variables = list(variables)
    root = _root(root_rank)
    comm = mpi_communicator()
    if comm is None or not variables:
        return
    values = kv.batch_get_value(variables)
    by_dtype: dict[np.dtype, list[int]] = {}
    for i, v in enumerate(values):
        by_dtype.setdefault(np.asarray(v).dtype, []).append(i)
    new: list[Any] = list(values)
    for dtype in sorted(by_dtype, key=str):  # the same order on every rank
        idx = by_dtype[dtype]
        arrays = [np.asarray(values[i]) for i in idx]
        flat, _ = pack(arrays)
        comm.broadcast_(flat, root, f"broadcast of {len(idx)} {dtype} variables")
        for i, v in zip(idx, unpack(flat, arrays)):
            new[i] = v
    kv.batch_set_value(list(zip(variables, new)))
