"""Dead-code elimination over Kernel IR: drops the instructions whose value nothing uses.

Lowering emits index arithmetic eagerly (the stride after the last axis of a C-contiguous
index, a count that only a later branch would need, ...), and every renderer used to carry those
values into its output (``v11 = 32 * d0`` in a CUDA softmax).  ``eliminate_dead_code`` removes
them from a ``Program`` in place, once, at the end of lowering, so every target gets the same
smaller IR.

Only pure instructions are candidates (``PURE``: constants, ALU primitives, casts, loads and
accumulator reads); everything else is kept whether or not its value is used: params (the
kernel's signature), loops (``range``/``end``), stores, ``store_reduce``, accumulators and their
updates and scans.  An instruction of an unknown op is kept too.  Removal renumbers the values
(instruction indices) and the params list; loop structure, effects and their order are
unchanged, so the kernel computes exactly what it computed before.
"""

from __future__ import annotations

from symk.codegen.kir import Ins, Program

#: ops without side effects: removable when their value is unused
PURE = frozenset({"const", "alu", "cast", "load", "acc_read"})


def live_instructions(prog: Program) -> list[bool]:
    """For each instruction, whether it is kept: it has an effect (is not ``PURE``) or a kept
    instruction uses its value.  Operands always precede their users (SSA in program order),
    so one backward sweep reaches the fixed point: when instruction i is visited, every user
    of i (all after it) has already been decided, also inside nested loop bodies."""
    live = [False] * len(prog.ins)
    for i in range(len(prog.ins) - 1, -1, -1):
        ins = prog.ins[i]
        if ins.op not in PURE:
            live[i] = True
        if live[i]:
            for a in ins.args:
                live[a] = True
    return live


def eliminate_dead_code(prog: Program) -> int:
    """Remove the unused pure instructions of ``prog`` (in place); returns how many."""
    live = live_instructions(prog)
    removed = live.count(False)
    if not removed:
        return 0
    new_index: dict[int, int] = {}
    kept: list[Ins] = []
    for i, ins in enumerate(prog.ins):
        if not live[i]:
            continue
        new_index[i] = len(kept)
        kept.append(Ins(ins.op, ins.dtype, tuple(new_index[a] for a in ins.args), ins.arg))
    prog.ins = kept
    prog.params = [new_index[p] for p in prog.params]
    return removed
