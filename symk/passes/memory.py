"""Memory planning over a Schedule: when each value dies, and which buffer each step output
uses.  Buffers are reused by lifetime: a buffer freed by its last reader is handed to the next
step output of the same dtype and static shape.  Views share their base value's buffer, so a
base stays alive while any view of it is.  Roots (outputs and update values) live to the end;
variable updates are written only after every step has run."""

from __future__ import annotations

from symk.graph.node import Node
from symk.passes.schedule import Kernel, Schedule, Step, View


def _step_io(step: Step) -> tuple[list[Node], list[Node]]:
    if isinstance(step, Kernel):
        return step.inputs, step.outputs
    return list(step.node.inputs), [step.node]


def plan_memory(s: Schedule) -> Schedule:
    base: dict[int, int] = {}  # value id -> id of the value owning its buffer
    last_use: dict[int, int] = {}
    produced_at: dict[int, int] = {}
    node_of: dict[int, Node] = {}
    end = len(s.steps)
    for i, step in enumerate(s.steps):
        ins, outs = _step_io(step)
        for v in ins:
            b = base.get(id(v), id(v))
            last_use[b] = max(last_use.get(b, -1), i)
        for o in outs:
            node_of[id(o)] = o
            produced_at[id(o)] = i
            if isinstance(step, View):
                base[id(o)] = base.get(id(step.node.inputs[0]), id(step.node.inputs[0]))
            else:
                base[id(o)] = id(o)
                last_use.setdefault(id(o), i)
    for r in s.roots:
        b = base.get(id(r), id(r))
        last_use[b] = end
    frees: list[list[Node]] = [[] for _ in s.steps]
    # every value whose buffer owner dies after step i is dropped after step i
    for vid, node in node_of.items():
        b = base.get(vid, vid)
        lu = last_use.get(b, produced_at[vid])
        if lu < end:
            frees[lu].append(node)
    # buffer assignment with reuse (static shapes only)
    buffers: dict[int, int] = {}
    free_pool: dict[tuple, list[int]] = {}
    n_buffers = 0
    dies_at: dict[int, list[int]] = {}
    for b, lu in last_use.items():
        dies_at.setdefault(lu, []).append(b)
    for i, step in enumerate(s.steps):
        _, outs = _step_io(step)
        for o in outs:
            if isinstance(step, View):
                owner = base[id(o)]
                if owner in buffers:
                    buffers[id(o)] = buffers[owner]
                continue
            if None in o.shape:
                continue
            key = (o.dtype, o.shape)
            pool = free_pool.get(key)
            if pool:
                buffers[id(o)] = pool.pop()
            else:
                buffers[id(o)] = n_buffers
                n_buffers += 1
        for b in dies_at.get(i, ()):
            if b in buffers and b in node_of and not isinstance(s.steps[produced_at[b]], View):
                o = node_of[b]
                free_pool.setdefault((o.dtype, o.shape), []).append(buffers[b])
    s.frees = frees
    s.buffers = buffers
    s.n_buffers = n_buffers
    return s
