"""Helpers for the pass tests: build leaves, run a graph through the pipeline at a given level
and execute its Schedule with the reference executor, and compare results the float32 way
(NaN positions and infinities must agree exactly)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from symk.graph.node import Node, apply, fresh_uid, toposort
from symk.passes.pipeline import Optimized, optimize
from symk.runtime.interp import InterpPlan
from tests.compare import assert_match


def ph(shape: Sequence[int | None], dtype: str = "float32") -> Node:
    """A fresh placeholder node."""
    return apply("placeholder", [], dtype=dtype, shape=tuple(shape), uid=fresh_uid())


def ops(roots: Node | Iterable[Node]) -> list[str]:
    """Op names of every non-leaf node below ``roots`` (topological order)."""
    rs = [roots] if isinstance(roots, Node) else list(roots)
    return [n.op.name for n in toposort(rs) if not n.op.is_leaf]


def execute(opt: Optimized, feeds: dict[Node, np.ndarray]) -> list[np.ndarray]:
    """Run an optimized graph's Schedule with the reference executor."""
    plan = InterpPlan(opt.schedule, list(feeds))
    vals = plan.run([np.asarray(v) for v in feeds.values()])
    return [np.asarray(vals[plan.slot[id(r)]]) for r in opt.roots]


def run(roots: Sequence[Node], feeds: dict[Node, np.ndarray], level: int,
        exclude: set[str] | None = None) -> list[np.ndarray]:
    """Optimize ``roots`` at ``level`` (nothing excluded unless asked) and execute them."""
    return execute(optimize(list(roots), level=level, exclude=exclude or set()), feeds)


def run_levels(roots: Sequence[Node], feeds: dict[Node, np.ndarray]
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(results with every pass, results at level 0)."""
    return run(roots, feeds, 2), run(roots, feeds, 0)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 2e-5, atol: float = 1e-6,
                 what: str = "") -> None:
    """Equal shape, dtype and values within float32 tolerances; NaNs in the same places and
    infinities equal (sign included)."""
    assert_match(got, want, rtol=rtol, atol=atol, what=what)


def assert_same_results(roots: Sequence[Node], feeds: dict[Node, np.ndarray],
                        **tol: float) -> list[np.ndarray]:
    """Results with all passes equal results with none; returns the optimized results."""
    on, off = run_levels(roots, feeds)
    for k, (a, b) in enumerate(zip(on, off)):
        assert_close(a, b, what=f"output {k}", **tol)
    return on


def check_schedule(s) -> None:
    """Structural invariants of a Schedule: steps in dependency order, every kernel input a
    leaf or an earlier step's value, at most one reduction per kernel, roots all produced and
    written by the kernel computing them, each node computed once."""
    from symk.graph.ops.leaves import is_immediate
    from symk.passes.fusion import MAX_INPUTS
    from symk.passes.schedule import Kernel

    available = {id(n) for n in s.leaves}
    computed: set[int] = set()
    for k, step in enumerate(s.steps):
        if isinstance(step, Kernel):
            members = {id(n) for n in step.nodes}
            for i in step.inputs:
                assert id(i) in available, f"step {k} reads a value not computed yet: {i}"
                assert id(i) not in members
            for n in step.nodes:
                for i in n.inputs:
                    assert id(i) in members or any(i is j for j in step.inputs), \
                        f"step {k}: input of {n} is neither a member nor a kernel input"
            assert sum(1 for n in step.nodes if n.op.reduction) <= 1, f"step {k}: 2 reductions"
            assert sum(1 for i in step.inputs if not is_immediate(i)) <= MAX_INPUTS
            assert not (members & computed), f"step {k} recomputes a node"
            computed |= members
            available |= {id(o) for o in step.outputs}
            for n in step.nodes:
                assert n.op.elementwise or n.op.reduction or n.op.index_map(n) is not None, \
                    f"{n.op.name} in a kernel"
        else:
            for i in step.node.inputs:
                assert id(i) in available, f"step {k} reads a value not computed yet: {i}"
            assert id(step.node) not in computed
            computed.add(id(step.node))
            available.add(id(step.node))
    for r in s.roots:
        assert id(r) in available, f"root {r} is never computed"
