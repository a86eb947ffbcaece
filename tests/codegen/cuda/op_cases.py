"""The op suite's recorded cases (``tests.harness.OP_CASES``) on disk, so that another process
can replay them: ``save_cases`` writes ``cases.json`` (each graph through
``symk.graph.serialize``, its leaves by type, the tolerances) and ``arrays.npz`` (the fed and
the expected values); ``load_cases`` rebuilds every graph around fresh placeholders.

A variable in a case's graph becomes one more fed placeholder holding the variable's value at
record time (``check_op`` never updates variables); an unfed placeholder keeps its default.  A
graph with an attribute that has no JSON encoding is written as excluded, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symk.graph.node import Node, apply, fresh_uid, toposort
from symk.graph.serialize import Unencodable, decode_attr, dump_nodes, encode_attr, load_nodes
from symk.graph.tensor import storage_of
from tests.harness import OpCase


def _key(case: int, feed: int, kind: str, k: int) -> str:
    return f"c{case}_f{feed}_{kind}{k}"


def _encode(i: int, c: OpCase, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    index = {id(n): k for k, n in enumerate(c.inputs)}
    leaves: list[list[Any]] = [["fed", n.dtype, list(n.shape)] for n in c.inputs]
    extra: list[np.ndarray] = []
    for n in toposort(c.outputs):
        if not n.op.is_leaf or n.op.name == "constant" or id(n) in index:
            continue
        index[id(n)] = len(leaves)
        if n.op.name == "variable":
            leaves.append(["fed", n.dtype, list(n.shape)])
            extra.append(np.array(storage_of(n).value))
        elif n.op.name == "placeholder" and n.attrs.get("default") is not None:
            leaves.append(["default", n.dtype, list(n.shape), encode_attr(n.attrs["default"])])
        else:
            raise Unencodable(f"unfed leaf {n.op.name} without a default")
    nodes, pos = dump_nodes(c.outputs, index)
    for j, (vals, want) in enumerate(c.feeds):
        for k, v in enumerate([*vals, *extra]):
            arrays[_key(i, j, "i", k)] = np.asarray(v)
        for k, w in enumerate(want):
            arrays[_key(i, j, "o", k)] = np.asarray(w)
    return {"where": c.where, "leaves": leaves, "nodes": nodes,
            "outputs": [pos[id(o)] for o in c.outputs], "tols": c.tols,
            "n_feeds": len(c.feeds)}


def save_cases(cases: Sequence[OpCase], directory: Path) -> None:
    """Write ``cases`` to ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, c in enumerate(cases):
        try:
            meta.append(_encode(i, c, arrays))
        except Unencodable as e:
            meta.append({"where": c.where, "excluded": f"graph not serializable: {e}"})
    np.savez(directory / "arrays.npz", **arrays)
    (directory / "cases.json").write_text(json.dumps(meta))


def case_count(directory: Path) -> int:
    return len(json.loads((directory / "cases.json").read_text()))


def load_cases(directory: Path, indices: Sequence[int] | None = None
               ) -> dict[int, OpCase | str]:
    """Case index -> the rebuilt case, or the reason it was excluded when saved."""
    meta = json.loads((directory / "cases.json").read_text())
    arrays = np.load(directory / "arrays.npz")
    out: dict[int, OpCase | str] = {}
    for i in range(len(meta)) if indices is None else indices:
        m = meta[i]
        if "excluded" in m:
            out[i] = m["excluded"]
            continue
        leaves: list[Node] = []
        fed: list[Node] = []
        for kind, dtype, shape, *rest in m["leaves"]:
            attrs = {"default": decode_attr(rest[0])} if kind == "default" else {}
            leaves.append(apply("placeholder", [], dtype=dtype, shape=tuple(shape),
                                uid=fresh_uid(), **attrs))
            if kind == "fed":
                fed.append(leaves[-1])
        nodes = load_nodes(m["nodes"], leaves)
        feeds = [([arrays[_key(i, j, "i", k)] for k in range(len(fed))],
                  [arrays[_key(i, j, "o", k)] for k in range(len(m["outputs"]))])
                 for j in range(m["n_feeds"])]
        out[i] = OpCase(m["where"], fed, [nodes[p] for p in m["outputs"]], feeds,
                        [tuple(t) for t in m["tols"]])
    return out
