"""The ``collectives`` pass: the ``allreduce`` nodes of a function that do not depend on one
another become one ``allreduce_group`` per dtype, so a training step's gradients travel in one
flat buffer through one collective (not one per weight).

Waves: an allreduce's wave is one more than the largest wave among the allreduces it depends
on (0 when none), so nodes of one wave never depend on each other.  Members are ordered as the
graph's topological order lists them, which every rank computes alike from the same graph:
every rank then packs the buffer the same way and runs its collectives in the same order.
"""

from __future__ import annotations

from symk.graph.node import Node, apply, substitute, toposort


def _waves(roots: list[Node]) -> dict[tuple[int, str], list[Node]]:
    """(wave, dtype) -> the ``allreduce`` nodes of that wave, in topological order."""
    wave: dict[int, int] = {}
    groups: dict[tuple[int, str], list[Node]] = {}
    for node in toposort(roots):
        w = max((wave[id(x)] for x in node.inputs), default=0)
        if node.op.name == "allreduce":
            groups.setdefault((w, node.dtype), []).append(node)
        if node.op.name in ("allreduce", "allreduce_group"):
            w += 1
        wave[id(node)] = w
    return groups


def group_allreduces(roots: list[Node]) -> list[Node]:
    # one wave at a time: a later wave's inputs hold the groups of the earlier ones
    while True:
        groups = {k: m for k, m in _waves(roots).items() if len(m) > 1}
        if not groups:
            return roots
        first = min(w for w, _ in groups)
        mapping: dict[int, Node] = {}
        for (w, _), members in sorted(groups.items()):
            if w != first:
                continue
            # allreduce(x_i) for i in a wave -> result i of allreduce_group(x_0, ..., x_k)
            inputs = [m.inputs[0] for m in members]
            for i, m in enumerate(members):
                mapping[id(m)] = apply("allreduce_group", inputs, result=i)
        roots = substitute(roots, mapping)
