"""Human-readable views of graphs: ``debugprint`` (indented tree with types and back-references),
``pprint`` (one-line infix), ``to_networkx`` (a ``networkx.DiGraph``) and ``to_dot`` (a DOT
file for graphviz).

Each accepts a Tensor, a Node, a list of them, or a compiled function (duck-typed: the callable
``K.function`` returns has ``.fn.outputs`` and ``.fn.updates``; a ``CompiledFunction`` has
``.outputs`` and ``.updates``), whose outputs and variable updates are shown.  Everything is
iterative, so graphs thousands of ops deep print without hitting Python's recursion limit.
Imports only ``symk.graph`` (and ``symk.errors``); never the runtime or the backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from symk.errors import ArgumentError
from symk.graph.node import ConstValue, Node, creation_line, node_name, toposort

#: attributes that are never shown (identity details or already visible in the type)
_HIDDEN_ATTRS = frozenset({"uid", "storage", "dtype", "shape", "default"})
#: deeper tree levels than this are not indented further (keeps output linear in size)
_MAX_INDENT = 40


# ---------------------------------------------------------------------- roots


@dataclass
class _Roots:
    outputs: list[Node]
    #: (variable label, variable node, new value)
    updates: list[tuple[str, Node, Node]] = field(default_factory=list)
    title: str | None = None
    inputs: list[tuple[str, Node]] = field(default_factory=list)

    def all(self) -> list[Node]:
        return self.outputs + [v for _, _, v in self.updates]


def _as_node(x: Any) -> Node:
    if isinstance(x, Node):
        return x
    node = getattr(x, "node", None)
    if isinstance(node, Node):
        return node
    raise ArgumentError(f"cannot print {type(x).__name__}: expected a symk tensor, a list of "
                        "tensors or a function returned by K.function")


def _roots(x: Any) -> _Roots:
    """Normalize what the user passed to outputs (+ updates for compiled functions)."""
    if isinstance(x, Node) or isinstance(getattr(x, "node", None), Node):
        return _Roots([_as_node(x)])  # a tensor, whatever attributes Keras set on it
    fn = getattr(x, "fn", None)
    if fn is not None and hasattr(fn, "outputs") and hasattr(fn, "updates"):
        x = fn
    if hasattr(x, "outputs") and hasattr(x, "updates") and not isinstance(x, (list, tuple)):
        outs = [_as_node(o) for o in x.outputs]
        ups = [(_var_label(var), _as_node(var), _as_node(val)) for var, val in x.updates]
        ins = list(getattr(x, "inputs", []))
        names = list(getattr(x, "input_names", []))
        labelled = [(names[i] if i < len(names) else node_name(n) or f"input {i}", _as_node(n))
                    for i, n in enumerate(ins)]
        return _Roots(outs, ups, str(getattr(x, "name", "function")), labelled)
    if isinstance(x, (list, tuple)):
        return _Roots([_as_node(o) for o in x])
    return _Roots([_as_node(x)])


def _var_label(var: Any) -> str:
    name = getattr(var, "name", None)
    if isinstance(name, str):
        return name
    node = _as_node(var)
    return node_name(node) or _leaf_name(node)


# ---------------------------------------------------------------------- labels


def _leaf_name(node: Node) -> str:
    nm = node_name(node)
    if nm:
        return nm
    if node.op.name == "variable":
        st = node.attrs.get("storage")
        if st is not None and getattr(st, "name", None):
            return str(st.name)
    return f"{node.op.name}{node.attrs.get('uid', '')}"


def _index_str(spec: Sequence[tuple]) -> str:
    """Render a getitem spec (('i', k) / ('s', start, stop, step) / ('n',)) as ``[...]``."""
    parts = []
    for s in spec:
        if s[0] == "i":
            parts.append(str(s[1]))
        elif s[0] == "n":
            parts.append("None")
        else:
            start, stop, step = s[1:]
            txt = f"{'' if start is None else start}:{'' if stop is None else stop}"
            if step is not None:
                txt += f":{step}"
            parts.append(txt)
    return "[" + ", ".join(parts) + "]"


def _value_str(a: np.ndarray, limit: int = 6) -> str:
    if a.ndim == 0:
        return str(a[()])
    if a.size <= limit:
        return np.array2string(a, separator=", ").replace("\n", "")
    return f"array<{a.dtype.name}[{','.join(map(str, a.shape))}]>"


def _attr_str(v: Any) -> str:
    if isinstance(v, ConstValue):
        return _value_str(v.array)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    return repr(v)


#: attribute defaults the type rules do not declare in their signatures
_EXTRA_DEFAULTS: dict[str, dict[str, Any]] = {
    "relu": {"alpha": 0.0, "max_value": None, "threshold": 0.0},
}
_defaults_cache: dict[str, dict[str, Any]] = {}


def _defaults(op: Any) -> dict[str, Any]:
    d = _defaults_cache.get(op.name)
    if d is None:
        d = dict(_EXTRA_DEFAULTS.get(op.name, {}))
        try:
            params = inspect.signature(op.infer).parameters.values()
        except (TypeError, ValueError):
            params = []
        for prm in params:
            if prm.default is not inspect.Parameter.empty:
                d[prm.name] = prm.default
        _defaults_cache[op.name] = d
    return d


def _is_default(v: Any, d: Any) -> bool:
    return type(v) is type(d) and v == d


def _shown_attrs(node: Node) -> list[tuple[str, Any]]:
    """Attributes worth showing: not hidden, not positional (einsum spec, getitem index) and
    not equal to the op's default."""
    op = node.op.name
    dflt = _defaults(node.op)
    return [(k, v) for k, v in sorted(node.attrs.items())
            if k not in _HIDDEN_ATTRS and not (op == "constant" and k == "value")
            and not (op in ("getitem", "einsum") and k == "spec")
            and not (k in dflt and _is_default(v, dflt[k]))]


