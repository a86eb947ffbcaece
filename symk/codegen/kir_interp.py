"""The numpy interpreter of Kernel IR: the definition of its semantics.

Each open ``range`` adds one array axis, so a loop body is evaluated for all iterations at once
with broadcasting; an accumulator defined at loop depth d and updated at depth m reduces its
updates over axes d..m-1 (every iteration counts, also when the value does not vary).  The
primitives are evaluated by the same numpy scalar builder that defines the ops' references.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.codegen.kir import Program
from symk.errors import SymkError
from symk.graph.ops.reduce import identity
from symk.graph.scalar import NUMPY

#: ufuncs whose ``.at`` applies a store_reduce (sequentially, duplicates accumulate)
_AT = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum,
       "any": np.logical_or, "all": np.logical_and}
_REDUCE: dict[str, Callable[..., Any]] = {
    "sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "any": np.any, "all": np.all}


def _expand(v: np.ndarray, depth: int) -> np.ndarray:
    v = np.asarray(v)
    return v.reshape(v.shape + (1,) * (depth - v.ndim)) if v.ndim < depth else v


def run_program(prog: Program, buffers: Sequence[np.ndarray], sizes: Sequence[int],
                start: int, end: int) -> None:
    """Execute ``prog`` with its params bound in order to ``buffers`` then ``sizes``."""
    vals: dict[int, Any] = {}
    depth_of: dict[int, int] = {}
    bound: dict[int, Any] = {}
    nbuf = 0
    nsize = 0
    for pi in prog.params:
        kind = prog.ins[pi].arg[1]
        if kind == "size":
            bound[pi] = np.int64(sizes[nsize])
            nsize += 1
        else:
            bound[pi] = buffers[nbuf].reshape(-1)
            nbuf += 1
    extents: list[int] = []
    accs: dict[int, dict[str, Any]] = {}
    with np.errstate(all="ignore"):
        for i, ins in enumerate(prog.ins):
            op = ins.op
            depth = len(extents)
            a = [vals[j] for j in ins.args] if op not in ("end",) else []
            if op == "alu":
                a = [_expand(x, depth) for x in a]
            if op == "param":
                v = bound[i]
            elif op == "const":
                v = np.asarray(ins.arg, dtype=ins.dtype)
            elif op == "range":
                lo, hi = (start, end) if ins.arg.get("parallel") else (int(a[0]), int(a[1]))
                n = max(hi - lo, 0)
                v = np.arange(lo, hi, dtype=np.int64).reshape((1,) * depth + (n,))
                extents.append(n)
            elif op == "end":
                extents.pop()
                continue
            elif op == "load":
                buf, idx = a
                v = buf[_expand(np.asarray(idx, dtype=np.int64), depth)]
            elif op == "store":
                buf, idx, val = a
                idx, val = np.broadcast_arrays(_expand(idx, depth), _expand(val, depth))
                shape = tuple(extents)
                buf[np.broadcast_to(idx, shape).reshape(-1)] = \
                    np.broadcast_to(val, shape).reshape(-1).astype(buf.dtype)
                continue
            elif op == "store_reduce":
                buf, idx, val = a
                shape = tuple(extents)
                idx = np.broadcast_to(_expand(np.asarray(idx), depth), shape).reshape(-1)
                val = np.broadcast_to(_expand(np.asarray(val), depth), shape).reshape(-1)
                _AT[ins.arg].at(buf, idx, val.astype(buf.dtype))
                continue
            elif op == "alu":
                v = getattr(NUMPY, ins.arg)(*[np.asarray(x) for x in a])
                v = np.asarray(v)
                if ins.dtype is not None and v.dtype != np.dtype(ins.dtype):
                    v = v.astype(ins.dtype)
            elif op == "cast":
                v = np.asarray(a[0]).astype(ins.dtype)
            elif op in ("acc", "argacc"):
                accs[i] = {"kind": ins.arg, "depth": depth, "dtype": np.dtype(ins.dtype),
                           "pending": None}
                v = None
            elif op == "acc_update":
                st = accs[ins.args[0]]
                st["pending"] = np.broadcast_to(_expand(a[1], depth), tuple(extents))
                st["at"] = depth
                continue
            elif op == "acc_scan":
                st = accs[ins.args[0]]
                if depth != st["depth"] + 1:
                    raise SymkError("acc_scan must be one loop inside its accumulator")
                x = np.broadcast_to(_expand(a[1], depth), tuple(extents)).astype(st["dtype"])
                fn = np.cumsum if st["kind"] == "sum" else np.cumprod
                v = fn(x, axis=depth - 1, dtype=st["dtype"])
            elif op == "argacc_update":
                st = accs[ins.args[0]]
                shape = tuple(extents)
                st["pending"] = np.broadcast_to(_expand(a[1], depth), shape)
                st["index"] = np.broadcast_to(_expand(a[2], depth), shape)
                st["at"] = depth
                continue
            elif op == "acc_read":
                v = _read(accs[ins.args[0]])
            else:
                raise SymkError(f"unknown Kernel IR instruction '{op}'")
            vals[i] = v
            depth_of[i] = depth


def _read(st: dict[str, Any]) -> np.ndarray:
    d, kind, dt = st["depth"], st["kind"], st["dtype"]
    p = st["pending"]
    if p is None:
        raise SymkError("accumulator read before any update")
    axes = tuple(range(d, st["at"]))
    if kind in ("argmax", "argmin"):
        if len(axes) != 1:
            raise SymkError("argmax/argmin accumulate over exactly one loop")
        pos = (np.argmax if kind == "argmax" else np.argmin)(p, axis=axes[0], keepdims=True)
        return np.take_along_axis(np.asarray(st["index"]), pos, axis=axes[0]).squeeze(axes[0])
    vals = p.astype(dt, copy=False)
    if kind in ("max", "min"):
        return _REDUCE[kind](vals, axis=axes, initial=identity(kind, dt)).astype(dt)
    if kind in ("any", "all"):  # np.any/np.all take no dtype
        return np.asarray(_REDUCE[kind](vals, axis=axes)).astype(dt)
    return np.asarray(_REDUCE[kind](vals, axis=axes, dtype=dt)).astype(dt)
