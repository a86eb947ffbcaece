"""The plan cache: optimized, scheduled and lowered functions keyed by graph structure.

A function's key is a name-independent hash of its graph *before* the passes (leaves by kind,
type and input position; see ``symk.graph.serialize.structure_key``) plus everything else that
shapes the plan: the device, the learning-phase value, the pass settings, the target and the
symk version and a fingerprint of symk's own source (so a changed pass or lowering never
serves a plan made by the old code, even without a version bump).  The entry (a "template")
holds the optimized graph with leaves as positions, the
Schedule by node positions and, on ``cpu``, the object-cache key of the native module and how
each kernel is called.  A hit rebuilds the plan around the new function's own leaves without
running passes, fusion, lowering, rendering or LLVM: rebuilding the same model in the same
process, or in a later process, costs a graph walk.

Templates live in memory and on disk beside the object cache (``<key>.plan.json``, written
atomically, JSON only).  A plan drives native kernel calls (buffer sizes, argument order), so
the file carries a ``sha256`` of its key and its content (the template's own JSON, the last
field); a file that does not match, or is unreadable, is discarded with a warning and the
function is compiled normally.  Dumps (``SYMK_DEBUG>=3``, ``SYMK_DUMP_DIR``) and rewrite
tracing (``SYMK_TRACE_REWRITES``) bypass the cache, since they show the passes at work: a
traced run re-runs every pass (and still finds native code in the object cache).

A scan's body (``ScanBody``, an attribute of its nodes) is part of the key and of the
template (see ``symk.graph.ops.scan.encode_body``); the body's own compiled plan is a plan
cache entry too (``symk.runtime.scan_cpu``), so a recurrent model in a later process runs no
pass and no LLVM either.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

from symk import config, version
from symk.debug import log
from symk.graph.node import Node
from symk.graph.serialize import Unencodable, dump_nodes, load_nodes, structure_key
from symk.passes.schedule import Extern, Kernel, Schedule, View
from symk.runtime import cache
from symk.runtime.lru import LRU, PLANS_MAX

#: bump when the template layout changes
FORMAT = 3
#: key -> template, least recently used first out (bounded; the disk keeps every plan)
_memory: LRU = LRU(PLANS_MAX)


@functools.cache
def code_fingerprint() -> str:
    """sha256 of every Python source file of the installed symk package (read once per
    process, a few ms): plans depend on the passes, the lowering and the runtime's layout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(d, f)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()


def enabled() -> bool:
    """Whether compilations use the plan cache: not while they are being watched (dumps,
    ``SYMK_DEBUG>=3``, ``SYMK_TRACE_REWRITES``), which must show the passes running."""
    return config.debug_level() < 3 and not config.dump_dir() and not config.trace_rewrites()


def plan_key(roots: Sequence[Node], feeds: Sequence[Node], n_outputs: int, device: str,
             spec: tuple, target: str) -> tuple[str, list[Node]] | None:
    """(key, the graph's leaves in canonical order), or None when the graph has an attribute
    without an encoding (such functions are simply not cached)."""
    from symk.passes import registry

    feed_pos = {id(f): i for i, f in enumerate(feeds)}
    try:
        h, leaves = structure_key(roots, lambda leaf: feed_pos.get(id(leaf), -1))
    except Unencodable as e:
        log(1, f"plan cache: not cached ({e})")
        return None
    extra = [FORMAT, h, len(feeds), n_outputs, device, list(spec), target, version.__version__,
             code_fingerprint(), registry.opt_level(), sorted(registry.excluded_tags())]
    return hashlib.sha256(json.dumps(extra).encode()).hexdigest(), leaves