def node_label(node: Node) -> str:
    """One line: op, key attributes, name (if any) and type, e.g. ``sum{axes=(1,)} float32[?]``."""
    op = node.op.name
    if op == "constant":
        head = f"constant {_value_str(node.attrs['value'].array)}"
    elif op in ("placeholder", "variable"):
        head = f"{op} '{_leaf_name(node)}'"
    else:
        head = op
        if op == "getitem":
            head += _index_str(node.attrs["spec"])
        elif op == "einsum":
            head += "{" + str(node.attrs["spec"]) + "}"
        attrs = _shown_attrs(node)
        if attrs:
            head += "{" + ", ".join(f"{k}={_attr_str(v)}" for k, v in attrs) + "}"
        nm = node_name(node)
        if nm:
            head += f" '{nm}'"
    if op == "constant" and node_name(node):
        head += f" '{node_name(node)}'"
    return f"{head} {node.type}"


# ---------------------------------------------------------------------- debugprint


def _ref_counts(roots: Sequence[Node]) -> dict[int, int]:
    """How often each node is referenced: once per root occurrence and per consuming node."""
    counts: dict[int, int] = {}
    for r in roots:
        counts[id(r)] = counts.get(id(r), 0) + 1
    for n in toposort(roots):
        for i in n.inputs:
            counts[id(i)] = counts.get(id(i), 0) + 1
    return counts


def _leaf_hint(node: Node) -> str:
    """A short reminder after a back-reference to a leaf (`` 'W'``, `` 1.0``)."""
    if node.op.name in ("placeholder", "variable"):
        return f" '{_leaf_name(node)}'"
    if node.op.name == "constant" and node.attrs["value"].array.size <= 6:
        return " " + _value_str(node.attrs["value"].array)
    return ""


class _TreePrinter:
    """Prints trees sharing one id space: a node referenced more than once gets ``#k`` when
    first printed and is shown as ``#k (see above)`` afterwards."""

    def __init__(self, roots: Sequence[Node]) -> None:
        self.counts = _ref_counts(roots)
        self.ids: dict[int, int] = {}
        self.lines: list[str] = []

    def tree(self, root: Node, first_prefix: str = "") -> None:
        stack: list[tuple[Node, int]] = [(root, 0)]
        while stack:
            node, depth = stack.pop()
            if depth == 0:
                indent = first_prefix
            elif depth <= _MAX_INDENT:
                indent = " |" * depth
            else:
                indent = " |" * _MAX_INDENT + f"({depth})"
            k = self.ids.get(id(node))
            if k is not None:
                self.lines.append(f"{indent}#{k} (see above){_leaf_hint(node)}")
                continue
            line = node_label(node)
            if self.counts.get(id(node), 0) > 1:
                k = self.ids[id(node)] = len(self.ids) + 1
                line += f" #{k}"
            self.lines.append(indent + line)
            for child in reversed(node.inputs):
                stack.append((child, depth + 1))


