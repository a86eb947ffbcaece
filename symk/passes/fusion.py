"""Fusion: partition the graph into kernel groups and order them into a Schedule.

Producer-into-consumer merging, visiting consumers first: an elementwise or reduction node
joins the group of its consumers when all of its consumers are in that one group (so groups
stay convex), its shape matches the group's iteration domain (the reduction's input domain for
a prologue, its output domain for an epilogue), the group keeps at most one reduction, and the
group reads at most ``MAX_INPUTS`` outside values (scalar constants are immediates in the
generated code and do not count).

Then sibling merging (``_merge_siblings``): an elementwise group whose values several groups
read joins one of them, its values becoming outputs of that kernel, when it has that group's
output domain, does not feed the group's reduction side and the kernels' order stays acyclic.
"""

from __future__ import annotations

from collections.abc import Sequence

from symk.graph.node import Node, toposort
from symk.graph.ops.leaves import is_immediate
from symk.passes.schedule import Extern, Kernel, Schedule, View, kernel_name, kind_of

MAX_INPUTS = 24


class _Group:
    __slots__ = ("members", "ins", "reduction", "out_domain", "in_domain")

    def __init__(self, node: Node, kind: str) -> None:
        self.members: dict[int, Node] = {id(node): node}
        self.ins: set[int] = {id(i) for i in node.inputs if not is_immediate(i)}
        self.reduction = node if kind == "reduction" else None
        self.out_domain = node.shape
        self.in_domain = node.inputs[0].shape if kind == "reduction" else node.shape

    def ins_with_group(self, p: _Group) -> set[int]:
        """The outside values the group would read with all of ``p`` added."""
        return {i for i in self.ins | p.ins if i not in self.members and i not in p.members}

    def inputs_with(self, p: Node) -> set[int]:
        """The outside values the group would read with ``p`` added."""
        return (self.ins - {id(p)}) | {id(i) for i in p.inputs
                                       if id(i) not in self.members and not is_immediate(i)}


def fuse(roots: Sequence[Node], enabled: bool = True) -> Schedule:
    order = toposort(roots)
    pos = {id(n): i for i, n in enumerate(order)}
    consumers: dict[int, list[Node]] = {id(n): [] for n in order}
    for n in order:
        for i in dict.fromkeys(n.inputs):
            consumers[id(i)].append(n)
    root_ids = {id(r) for r in roots}
    # counter-based random ops (Philox, symk.graph.philox) are elementwise functions of the
    # element index and the call number: they fuse into their consumers' kernels
    kinds = {id(n): "elementwise" if getattr(n.op, "in_kernels", False) else kind_of(n)
             for n in order}
    group: dict[int, _Group] = {}
    for n in order:
        if kinds[id(n)] in ("elementwise", "reduction"):
            group[id(n)] = _Group(n, kinds[id(n)])

    if enabled:
        for p in reversed(order):
            k = kinds[id(p)]
            if k not in ("elementwise", "reduction"):
                continue
            users = consumers[id(p)]
            if not users:
                continue
            g = group.get(id(users[0]))
            if g is None or any(group.get(id(u)) is not g for u in users):
                continue
            if not _can_merge(p, k, g, users, id(p) in root_ids):
                continue
            g.members[id(p)] = p
            g.ins = g.inputs_with(p)
            if k == "reduction":
                g.reduction = p
                g.in_domain = p.inputs[0].shape
            group[id(p)] = g

        _merge_siblings(order, kinds, group, consumers)

    # materialize groups as kernels, in topological order of groups
    steps_by_key: dict[int, Kernel | Extern | View] = {}
    first_pos: dict[int, int] = {}
    members: dict[int, list[Node]] = {}
    for n in order:
        k = kinds[id(n)]
        if k == "leaf":
            continue
        if k in ("elementwise", "reduction"):
            g = group[id(n)]
            members.setdefault(id(g), []).append(n)
            first_pos.setdefault(id(g), pos[id(n)])
        else:
            steps_by_key[id(n)] = View(n) if k == "view" else Extern(n)
            first_pos[id(n)] = pos[id(n)]
    for gid, nodes in members.items():
        ids = {id(x) for x in nodes}
        ins = list({id(i): i for x in nodes for i in x.inputs if id(i) not in ids}.values())
        outs = [x for x in nodes
                if id(x) in root_ids or any(id(u) not in ids for u in consumers[id(x)])]
        red = next((x for x in nodes if kinds[id(x)] == "reduction"), None)
        kern = Kernel(nodes, ins, outs, red)
        kern.name = kernel_name(kern)
        steps_by_key[gid] = kern
    steps = _order_steps(steps_by_key, first_pos)
    leaves = [n for n in order if kinds[id(n)] == "leaf"]
    return Schedule(steps, list(roots), leaves)


