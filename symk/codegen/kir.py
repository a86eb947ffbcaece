"""Kernel IR: a linear, typed SSA list describing one fused kernel, shared by every renderer.

Instructions (``Ins``), each defining the value with its own index:

- ``param``   arg=(name, kind) with kind "in" | "out" (buffers, dtype = element type) or
  "size" (an int64 runtime dimension).
- ``const``   arg=value.
- ``range``   args=(start, end): opens a loop; its value is the int64 loop index.
  ``arg["parallel"]`` marks the outermost loop whose bounds the caller splits across threads
  (its start/end then come from the kernel's ``start``/``end`` arguments).
- ``end``     args=(range,): closes the loop.
- ``load``    args=(buffer param, index): element of a buffer (flat, C-contiguous).
- ``store``   args=(buffer param, index, value).
- ``store_reduce`` arg=kind, args=(buffer param, index, value): ``buf[index] = buf[index]
  (kind) value`` performed once per iteration, in loop order (also on output buffers).
- ``alu``     arg=primitive (one of ``symk.graph.scalar.PRIMITIVES``), args=operands.
- ``cast``    arg=dtype.
- ``acc``     arg=kind ("sum", "prod", "max", "min", "any", "all"): an accumulator initialised
  to the kind's identity where it stands; ``acc_update`` args=(acc, value) combines a value into
  it from inside deeper loops; ``acc_read`` args=(acc,) reads it after those loops closed.
- ``acc_scan`` args=(acc, value): combines ``value`` into ``acc`` (a "sum" or "prod"
  accumulator defined just outside one loop) and yields the running result (inclusive scan).
- ``argacc``  arg="argmax" | "argmin" (dtype int64): ``argacc_update`` args=(acc, value, index)
  keeps the index of the first extreme value; ``acc_read`` gives that index.

Semantics are defined by the numpy interpreter in ``kir_interp.py``.  ``kir_verify.py`` checks
these rules (SSA, scopes, dtypes, accumulators, buffer bounds) and ``kir_dce.py`` removes the
unused pure instructions lowering leaves behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Ins:
    op: str
    dtype: str | None
    args: tuple[int, ...] = ()
    arg: Any = None

    @property
    def vdtype(self) -> str:
        """The dtype of an instruction that defines a value (every op but ``end``, ``store``,
        ``store_reduce``, ``acc_update`` and ``argacc_update``, whose dtype is None)."""
        assert self.dtype is not None, f"'{self.op}' defines no value"
        return self.dtype


@dataclass
class Program:
    name: str
    ins: list[Ins] = field(default_factory=list)
    #: indices of param instructions, in signature order (inputs, outputs, sizes)
    params: list[int] = field(default_factory=list)

    def emit(self, op: str, dtype: str | None, args: tuple[int, ...] = (), arg: Any = None) -> int:
        self.ins.append(Ins(op, dtype, tuple(args), arg))
        return len(self.ins) - 1

    def param(self, name: str, kind: str, dtype: str) -> int:
        i = self.emit("param", dtype, (), (name, kind))
        self.params.append(i)
        return i

    def const(self, value: Any, dtype: str) -> int:
        return self.emit("const", dtype, (), value)

    def text(self) -> str:
        """Readable listing (what ``SYMK_DEBUG=5`` prints and ``.kir`` dump files hold)."""
        out = [f"kernel {self.name}"]
        depth = 1
        for i, ins in enumerate(self.ins):
            if ins.op == "end":
                depth -= 1
            args = ", ".join(f"%{a}" for a in ins.args)
            extra = "" if ins.arg is None else f" [{ins.arg}]"
            ty = f" : {ins.dtype}" if ins.dtype else ""
            out.append(f"{'  ' * depth}%{i} = {ins.op}({args}){extra}{ty}")
            if ins.op == "range":
                depth += 1
        return "\n".join(out)

    def digest(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()