def debugprint(x_or_fn: Any, file: IO[str] | None = None) -> str:
    """An indented tree of the graph of ``x_or_fn``, one node per line with its type.

    ``x_or_fn`` is a tensor, a list of tensors or a function from ``K.function`` (its outputs
    and its updates ``variable <- expression`` are printed).  The text is returned and, when
    ``file`` is given, also written to it.
    """
    r = _roots(x_or_fn)
    p = _TreePrinter(r.all())
    if r.title is not None:
        p.lines.append(f"function '{r.title}': {len(r.inputs)} input(s), "
                       f"{len(r.outputs)} output(s), {len(r.updates)} update(s)")
        for i, (name, node) in enumerate(r.inputs):
            p.lines.append(f"input {i}: '{name}' {node.type}")
        for i, o in enumerate(r.outputs):
            p.lines.append(f"output {i}:")
            p.tree(o, " ")
        for name, _, v in r.updates:
            p.tree(v, f"{name} <- ")
    else:
        for o in r.outputs:
            p.tree(o)
    text = "\n".join(p.lines) + "\n"
    if file is not None:
        file.write(text)
    return text


# ---------------------------------------------------------------------- pprint

# precedence (higher binds tighter); Python's own ordering
_INFIX = {
    "logical_or": ("or", 1), "logical_and": ("and", 2),
    "lt": ("<", 4), "le": ("<=", 4), "gt": (">", 4), "ge": (">=", 4), "eq": ("==", 4),
    "ne": ("!=", 4),
    "add": ("+", 5), "sub": ("-", 5),
    "mul": ("*", 6), "div": ("/", 6), "floordiv": ("//", 6), "mod": ("%", 6),
    "pow": ("**", 8),
}
_PREFIX = {"neg": ("-", 7), "logical_not": ("not ", 3)}
_ATOM = 100


def _call(node: Node, args: list[str]) -> str:
    extra = [f"{k}={_attr_str(v)}" for k, v in _shown_attrs(node)]
    if node.op.name == "cast":
        extra.append(node.dtype)
    elif node.op.name in ("reshape", "fill") or node.op.is_random:
        extra.append(f"shape={node.shape}")
    if node.op.name == "einsum":
        args = [repr(str(node.attrs["spec"]))] + args
    return f"{node.op.name}({', '.join(args + extra)})"


def _pp_node(node: Node, sub: list[tuple[str, int]]) -> tuple[str, int]:
    """Text and precedence of ``node`` given its inputs' (text, precedence)."""
    op = node.op.name
    if op in ("placeholder", "variable"):
        return _leaf_name(node), _ATOM
    if op == "constant":
        a = node.attrs["value"].array
        if a.size <= 6:
            txt = _value_str(a)
            return txt, (_PREFIX["neg"][1] if txt.startswith("-") else _ATOM)
        return node_name(node) or f"constant<{node.type}>", _ATOM
    if op in _INFIX and len(sub) == 2:
        sym, prec = _INFIX[op]
        (lt, lp), (rt, rp) = sub
        if op == "pow":  # right-associative
            left_paren, right_paren = lp <= prec, rp < prec
        else:
            left_paren = lp < prec or (prec == 4 and lp == 4)
            right_paren = rp <= prec
        lt = f"({lt})" if left_paren else lt
        rt = f"({rt})" if right_paren else rt
        return f"{lt} {sym} {rt}", prec
    if op in _PREFIX and len(sub) == 1:
        sym, prec = _PREFIX[op]
        t, p = sub[0]
        return f"{sym}{f'({t})' if p < prec or (op == 'neg' and p == prec) else t}", prec
    if op == "getitem":
        t, p = sub[0]
        return f"{t if p >= _ATOM else f'({t})'}{_index_str(node.attrs['spec'])}", _ATOM
    return _call(node, [t for t, _ in sub]), _ATOM


