"""Nodes: immutable, hash-consed graph vertices ``(op, inputs, attrs, type)``.

Building the same expression twice returns the same Node object, so common-subexpression
elimination is free and identity is structural.  Names and creation lines (the user's
``file:line``) live in side tables, never in a node's identity.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import weakref
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from symk.errors import SymkError, user_line
from symk.graph.op import Op, get_op
from symk.graph.storage import Storage
from symk.graph.types import Type

_lock = threading.RLock()
_table: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()
_names: weakref.WeakKeyDictionary[Node, str] = weakref.WeakKeyDictionary()
_lines: weakref.WeakKeyDictionary[Node, str] = weakref.WeakKeyDictionary()
_uids = itertools.count(1)
#: the creation line given to nodes built inside ``line_scope`` (rewrites carry the line of the
#: node they replace to every node they create)
_scope_line: contextvars.ContextVar[str | None] = contextvars.ContextVar("symk_line", default=None)
#: the ``K`` function being called (set by the backend's ``api`` wrapper): run-time errors name
#: the K function that created the failing node
scope_api: contextvars.ContextVar[str | None] = contextvars.ContextVar("symk_api", default=None)
_apis: weakref.WeakKeyDictionary[Node, str] = weakref.WeakKeyDictionary()


def fresh_uid() -> int:
    """A process-unique integer for leaves that must never be merged (placeholders, ...)."""
    return next(_uids)


class ConstValue:
    """An immutable numpy array usable as a hashable node attribute (hashed by content)."""

    __slots__ = ("array", "_key", "_hash")

    def __init__(self, array: np.ndarray) -> None:
        a = np.array(array, copy=True)
        a.setflags(write=False)
        self.array = a
        self._key = (a.dtype.str, a.shape, a.tobytes())
        self._hash = hash(self._key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConstValue) and self._key == other._key

    def __repr__(self) -> str:
        if self.array.size <= 6:
            return np.array2string(self.array, separator=",").replace("\n", "")
        return f"array<{self.array.dtype}{list(self.array.shape)}>"


def _freeze(v: Any) -> Any:
    """Hashable, type-exact key for an attribute value (1, 1.0 and True stay distinct)."""
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_freeze(x) for x in v))
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, (bool, int, str, type(None), ConstValue)):
        return (type(v).__name__, v)
    if isinstance(v, np.generic):
        return _freeze(v.item())
    if isinstance(v, Storage):
        return ("storage", id(v))
    if hasattr(v, "freeze_key"):  # structured attributes (a scan's body) hash themselves
        return (type(v).__name__, v)
    raise SymkError(f"attribute value {v!r} of type {type(v).__name__} is not hashable")


class Node:
    """One vertex of the graph.  Never construct directly: use :func:`apply`."""

    __slots__ = ("op", "inputs", "attrs", "type", "key", "__weakref__")

    op: Op
    inputs: tuple[Node, ...]
    attrs: Mapping[str, Any]
    type: Type
    key: tuple

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Node is immutable")

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> tuple[int | None, ...]:
        return self.type.shape

    @property
    def ndim(self) -> int:
        return len(self.type.shape)

    def __repr__(self) -> str:
        nm = _names.get(self)
        tag = f" '{nm}'" if nm else ""
        return f"<Node {self.op.name}{tag} {self.type}>"

    # Nodes compare and hash by identity, which equals structure thanks to hash-consing.
    __hash__ = object.__hash__


def _make(op: Op, inputs: tuple[Node, ...], attrs: dict[str, Any], typ: Type, key: tuple) -> Node:
    n = object.__new__(Node)
    object.__setattr__(n, "op", op)
    object.__setattr__(n, "inputs", inputs)
    object.__setattr__(n, "attrs", MappingProxyType(attrs))
    object.__setattr__(n, "type", typ)
    object.__setattr__(n, "key", key)
    return n


def apply(op: Op | str, inputs: Sequence[Node], line: str | None = None, **attrs: Any) -> Node:
    """Build (or find) the node ``op(*inputs, **attrs)``; type inference runs once per node."""
    if isinstance(op, str):
        op = get_op(op)
    inputs = tuple(inputs)
    for i in inputs:
        if not isinstance(i, Node):
            raise SymkError(f"op '{op.name}': input {i!r} is not a graph node")
    attrs = {k: v for k, v in attrs.items()}
    key = (op.name, inputs, tuple(sorted((k, _freeze(v)) for k, v in attrs.items())))
    with _lock:
        n = _table.get(key)
        if n is not None:
            return n
    op.check_attrs(attrs)
    if op.arity is not None and len(inputs) != op.arity:
        raise SymkError(f"op '{op.name}' takes {op.arity} input(s), got {len(inputs)}")
    try:
        typ = op.infer([i.type for i in inputs], **attrs)
    except SymkError as e:
        where = line or user_line()
        raise type(e)(f"{e}\n  (op '{op.name}' on {', '.join(str(i.type) for i in inputs)}; "
                      f"at {where})") from None
    n = _make(op, inputs, attrs, typ, key)
    with _lock:
        existing = _table.setdefault(key, n)
    if existing is n:
        _lines[n] = line or _scope_line.get() or user_line()
        api = scope_api.get() if line is None else None  # (passes give lines explicitly)
        if api is not None:
            _apis[n] = api
    return existing


def describe_origin(node: Node) -> str:
    """``K.reshape (op 'reshape', created at file:line)``: where a node came from, for errors."""
    api = _apis.get(node)
    what = f"K.{api} (op '{node.op.name}'" if api else f"op '{node.op.name}' ("
    sep = ", " if api else ""
    return f"{what}{sep}created at {creation_line(node)})"


@contextlib.contextmanager
def line_scope(line: str) -> Iterator[None]:
    """Nodes first built inside the block (without an explicit ``line``) get ``line``."""
    token = _scope_line.set(line)
    try:
        yield
    finally:
        _scope_line.reset(token)


def call_in_line_scope(line: str, fn: Callable[..., Any], *args: Any,
                       api: str | None = None) -> Any:
    """``fn(*args)`` inside ``line_scope(line)`` (new nodes also get the K function ``api``),
    without a generator's overhead (the rewrite engine calls rule builders thousands of times
    per graph)."""
    token = _scope_line.set(line)
    atoken = scope_api.set(api)
    try:
        return fn(*args)
    finally:
        scope_api.reset(atoken)
        _scope_line.reset(token)


def set_name(node: Node, name: str | None) -> None:
    if name and node not in _names:
        _names[node] = name


def node_name(node: Node) -> str | None:
    return _names.get(node)


def creation_line(node: Node) -> str:
    return _lines.get(node, "<unknown>")


def set_creation_line(node: Node, line: str, api: str | None = None) -> None:
    """Carry a creation line (and the K function that made it) to a node (used by rewrites:
    the replacement inherits them)."""
    _lines.setdefault(node, line)
    if api is not None:
        _apis.setdefault(node, api)


def creating_api(node: Node) -> str | None:
    """The name of the K function whose call created ``node`` (None if unknown)."""
    return _apis.get(node)


def toposort(roots: Iterable[Node], exclude: Container[int] = ()) -> list[Node]:
    """All ancestors of ``roots`` (inclusive), inputs before users; iterative (deep graphs).
    Nodes whose id is in ``exclude`` are neither listed nor descended into."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen or id(root) in exclude:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                child = node.inputs[i]
                if id(child) not in seen and id(child) not in exclude:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                stack.pop()
                order.append(node)
    return order


def substitute(roots: Sequence[Node], mapping: dict[int, Node]) -> list[Node]:
    """Rebuild ``roots`` with the nodes whose id is in ``mapping`` replaced."""
    memo: dict[int, Node] = {}
    for node in toposort(roots):
        if id(node) in mapping:
            memo[id(node)] = mapping[id(node)]
            continue
        new_inputs = tuple(memo[id(i)] for i in node.inputs)
        if any(a is not b for a, b in zip(new_inputs, node.inputs)):
            memo[id(node)] = apply(node.op, new_inputs, line=creation_line(node), **node.attrs)
        else:
            memo[id(node)] = node
    return [memo[id(r)] for r in roots]
