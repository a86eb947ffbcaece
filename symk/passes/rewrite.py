"""Local rewrite rules and the fixed-point driver.

A ``Rule`` pairs a pattern with a function building the replacement from the bindings (or
returning None to decline).  ``rewrite(roots, rules)`` rebuilds the graph bottom-up, applying
rules at every node until nothing changes, and guards against rules undoing each other.
Replacements inherit the creation line of the node they replace.
"""

from __future__ import annotations

import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from symk.errors import SymkError
from symk.graph.node import (
    Node,
    apply,
    call_in_line_scope,
    creating_api,
    creation_line,
    set_creation_line,
    toposort,
)
from symk.passes.pattern import Bindings, Pat, Var, match

#: a rule's replacement builder: (bindings, matched node) -> the replacement, or None to decline
BuildFn = Callable[[Bindings, Node], Node | None]


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Pat
    build: BuildFn
    doc: str = ""  # the algebra, e.g. "x + 0 -> x"


class RuleSet:
    """Rules indexed by the root op of their pattern."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.by_op: dict[str, list[Rule]] = {}
        #: per root op: (rule, the op each direct input must have or None) for a pre-check
        self.checked: dict[str, list[tuple[Rule, tuple[str | None, ...] | None]]] = {}
        self.rules: list[Rule] = []
        self._for_op: dict[str, tuple] = {}
        self._without: dict[int, RuleSet] = {}
        self._fixed: weakref.WeakSet[Node] = weakref.WeakSet()
        for r in rules:
            self.add(r)

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        self.by_op.setdefault(rule.pattern.op, []).append(rule)
        self.checked.setdefault(rule.pattern.op, []).append((rule, _needs(rule.pattern)))
        self._for_op = {}
        return rule

    def for_op(self, name: str) -> tuple[tuple[Rule, tuple[str | None, ...] | None], ...]:
        """The checked rules to try on a node of op ``name``: its own, then the "*" rules."""
        got = self._for_op.get(name)
        if got is None:
            got = self._for_op[name] = (*self.checked.get(name, ()), *self.checked.get("*", ()))
        return got

    def rule(self, name: str, pattern: Pat, doc: str = "") -> Callable[[BuildFn], BuildFn]:
        """Decorator form: ``@rs.rule("add_zero", Pat("add", X, Zero), "x + 0 -> x")``."""
        def deco(fn: BuildFn) -> BuildFn:
            self.add(Rule(name, pattern, fn, doc))
            return fn
        return deco

    def __len__(self) -> int:
        return len(self.rules)

    def without(self, base: RuleSet) -> RuleSet:
        """The rules of this set that are not in ``base`` (cached)."""
        got = self._without.get(id(base))
        if got is None:
            theirs = {id(r) for r in base.rules}
            got = self._without[id(base)] = RuleSet(r for r in self.rules
                                                    if id(r) not in theirs)
        return got

    def fixed_nodes(self) -> weakref.WeakSet[Node]:
        """Nodes known to be fixed points of this set (a fact about the node alone: its
        inputs never change), so a later rewrite with a superset skips these rules there."""
        return self._fixed


class RewriteLoopError(SymkError):
    """Rules kept firing without reaching a fixed point."""


def _trace() -> bool:
    from symk.config import trace_rewrites

    return trace_rewrites()


MAX_FIRES_PER_NODE = 32
MAX_DEPTH = 200


def rewrite(roots: Sequence[Node], rules: RuleSet,
            stats: dict[str, int] | None = None, base: RuleSet | None = None) -> list[Node]:
    """Apply ``rules`` everywhere below ``roots`` until a fixed point; returns the new roots.

    One bottom-up sweep suffices: a node is visited after its inputs reached their fixed point,
    and the new nodes a replacement introduces are rewritten before rules are tried on it.
    With ``base`` (a subset of ``rules``), nodes an earlier rewrite left as fixed points of
    ``base`` are only tried with the other rules, and every fixed point found is recorded as
    one of ``base``: passes sharing the canonical rules do not retry them on settled nodes.
    """
    # (rest is only used where known is set)
    rest: RuleSet = rules
    known: weakref.WeakSet[Node] | None = None
    if base is not None:
        assert {id(r) for r in base.rules} <= {id(r) for r in rules.rules}, "base not a subset"
        rest, known = rules.without(base), base.fixed_nodes()
    recent: deque[str] = deque(maxlen=8)
    memo: dict[int, Node] = {}  # any node seen -> its fixed point
    fixed: set[int] = set()  # nodes known to be fixed points
    alive: list[Node] = []  # keys of memo/fixed stay alive, so their ids are never reused
    budget = [MAX_FIRES_PER_NODE * (64 + len(toposort(roots)))]

    def fail(m: Node) -> RewriteLoopError:
        return RewriteLoopError("rewrite rules do not reach a fixed point at a node created at "
                                f"{creation_line(m)}; last rules fired: " + ", ".join(recent))

    def settle(node: Node, depth: int) -> Node:
        """The fixed point of ``node`` (whose inputs may not be settled yet)."""
        if depth > MAX_DEPTH:
            raise fail(node)
        for m in toposort([node], exclude=memo):
            new_inputs = tuple(memo.get(id(i), i) for i in m.inputs)
            if any(a is not b for a, b in zip(new_inputs, m.inputs)):
                n = apply(m.op, new_inputs, line=creation_line(m), **m.attrs)
            else:
                n = m
            fires = 0
            while id(n) not in fixed:
                out = _apply_rules(n, rest if known is not None and n in known else rules,
                                   recent, stats)
                if out is None:
                    break
                fires += 1
                budget[0] -= 1
                if fires > MAX_FIRES_PER_NODE or budget[0] < 0:
                    raise fail(m)
                # settle what the replacement introduced, then try the rules on it again
                ins = tuple(settle(i, depth + 1) for i in out.inputs)
                if any(a is not b for a, b in zip(ins, out.inputs)):
                    line = creation_line(out)
                    api = creating_api(out)
                    out = apply(out.op, ins, line=line, **out.attrs)
                    set_creation_line(out, line, api)
                n = out
            fixed.add(id(n))
            if known is not None:
                known.add(n)
            memo[id(m)] = n
            memo[id(n)] = n
            alive.append(m)
            alive.append(n)
        return memo[id(node)]

    return [settle(r, 0) for r in roots]


def _needs(p: Pat) -> tuple[str | None, ...] | None:
    """The op each direct input of ``p`` must have (None: any), for a cheap pre-check."""
    if not p.inputs:
        return None
    out: list[str | None] = []
    for q in p.inputs:
        if isinstance(q, Pat) and q.op != "*":
            out.append(q.op)
        elif isinstance(q, Var) and q.pred is not None and (op := getattr(q.pred, "op", None)):
            out.append(op)
        else:
            out.append(None)
    return None if all(x is None for x in out) else tuple(out)


def _may_match(need: tuple[str | None, ...], n: Node) -> bool:
    ins = n.inputs
    if len(ins) != len(need):
        return False
    if all(w is None or w == i.op.name for w, i in zip(need, ins)):
        return True
    if len(ins) == 2 and n.op.commutative:
        return all(w is None or w == i.op.name for w, i in zip(need, ins[::-1]))
    return False


def _apply_rules(n: Node, rules: RuleSet, recent: deque[str],
                 stats: dict[str, int] | None) -> Node | None:
    for rule, need in rules.for_op(n.op.name):
        if need is not None and not _may_match(need, n):
            continue
        b = match(rule.pattern, n)
        if b is None:
            continue
        # new nodes get n's line and K function
        out = call_in_line_scope(creation_line(n), rule.build, b, n, api=creating_api(n))
        if out is None or out is n:
            continue
        if out.type != n.type:
            raise SymkError(f"internal error: rule '{rule.name}' changed the type {n.type} -> "
                            f"{out.type} at a node created at {creation_line(n)}")
        set_creation_line(out, creation_line(n), creating_api(n))
        recent.append(rule.name)
        if stats is not None:
            stats[rule.name] = stats.get(rule.name, 0) + 1
        if _trace():
            from symk.graph.printing import pprint

            print(f"[symk] rewrite {rule.name}: {pprint(n)}  ==>  {pprint(out)}",
                  file=sys.stderr)
        return out
    return None