def _merge_siblings(order: list[Node], kinds: dict[int, str], group: dict[int, _Group],
                    consumers: dict[int, list[Node]]) -> None:
    """Second round: an elementwise group whose values several groups read joins one of them
    (its values become outputs of that kernel) when it has that group's output domain, does not
    feed the group's reduction side, and no other path between the two groups would make the
    kernels' order cyclic.  A Dense pre-activation read by its relu and by the relu gradient, or
    a chain of scalars, stops being a kernel of its own."""
    groups: list[_Group] = []
    seen: set[int] = set()
    for n in order:
        g = group.get(id(n))
        if g is not None and id(g) not in seen:
            seen.add(id(g))
            groups.append(g)
    rank = {id(g): i for i, g in enumerate(groups)}
    by_id = {id(g): g for g in groups}

    def step_of(n: Node) -> int:  # a node's step: its group, or itself (an extern or a view)
        g = group.get(id(n))
        return id(g) if g is not None else id(n)

    # step -> the steps reading its values (paths through externs and views order groups too)
    succ: dict[int, set[int]] = {id(g): set() for g in groups}
    for n in order:
        if kinds[id(n)] == "leaf":
            continue
        k = step_of(n)
        out = succ.setdefault(k, set())
        for u in consumers[id(n)]:
            if step_of(u) != k:
                out.add(step_of(u))

    def reaches(start: set[int], goal: int) -> bool:
        stack, done = list(start), set()
        while stack:
            x = stack.pop()
            if x == goal:
                return True
            if x in done:
                continue
            done.add(x)
            stack.extend(succ.get(x, ()))
        return False

    for p in groups:
        if p.reduction is not None or id(p) not in by_id:
            continue
        for gid in sorted((t for t in succ[id(p)] if t in by_id), key=rank.__getitem__):
            g = by_id[gid]
            if not _can_join(p, g, consumers) or reaches(succ[id(p)] - {gid}, gid):
                continue
            g.ins = g.ins_with_group(p)
            g.members.update(p.members)
            for k in p.members:
                group[k] = g
            del by_id[id(p)]
            for x, out in succ.items():
                if id(p) in out:
                    out.discard(id(p))
                    if x != gid:
                        out.add(gid)
            succ[gid] |= succ.pop(id(p)) - {gid}
            break


def _can_join(p: _Group, g: _Group, consumers: dict[int, list[Node]]) -> bool:
    """Whether the elementwise group ``p`` can be computed inside ``g`` (see _merge_siblings)."""
    for n in p.members.values():
        if any(id(u) in g.members and u.op.index_map(u) is not None for u in consumers[id(n)]):
            return False  # g reads n at other indices (a slice): n must be g's input
    if p.out_domain != g.out_domain and not (
            len(p.members) == 1 and g.reduction is None and _refines(p.out_domain, g.out_domain)
            and all(getattr(n.op, "in_kernels", False) for n in p.members.values())):
        return False
    if g.reduction is not None:
        if g.in_domain == g.out_domain:
            return False
        # p's values are read in g only on the output side (the epilogue), never by the
        # reduction or its prologue
        for n in p.members.values():
            for u in consumers[id(n)]:
                if id(u) in g.members and (u is g.reduction or u.shape != g.out_domain):
                    return False
    return len(g.ins_with_group(p)) <= MAX_INPUTS


def _broadcasts(shape: tuple, domain: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``domain`` (right-aligned; each dim equal or a static
    1), so a load of it inside a kernel over ``domain`` reads index 0 on its 1s."""
    return len(shape) <= len(domain) and all(
        d == 1 or (d is not None and d == e) or (d is None and e is None and len(shape) ==
                                                 len(domain))
        for d, e in zip(shape, domain[len(domain) - len(shape):]))


def _refines(shape: tuple, domain: tuple) -> bool:
    """Whether ``domain`` is ``shape`` with some unknown dims known (a None dim is broadcast
    nowhere at run time, so it equals the domain's extent there)."""
    return len(shape) == len(domain) and all(d is None or d == e
                                             for d, e in zip(shape, domain))


def _can_merge(p: Node, kind: str, g: _Group, users: list[Node], is_root: bool) -> bool:
    if len(g.inputs_with(p)) > MAX_INPUTS:
        return False
    if any(u.op.index_map(u) is not None for u in users):
        return False  # a slice reads its input at other indices: it is a kernel input
    if g.reduction is None and p.op.index_map(p) is not None and not is_root and \
            len(users) == 1 and _broadcasts(p.shape, g.out_domain):
        # a load (a slice, a transpose) used once, read at the broadcast index: it is never
        # an output, so its own shape needs no loop
        return True
    if getattr(p.op, "in_kernels", False) and g.reduction is None:
        # a random mask shaped by a shape vector (dropout's ``shape(x)``) knows fewer dims
        # statically than the kernel it feeds: it is computed at the kernel's extents
        return _refines(p.shape, g.out_domain)
    if kind == "reduction":
        # a reduction joins an elementwise group computed over the reduction's output domain
        return g.reduction is None and g.out_domain == p.shape
    if g.reduction is None:
        return p.shape == g.out_domain
    if p.shape == g.out_domain:  # epilogue-side producer
        return True
    # prologue: feeds only the reduction's input domain
    return p.shape == g.in_domain and not is_root and all(
        u is g.reduction or u.shape == g.in_domain for u in users)


def _order_steps(steps: dict[int, Kernel | Extern | View],
                 first_pos: dict[int, int]) -> list[Kernel | Extern | View]:
    """Kahn's algorithm over steps (ties broken by first topological position)."""
    import heapq

    producer: dict[int, int] = {}
    for key, s in steps.items():
        outs = s.nodes if isinstance(s, Kernel) else [s.node]
        for o in outs:
            producer[id(o)] = key
    deps: dict[int, set[int]] = {k: set() for k in steps}
    users: dict[int, set[int]] = {k: set() for k in steps}
    for key, s in steps.items():
        ins = s.inputs if isinstance(s, Kernel) else s.node.inputs
        for i in ins:
            pk = producer.get(id(i))
            if pk is not None and pk != key:
                deps[key].add(pk)
                users[pk].add(key)
    ready = [(first_pos[k], k) for k, d in deps.items() if not d]
    heapq.heapify(ready)
    out = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(steps[k])
        for u in users[k]:
            deps[u].discard(k)
            if not deps[u]:
                heapq.heappush(ready, (first_pos[u], u))
    if len(out) != len(steps):
        raise RuntimeError("internal error: cycle between fused kernels")
    return out
