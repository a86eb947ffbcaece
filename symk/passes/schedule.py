"""The Schedule: an ordered list of steps that computes a graph's roots.

Steps are fused ``Kernel`` groups (elementwise ops with at most one reduction and its
elementwise prologue/epilogue), ``Extern`` calls (matmul, gather, scan-like and data-movement
ops, random draws: fusion barriers) and ``View`` steps (reshape/expand_dims/squeeze: no data
moves).  Leaves (placeholders, variables, constants) are not steps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from symk.graph.node import Node
from symk.graph.ops.leaves import is_immediate


def kind_of(node: Node) -> str:
    op = node.op
    if op.is_leaf:
        return "leaf"
    if op.reshapes:
        return "view"
    if op.elementwise or op.index_map(node) is not None:  # a static slice is a kernel's load
        return "elementwise"
    if op.reduction:
        return "reduction"
    return "extern"


@dataclass
class Kernel:
    nodes: list[Node]  # topological order
    inputs: list[Node]  # values read from outside the kernel
    outputs: list[Node]  # values the kernel writes (used later or roots)
    reduction: Node | None = None
    name: str = ""

    @property
    def domain(self) -> tuple:
        return (self.reduction.inputs[0].shape if self.reduction is not None
                else self.outputs[0].shape)


@dataclass
class Extern:
    node: Node

    @property
    def name(self) -> str:
        return self.node.op.name


@dataclass
class View:
    node: Node

    @property
    def name(self) -> str:
        return self.node.op.name


Step = Kernel | Extern | View


@dataclass
class Schedule:
    steps: list[Step]
    roots: list[Node]
    leaves: list[Node]
    #: step index -> nodes whose values are no longer needed after that step (memory plan)
    frees: list[list[Node]] = field(default_factory=list)
    #: node id -> buffer id (static-shaped step outputs; views share their base's buffer)
    buffers: dict[int, int] = field(default_factory=dict)
    n_buffers: int = 0

    @property
    def kernels(self) -> list[Kernel]:
        return [s for s in self.steps if isinstance(s, Kernel)]

    @property
    def externs(self) -> list[Extern]:
        return [s for s in self.steps if isinstance(s, Extern)]

    def describe(self) -> str:
        """One line per step (used by dumps and SYMK_DEBUG=3)."""
        lines = []
        for i, s in enumerate(self.steps):
            if isinstance(s, Kernel):
                ops = " ".join(n.op.name for n in s.nodes)
                lines.append(f"{i:3d} kernel {s.name}: [{ops}] in={len(s.inputs)} "
                             f"out={len(s.outputs)}")
            else:
                tag = "extern" if isinstance(s, Extern) else "view"
                lines.append(f"{i:3d} {tag} {s.node.op.name} -> {s.node.type}")
        return "\n".join(lines)


def kernel_name(k: Kernel) -> str:
    """``E_<shape>_<hash>`` / ``R_<shape>_<hash>`` from the kernel's content."""
    local = {id(n): i for i, n in enumerate(k.nodes)}
    ins = {id(n): i for i, n in enumerate(k.inputs)}
    parts = []
    for n in k.nodes:
        refs = [f"n{local[id(i)]}" if id(i) in local else _input_ref(i, ins[id(i)])
                for i in n.inputs]
        parts.append(f"{n.op.name}({','.join(refs)}){sorted(n.attrs.items())}")
    parts.append("out:" + ",".join(str(local[id(o)]) for o in k.outputs))
    h = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]
    shape = "_".join("n" if d is None else str(d) for d in k.domain) or "s"
    return f"{'R' if k.reduction is not None else 'E'}_{shape}_{h}"


def _input_ref(i: Node, index: int) -> str:
    """How a kernel input enters its name: scalar constants by value (they are immediates in
    generated code), everything else by position and type."""
    if is_immediate(i):
        return f"c{i.attrs['value'].array.tobytes().hex()}:{i.dtype}"
    return f"i{index}:{i.type}"
