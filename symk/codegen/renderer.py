"""The base every Kernel IR renderer shares (``llvm_render``, ``cuda_render``).

A renderer walks a ``kir.Program`` and turns each instruction into target text.  This module
owns what does not depend on the target:

- the dispatch: a target subclass lists one rule per Kernel IR op (``code_for_ins``) and one
  rule per scalar primitive (``code_for_op``, as tinygrad's ``code_for_op``); ``instr`` and
  ``primitive`` look the rule up and raise the same "no rule" error for every target;
- the operand dtype of an ``alu`` (what its rule dispatches on: ``where`` on its values, not
  its condition);
- literals: ``literal`` spells booleans itself and leaves floats and integers to the target's
  ``float_literal`` / ``int_literal``;
- the identity of each accumulation kind, spelled with ``literal`` (its value is
  ``graph.ops.reduce.identity``, which lowering and the interpreter use too);
- the dtype predicates (``is_float``, ``is_uint``, ``is_unsigned``).

Rules are plain functions (methods of the subclass, or module functions of a target's table
module) called as ``rule(renderer, ...)``, so a table can be written as a dict at the end of
the subclass body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from symk.codegen.kir import Ins, Program
from symk.errors import SymkError
from symk.graph.ops.reduce import identity as identity_value

#: the comparison primitives (result dtype bool)
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
#: transcendental primitives (float operands; ``pow`` also has integer rules)
TRANSCENDENTALS = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf", "pow")


def is_float(dt: str) -> bool:
    return dt.startswith("float")


def is_uint(dt: str) -> bool:
    """An unsigned integer dtype (not bool)."""
    return dt.startswith("uint")


def is_unsigned(dt: str) -> bool:
    """Compared, divided and extended as unsigned: the unsigned integers and bool."""
    return dt.startswith("uint") or dt == "bool"


class Renderer(ABC):
    """One kernel being rendered: its program, the dispatch tables and the shared helpers."""

    #: target name in error messages
    target: ClassVar[str] = ""
    #: Kernel IR op -> rule ``(renderer, i, ins, *context)``
    code_for_ins: ClassVar[Mapping[str, Callable[..., Any]]] = {}
    #: scalar primitive -> rule ``(renderer, in_dt, args, *context) -> value``
    code_for_op: ClassVar[Mapping[str, Callable[..., str]]] = {}

    def __init__(self, prog: Program) -> None:
        self.p = prog
        self.ins = prog.ins

    # ------------------------------------------------------------ dispatch
    def no_rule(self, what: str, name: str) -> SymkError:
        return SymkError(f"the {self.target} renderer has no rule for {what} '{name}'")

    def instr(self, i: int, *context: Any) -> Any:
        """Render instruction ``i`` with its op's rule (``context``: whatever the target's rules
        take besides the instruction)."""
        ins = self.ins[i]
        rule = self.code_for_ins.get(ins.op)
        if rule is None:
            raise self.no_rule("Kernel IR", ins.op)
        return rule(self, i, ins, *context)

    def primitive(self, prim: str, in_dt: str, args: list[str], *context: Any) -> str:
        """The value of primitive ``prim`` applied to ``args`` (operands of dtype ``in_dt``;
        ``context``: whatever the target's rules take besides)."""
        rule = self.code_for_op.get(prim)
        if rule is None:
            raise self.no_rule("primitive", prim)
        return rule(self, in_dt, args, *context)

    def operand_dtype(self, ins: Ins) -> str:
        """The dtype an ``alu`` computes in: its first operand's (``where``: its values')."""
        if not ins.args:
            return ins.vdtype
        return self.ins[ins.args[1 if ins.arg == "where" else 0]].vdtype

    # ------------------------------------------------------------ literals
    def literal(self, value: Any, dt: str) -> str:
        """An exact literal of ``value`` as ``dt``."""
        if dt == "bool":
            return "true" if value else "false"
        if is_float(dt):
            return self.float_literal(value, dt)
        return self.int_literal(int(value), dt)

    @abstractmethod
    def float_literal(self, value: Any, dt: str) -> str:
        """The target's exact literal of a float of dtype ``dt``."""

    def int_literal(self, value: int, dt: str) -> str:
        return str(value)

    def identity(self, kind: str, dt: str) -> str:
        """The literal of the identity of accumulation ``kind`` in ``dt``."""
        return self.literal(identity_value(kind, dt), dt)