def pprint(x: Any, max_len: int = 100_000) -> str:
    """A one-line infix rendering, e.g. ``(x + 1.0) * sigmoid(W)``; a list gives one line per
    tensor (a function: its outputs, then ``variable <- expression`` per update).

    Shared subexpressions are repeated, so a sub-expression longer than ``max_len`` characters
    is abbreviated as ``op(...)`` (use ``debugprint`` for such graphs)."""
    r = _roots(x)
    roots = r.all()
    order = toposort(roots)
    remaining: dict[int, int] = {}
    for n in order:
        for i in n.inputs:
            remaining[id(i)] = remaining.get(id(i), 0) + 1
    keep = {id(n) for n in roots}
    memo: dict[int, tuple[str, int]] = {}
    for n in order:
        txt, prec = _pp_node(n, [memo[id(i)] for i in n.inputs])
        if len(txt) > max_len:
            txt, prec = f"{n.op.name}(...)", _ATOM
        memo[id(n)] = (txt, prec)
        for i in n.inputs:  # free strings nobody needs any more: deep chains stay linear
            remaining[id(i)] -= 1
            if remaining[id(i)] == 0 and id(i) not in keep:
                del memo[id(i)]
    lines = [memo[id(o)][0] for o in r.outputs]
    lines += [f"{name} <- {memo[id(v)][0]}" for name, _, v in r.updates]
    return "\n".join(lines)


# ---------------------------------------------------------------------- networkx / DOT


def to_networkx(x_or_fn: Any):
    """A ``networkx.DiGraph``: one vertex per node (integer ids in topological order) with
    attributes ``op``, ``dtype``, ``shape``, ``name``, ``line`` and ``label``; edges run from an
    input to its consumer with the input position as ``index``.  ``graph['outputs']`` lists the
    output ids, ``graph['updates']`` the ``(variable id, new value id)`` pairs."""
    import networkx as nx

    r = _roots(x_or_fn)
    order = toposort(r.all() + [var for _, var, _ in r.updates])
    ids = {id(n): k for k, n in enumerate(order)}
    g = nx.DiGraph()
    for k, n in enumerate(order):
        nm = _leaf_name(n) if n.op.name in ("placeholder", "variable") else node_name(n)
        g.add_node(k, op=n.op.name, dtype=n.dtype, shape=n.shape, name=nm,
                   line=creation_line(n), label=node_label(n))
    for n in order:
        for pos, i in enumerate(n.inputs):
            if g.has_edge(ids[id(i)], ids[id(n)]):  # x * x: keep every position
                g.edges[ids[id(i)], ids[id(n)]]["index"] += f",{pos}"
            else:
                g.add_edge(ids[id(i)], ids[id(n)], index=str(pos))
    g.graph["outputs"] = [ids[id(o)] for o in r.outputs]
    g.graph["updates"] = [(ids[id(var)], ids[id(v)]) for _, var, v in r.updates]
    if r.title is not None:
        g.graph["name"] = r.title
    return g


def _dot_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(x_or_fn: Any, path: Any = None) -> str:
    """Write the graph as a DOT file graphviz can open (``dot -Tsvg file.dot``); returns the
    DOT text (and writes nothing when ``path`` is None)."""
    g = to_networkx(x_or_fn)
    outs = set(g.graph["outputs"])
    lines = [f"digraph {_dot_quote(g.graph.get('name', 'symk'))} {{",
             "  rankdir=BT;",
             '  node [shape=box, fontname="monospace", fontsize=10];']
    styles = {"placeholder": 'shape=ellipse, style=filled, fillcolor="#d8e8ff"',
              "variable": 'shape=ellipse, style=filled, fillcolor="#ffe8c8"',
              "constant": 'shape=plaintext'}
    for k, data in g.nodes(data=True):
        attrs = [f"label={_dot_quote(data['label'])}", f"tooltip={_dot_quote(data['line'])}"]
        if data["op"] in styles:
            attrs.append(styles[data["op"]])
        if k in outs:
            attrs.append("peripheries=2")
        lines.append(f"  n{k} [{', '.join(attrs)}];")
    for a, b, data in g.edges(data=True):
        lines.append(f"  n{a} -> n{b} [label={_dot_quote(data['index'])}];")
    for var, val in g.graph["updates"]:
        lines.append(f'  n{val} -> n{var} [style=dashed, color="#c05000", label="update"];')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text
