"""Collective ops across the processes of a data-parallel job: ``allreduce`` (the sum of a
tensor over the ranks), ``allreduce_group`` (several tensors summed through one flat buffer by
one collective; the ``collectives`` pass builds it from ``allreduce`` nodes) and ``broadcast``
(the root rank's value on every rank).

The graph layer does not know how processes talk: ``symk.distributed`` installs a
:class:`Communicator` (``set_communicator``) when it starts a job of several processes.  With
none installed (one process), every collective is the identity.  Every rank must run the same
collectives in the same order, so these ops are never evaluated at compile time
(``Op.side_effect``) and are fusion barriers (``extern``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from symk.errors import ArgumentError, SymkError
from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.op import Op, register


class Communicator(Protocol):
    """What the collective ops need of a job's processes (``symk.distributed`` implements it
    on MPI)."""

    rank: int
    size: int

    def allreduce_(self, flat: np.ndarray, what: str) -> None:
        """Sum the contiguous 1-D ``flat`` over the ranks, in place (``what`` names it in
        errors)."""

    def broadcast_(self, flat: np.ndarray, root: int, what: str) -> None:
        """Overwrite the contiguous 1-D ``flat`` with rank ``root``'s, in place."""


_installed: list[Communicator | None] = [None]


def set_communicator(comm: Communicator | None) -> None:
    """Install the job's communicator (None: one process, collectives are the identity)."""
    _installed[0] = comm


def communicator() -> Communicator | None:
    return _installed[0]


class CollectiveError(SymkError):
    """A collective failed or the ranks disagree about it (sizes, dtypes)."""


def _flat_copy(x: np.ndarray) -> np.ndarray:
    return np.array(x, order="C", copy=True).reshape(-1)


@register
class Allreduce(Op):
    """The sum over the ranks of each rank's ``x`` (the same shape and dtype on every rank)."""

    name = "allreduce"
    arity = 1
    extern = True
    side_effect = True

    def infer(self, inputs):
        return inputs[0]

    def ref(self, x):
        flat = _flat_copy(x)
        comm = communicator()
        if comm is not None:
            comm.allreduce_(flat, f"allreduce of an array of shape {np.shape(x)}")
        return flat.reshape(np.shape(x))

    def vjp(self, node, g):
        # d/dx_r of sum_r' L_r'(sum_q x_q): every rank's gradient reaches every x_r
        return [apply("allreduce", [g])]


@register
class AllreduceGroup(Op):
    """Result ``result`` of summing all inputs over the ranks at once: they are packed into one
    flat buffer (all inputs share one dtype), reduced by one collective and unpacked."""

    name = "allreduce_group"
    attr_names = ("result",)
    extern = True
    side_effect = True

    def infer(self, inputs, result):
        if not inputs or not 0 <= result < len(inputs):
            raise ArgumentError(f"allreduce_group: result {result} of {len(inputs)} inputs")
        if len({t.dtype for t in inputs}) != 1:
            raise ArgumentError("allreduce_group: inputs of several dtypes "
                                f"{sorted({t.dtype for t in inputs})}")
        return inputs[result]

    def group_key(self, node: Node) -> tuple:
        """Nodes with equal keys are results of one collective (executors run it once)."""
        return (self.name, node.inputs)

    def ref(self, *args, result):
        return reduce_group(args)[result]

    def ref_group(self, nodes: Sequence[Node], *args: np.ndarray) -> list[np.ndarray]:
        outs = reduce_group(args)
        return [outs[n.attrs["result"]] for n in nodes]

    def vjp(self, node, g):
        grads: list[Node | None] = [None] * len(node.inputs)
        grads[node.attrs["result"]] = apply("allreduce", [g])
        return grads


def reduce_group(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every array summed over the ranks through one flat buffer (views of it, reshaped)."""
    sizes = [int(np.size(a)) for a in arrays]
    flat = np.empty(sum(sizes), np.result_type(*arrays))
    at = 0
    for a, n in zip(arrays, sizes):
        flat[at:at + n] = np.ravel(a)
        at += n
    comm = communicator()
    if comm is not None:
        comm.allreduce_(flat, f"allreduce of {len(arrays)} arrays "
                              f"({', '.join(str(np.shape(a)) for a in arrays[:4])}"
                              f"{', ...' if len(arrays) > 4 else ''}) in one buffer")
    outs, at = [], 0
    for a, n in zip(arrays, sizes):
        outs.append(flat[at:at + n].reshape(np.shape(a)))
        at += n
    return outs


@register
class Broadcast(Op):
    """Rank ``root``'s ``x`` on every rank (the same shape and dtype on every rank)."""

    name = "broadcast"
    arity = 1
    attr_names = ("root",)
    extern = True
    side_effect = True

    def infer(self, inputs, root):
        if not isinstance(root, int) or root < 0:
            raise ArgumentError(f"broadcast: root_rank must be a rank number, got {root!r}")
        return inputs[0]

    def ref(self, x, root):
        flat = _flat_copy(x)
        comm = communicator()
        if comm is not None:
            comm.broadcast_(flat, root, f"broadcast of an array of shape {np.shape(x)}")
        return flat.reshape(np.shape(x))

    def vjp(self, node, g):
        # every rank's value is the root's: the root's input gets all ranks' gradients
        comm = communicator()
        summed = apply("allreduce", [g])
        if comm is None or comm.rank == node.attrs["root"]:
            return [summed]
        return [gb.mul(summed, gb.const(np.zeros((), g.dtype)))]
