"""Graphs as JSON, and name-independent structural keys of graphs.

``structure_key`` hashes a graph by structure only: leaves enter by kind, type and position
(never by name, uid or storage), constants by value, other nodes by op, attributes and the
positions of their inputs; two models built the same way get the same key.
``dump_nodes``/``load_nodes`` write a graph as a JSON-able list whose leaves are references into
a caller-given leaf list, and rebuild it (hash-consed) around other leaves of the same types.
Attribute values are encoded losslessly (tuples vs lists, exact floats, arrays by bytes; other
types through ``register_codec``, e.g. a scan's body graph); a value with no encoding raises
``Unencodable`` and the caller simply does not cache.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.errors import SymkError
from symk.graph.node import ConstValue, Node, apply, toposort


class Unencodable(SymkError):
    """An attribute value that has no JSON encoding (the graph is not cached)."""


#: type -> (tag, encode(value, digest_arrays) -> JSON, decode(JSON) -> value): attribute
#: values defined elsewhere (e.g. a scan's ``ScanBody``, see ``register_codec``)
_CODECS: dict[type, tuple[str, Callable[[Any, bool], Any], Callable[[Any], Any]]] = {}
_DECODERS: dict[str, Callable[[Any], Any]] = {}


def register_codec(cls: type, tag: str, encode: Callable[[Any, bool], Any],
                   decode: Callable[[Any], Any]) -> None:
    """Give attribute values of type ``cls`` a JSON encoding ``{tag: encode(v, digest)}``.
    ``encode`` must be deterministic and name-independent (it enters structural keys; with
    ``digest=True`` large arrays may be digests); ``decode(encode(v, False))`` must give a
    value equivalent to ``v``.  Encoders may raise ``Unencodable``."""
    if tag in ("f", "t", "a") or _DECODERS.get(tag, decode) is not decode:
        raise SymkError(f"internal error: attribute codec tag {tag!r} is taken")
    _CODECS[cls] = (tag, encode, decode)
    _DECODERS[tag] = decode


def encode_attr(v: Any, digest_arrays: bool = False) -> Any:
    """A JSON value for an attribute value; arrays by content (or by digest, for keys)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return {"f": v.hex()}
    if isinstance(v, tuple):
        return {"t": [encode_attr(x, digest_arrays) for x in v]}
    if isinstance(v, list):
        return [encode_attr(x, digest_arrays) for x in v]
    if isinstance(v, np.generic):
        return encode_attr(v.item(), digest_arrays)
    if isinstance(v, ConstValue):
        a = v.array
        data = (hashlib.sha256(a.tobytes()).hexdigest() if digest_arrays and a.nbytes > 64
                else base64.b64encode(a.tobytes()).decode())
        return {"a": [a.dtype.str, list(a.shape), data]}
    codec = _CODECS.get(type(v))
    if codec is not None:
        return {codec[0]: codec[1](v, digest_arrays)}
    raise Unencodable(f"attribute value of type {type(v).__name__} has no JSON encoding")


def decode_attr(j: Any) -> Any:
    if isinstance(j, list):
        return [decode_attr(x) for x in j]
    if isinstance(j, dict):
        if "f" in j:
            return float.fromhex(j["f"])
        if "t" in j:
            return tuple(decode_attr(x) for x in j["t"])
        if "a" in j:
            dt, shape, data = j["a"]
            arr = np.frombuffer(base64.b64decode(data), dtype=np.dtype(dt)).reshape(shape)
            return ConstValue(arr)
        if len(j) == 1:
            ((tag, body),) = j.items()
            if tag in _DECODERS:
                return _DECODERS[tag](body)
        raise SymkError(f"unknown encoded attribute {j!r}")
    return j


#: attributes that make leaves distinct objects but carry no meaning for the computation
_IDENTITY_ATTRS = frozenset({"uid", "storage"})


def structure_key(roots: Sequence[Node], leaf_tag: Callable[[Node], Any]) -> tuple[str, list[Node]]:
    """(sha256 hex, the leaves of the graph in a canonical order).  ``leaf_tag(leaf)`` gives the
    JSON-able facts about a placeholder/variable that matter to the caller (e.g. its input
    position); raises ``Unencodable`` for attributes without an encoding."""
    order = toposort(roots)
    pos: dict[int, int] = {}
    leaves: list[Node] = []
    h = hashlib.sha256()
    for k, n in enumerate(order):
        pos[id(n)] = k
        if n.op.is_leaf and n.op.name != "constant":
            leaves.append(n)
            entry: Any = [n.op.name, n.dtype, list(n.shape), leaf_tag(n),
                          {a: encode_attr(v, True) for a, v in n.attrs.items()
                           if a not in _IDENTITY_ATTRS and a not in ("dtype", "shape")}]
        else:
            entry = [n.op.name, [pos[id(i)] for i in n.inputs],
                     {a: encode_attr(v, True) for a, v in sorted(n.attrs.items())}]
        h.update(repr(entry).encode())  # plain lists/dicts/str/int/None: repr is canonical
        h.update(b"\n")
    h.update(repr([pos[id(r)] for r in roots]).encode())
    return h.hexdigest(), leaves


def dump_nodes(roots: Sequence[Node], leaf_index: dict[int, int], digest_arrays: bool = False
               ) -> tuple[list, dict[int, int]]:
    """The graph of ``roots`` as a JSON-able list in topological order, and node id -> position.
    Nodes whose id is in ``leaf_index`` become ``{"leaf": k}`` references.  With
    ``digest_arrays`` large constants are written as digests (for keys: not loadable)."""
    out: list = []
    pos: dict[int, int] = {}
    for n in toposort(roots):
        pos[id(n)] = len(out)
        if id(n) in leaf_index:
            out.append({"leaf": leaf_index[id(n)]})
        elif n.op.is_leaf and n.op.name != "constant":
            raise Unencodable(f"leaf {n.op.name} is not among the graph's known leaves")
        else:
            out.append([n.op.name, [pos[id(i)] for i in n.inputs],
                        {a: encode_attr(v, digest_arrays) for a, v in sorted(n.attrs.items())}])
    return out, pos


def load_nodes(data: list, leaves: Sequence[Node]) -> list[Node]:
    """Rebuild the nodes written by ``dump_nodes`` around ``leaves``."""
    nodes: list[Node] = []
    for e in data:
        if isinstance(e, dict):
            nodes.append(leaves[e["leaf"]])
        else:
            op, ins, attrs = e
            nodes.append(apply(op, [nodes[i] for i in ins],
                               **{a: decode_attr(v) for a, v in attrs.items()}))
    return nodes