def make_template(roots: Sequence[Node], schedule: Schedule, leaves: Sequence[Node],
                  prep: Any = None) -> dict[str, Any] | None:
    """The JSON-able template of an optimized function (None when it cannot be encoded)."""
    try:
        nodes, pos = dump_nodes(list(roots), {id(n): k for k, n in enumerate(leaves)})
    except Unencodable as e:
        log(1, f"plan cache: not cached ({e})")
        return None

    def p(ns: Sequence[Node]) -> list[int]:
        return [pos[id(n)] for n in ns]

    steps: list[list[Any]] = []
    for s in schedule.steps:
        if isinstance(s, Kernel):
            red = -1 if s.reduction is None else pos[id(s.reduction)]
            steps.append(["k", s.name, p(s.nodes), p(s.inputs), p(s.outputs), red])
        else:
            steps.append(["x" if isinstance(s, Extern) else "v", pos[id(s.node)]])
    t: dict[str, Any] = {
        "format": FORMAT, "nodes": nodes, "roots": p(roots), "steps": steps,
        "leaves": p(schedule.leaves), "frees": [p(f) for f in schedule.frees],
        "buffers": [[pos[i], b] for i, b in schedule.buffers.items() if i in pos],
        "n_buffers": schedule.n_buffers, "native": None,
    }
    if prep is not None:
        t["native"] = prep.encode(p)
    return t


def instantiate(t: dict[str, Any], leaves: Sequence[Node]) -> tuple[list[Node], Schedule, Any]:
    """(optimized roots, Schedule, NativePrep or None) rebuilt around ``leaves``."""
    nodes = load_nodes(t["nodes"], leaves)

    def n(ps: Sequence[int]) -> list[Node]:
        return [nodes[i] for i in ps]

    steps: list[Kernel | Extern | View] = []
    for s in t["steps"]:
        if s[0] == "k":
            _, name, ns, ins, outs, red = s
            steps.append(Kernel(n(ns), n(ins), n(outs), None if red < 0 else nodes[red], name))
        else:
            steps.append((Extern if s[0] == "x" else View)(nodes[s[1]]))
    sched = Schedule(steps, n(t["roots"]), n(t["leaves"]), [n(f) for f in t["frees"]],
                     {id(nodes[i]): b for i, b in t["buffers"]}, t["n_buffers"])
    prep = None
    if t["native"] is not None:
        from symk.runtime.native import NativePrep

        prep = NativePrep.decode(t["native"], n)
    return n(t["roots"]), sched, prep


def lookup(key: str) -> dict[str, Any] | None:
    t = _memory.get(key)
    if t is not None:
        return t
    d = cache.cache_dir()
    if d is None:
        return None
    path = os.path.join(d, key + ".plan.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            t = json.loads(f.read())
        if not isinstance(t, dict) or t.get("format") != FORMAT:
            raise ValueError("not a plan of this format")
        recorded = t.pop("sha256", None)
        if recorded != _checksum(key, _encode(t)):
            raise ValueError("the plan does not match its recorded checksum")
    except (OSError, ValueError, RecursionError) as e:
        discard(key, f"unreadable ({e})")
        return None
    _memory[key] = t
    return t


def _encode(t: dict[str, Any]) -> bytes:
    return json.dumps(t, separators=(",", ":")).encode()


def _checksum(key: str, body: bytes) -> str:
    """sha256 of the key and the template's JSON: a changed value, a truncated file or a plan
    copied under another key's name all fail it.  ``json.loads`` keeps the order of fields and
    gives back the same text for everything ``_encode`` writes, so the check re-encodes what
    it read."""
    h = hashlib.sha256(key.encode())
    h.update(b"\0")
    h.update(body)
    return h.hexdigest()


def store(key: str, t: dict[str, Any]) -> None:
    _memory[key] = t
    d = cache.cache_dir()
    if d is None:
        return
    try:
        if not cache.ensure_dir(d):
            return
        body = _encode(t)
        # the checksum is appended as the last field, so the file stays one JSON object
        data = body[:-1] + b',"sha256":"' + _checksum(key, body).encode() + b'"}'
        cache.atomic_write(os.path.join(d, key + ".plan.json"), data)
    except OSError as e:  # the object cache has already warned about this directory
        log(1, f"plan cache: cannot write in {d}: {e}")


def discard(key: str, why: str) -> None:
    """Forget a broken entry (memory and disk), with a warning."""
    _memory.pop(key, None)
    d = cache.cache_dir()
    warnings.warn(f"symk: discarding plan cache entry {key[:12]} in {d}: {why}; compiling "
                  "the function again", RuntimeWarning, stacklevel=3)
    if d is not None:
        try:
            os.unlink(os.path.join(d, key + ".plan.json"))
        except OSError:
            pass


def clear_memory() -> None:
    _memory.clear()
