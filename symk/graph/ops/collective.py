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

import sys
import threading
import weakref
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

    def allreduce(self, src: np.ndarray, dst: np.ndarray, what: str) -> None:
        """Write the sum over the ranks of the contiguous 1-D ``src`` into ``dst`` (of its
        size and dtype; ``src`` itself for in place); ``what`` names it in errors."""

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


#: reusable result buffers per (size, dtype): a fresh large array page-faults on its first
#: touch, which costs about as much as the collective itself on one machine (1 MB: 0.7 ms
#: against 0.3); at most BUFFERS_KEPT per key, handed out again once nothing holds them
BUFFERS_KEPT = 2
_buffers: dict[tuple[int, str], list[np.ndarray]] = {}
_buffers_lock = threading.Lock()


def result_buffer(size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D buffer nothing else holds (nor any view of it), reused across calls."""
    key = (size, np.dtype(dtype).str)
    with _buffers_lock:
        kept = _buffers.setdefault(key, [])
        for b in kept:
            # held by the list, this loop and getrefcount's argument only: free
            if sys.getrefcount(b) <= 3:
                return b
        b = np.empty(size, dtype)
        if len(kept) < BUFFERS_KEPT:
            kept.append(b)
        return b


@register
class Allreduce(Op):
    """The sum over the ranks of each rank's ``x`` (the same shape and dtype on every rank)."""

    name = "allreduce"
    arity = 1
    extern = True
    side_effect = True
    packs_inputs = True  # (a buffer given to ``donate``: summed there, in place)
    any_array = True

    def infer(self, inputs):
        return inputs[0]

    def ref(self, x):
        comm, xp = communicator(), _array_module(x)
        flat = packed([x])
        if flat is not None:  # nothing else reads x: summed where it is
            if comm is not None:
                comm.allreduce(flat, flat, f"allreduce of an array of shape {np.shape(x)}")
            return x
        if comm is None:
            return xp.array(x, copy=True)
        src = xp.ascontiguousarray(x).reshape(-1)  # a view when x is contiguous
        dst = _flat_buffer(xp, src.size, src.dtype)
        comm.allreduce(src, dst, f"allreduce of an array of shape {np.shape(x)}")
        return dst.reshape(np.shape(x))

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
    packs_inputs = True  # (into a buffer given to ``donate``: no packing copy)
    any_array = True

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


def _array_module(a: object):
    """numpy (for numpy's arrays and scalars, numbers, lists), or the module of another
    array type (CuPy's for a device array)."""
    if isinstance(a, np.ndarray | np.generic) or not hasattr(a, "reshape"):
        return np
    return sys.modules.get(type(a).__module__.split(".")[0], np)


def _flat_buffer(xp, size: int, dtype: np.dtype):
    """A 1-D buffer of the array module ``xp`` (numpy's come from ``result_buffer``)."""
    return result_buffer(size, dtype) if xp is np else xp.empty(size, dtype)


def pack(arrays: Sequence[np.ndarray]):
    """One flat buffer holding every array in turn (of the arrays' own module: numpy's comes
    from ``result_buffer``), and each array's size."""
    xp = _array_module(arrays[0]) if arrays else np
    sizes = [int(a.size) for a in arrays]
    dtype = np.result_type(*[a.dtype for a in arrays])
    flat = _flat_buffer(xp, sum(sizes), dtype)
    at = 0
    for a, n in zip(arrays, sizes):
        flat[at:at + n] = a.reshape(-1)
        at += n
    return flat, sizes


def unpack(flat, like: Sequence[np.ndarray]) -> list:
    """Views of ``flat`` shaped as ``like`` (the inverse of :func:`pack`)."""
    outs, at = [], 0
    for a in like:
        outs.append(flat[at:at + a.size].reshape(a.shape))
        at += a.size
    return outs


#: flat buffers whose contents a collective may overwrite (id -> buffer, while it lives)
_donated: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def donate(flat: np.ndarray) -> None:
    """Let collectives reduce in place in the 1-D ``flat`` when their inputs are views tiling
    it in order (the runtime calls this for buffers whose views only one collective reads)."""
    if _donated.get(id(flat)) is not flat:
        _donated[id(flat)] = flat


def packed(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The donated flat buffer that ``arrays`` tile in order (each a C-contiguous view of it,
    the first at its start, each next where the previous ends, the last at its end), else
    None."""
    if not arrays or not isinstance(arrays[0], np.ndarray):
        return None
    flat = arrays[0].base
    if flat is None or _donated.get(id(flat)) is not flat:
        return None
    at, step = flat.ctypes.data, flat.itemsize
    for a in arrays:
        if (not isinstance(a, np.ndarray) or a.base is not flat or a.dtype != flat.dtype
                or not a.flags.c_contiguous or a.ctypes.data != at):
            return None
        at += a.size * step
    return flat if at == flat.ctypes.data + flat.size * step else None


def reduce_group(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every array summed over the ranks through one flat buffer (views of it, reshaped); the
    buffer lives where the arrays do (host or GPU).  Arrays tiling a donated buffer are
    summed in place there, without packing."""
    arrays = [a if hasattr(a, "reshape") else np.asarray(a) for a in arrays]
    flat = packed(arrays)
    if flat is None:
        flat, _ = pack(arrays)
    comm = communicator()
    if comm is not None:
        comm.allreduce(flat, flat, f"allreduce of {len(arrays)} arrays "
                              f"({', '.join(str(np.shape(a)) for a in arrays[:4])}"
                              f"{', ...' if len(arrays) > 4 else ''}) in one buffer")
    return unpack(flat, arrays)


@register
class Broadcast(Op):
    """Rank ``root``'s ``x`` on every rank (the same shape and dtype on every rank)."""

    name = "broadcast"
    arity = 1
    attr_names = ("root",)
    extern = True
    side_effect = True
    any_array = True

    def infer(self, inputs, root):
        if not isinstance(root, int) or root < 0:
            raise ArgumentError(f"broadcast: root_rank must be a rank number, got {root!r}")
        return inputs[0]

    def ref(self, x, root):
        comm, xp = communicator(), _array_module(x)
        if comm is None:
            return xp.array(x, copy=True)
        x = xp.asarray(x)
        flat = _flat_buffer(xp, x.size, x.dtype)
        flat[...] = x.reshape(-1)
        comm.broadcast_(flat, root, f"broadcast of an array of shape {x.shape}")
        return flat.reshape(x.shape)

    def vjp(self, node, g):
        # every rank's value is the root's: the root's input gets all ranks' gradients
        comm = communicator()
        summed = apply("allreduce", [g])
        if comm is None or comm.rank == node.attrs["root"]:
            return [summed]
        return [gb.mul(summed, gb.const(np.zeros((), g.dtype)))]
