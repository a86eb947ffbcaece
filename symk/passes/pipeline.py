"""The optimization pipeline: run the selected graph passes, then fuse and plan memory.

``optimize(roots)`` returns the rewritten roots and the Schedule computing them.  Each pass is
timed; ``SYMK_DEBUG=3`` prints the graph after each pass and the final schedule;
``SYMK_DUMP_DIR`` writes one file per pass, the schedule and a DOT file per function, in the
function's own folder (see ``dump_folder``).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from symk.debug import log
from symk.graph.node import Node
from symk.passes import blas, canonicalize, collectives, specialize, stabilize
from symk.passes.fusion import fuse
from symk.passes.memory import plan_memory
from symk.passes.registry import PassContext, fusion_enabled, register_pass, select
from symk.passes.rewrite import RuleSet, rewrite
from symk.passes.schedule import Schedule


def _ruleset(*sets: RuleSet) -> RuleSet:
    out = RuleSet()
    for s in sets:
        for r in s.rules:
            out.add(r)
    return out


_CANON = _ruleset(canonicalize.rules, canonicalize.fold_rules)
_STAB = _ruleset(stabilize.rules, canonicalize.rules, canonicalize.fold_rules)
_SPEC = _ruleset(specialize.rules, canonicalize.rules, canonicalize.fold_rules)


@register_pass("canonicalize", 10, ("O1", "canonicalize"))
def _canonicalize(roots: list[Node], ctx: PassContext) -> list[Node]:
    return rewrite(roots, _CANON, ctx.stats, base=_CANON)


@register_pass("stabilize", 20, ("O1", "stabilize"))
def _stabilize(roots: list[Node], ctx: PassContext) -> list[Node]:
    return rewrite(roots, _STAB, ctx.stats, base=_CANON)


@register_pass("specialize", 30, ("O2", "specialize"))
def _specialize(roots: list[Node], ctx: PassContext) -> list[Node]:
    return rewrite(roots, _SPEC, ctx.stats, base=_CANON)


@register_pass("blas", 35, ("O2", "blas"))
def _blas(roots: list[Node], ctx: PassContext) -> list[Node]:
    return blas.fuse_gemm(roots)


@register_pass("collectives", 45, ("required", "collectives"))
def _collectives(roots: list[Node], ctx: PassContext) -> list[Node]:
    return collectives.group_allreduces(roots)


@dataclass
class Optimized:
    roots: list[Node]
    schedule: Schedule
    ctx: PassContext


def optimize(roots: Sequence[Node], name: str = "function", level: int | None = None,
             exclude: set[str] | None = None) -> Optimized:
    ctx = PassContext()
    dumper = _Dumper(name, roots)
    current = list(roots)
    dumper.graph("00_input", current)
    for k, p in enumerate(select(level, exclude), 1):
        t0 = time.perf_counter()
        current = p.fn(current, ctx)
        ctx.timings[p.name] = time.perf_counter() - t0
        dumper.graph(f"{k:02d}_{p.name}", current)
    t0 = time.perf_counter()
    sched = plan_memory(fuse(current, enabled=fusion_enabled(level, exclude)))
    ctx.timings["fusion"] = time.perf_counter() - t0
    dumper.schedule(sched, current)
    log(2, f"passes for '{name}': " + ", ".join(f"{k} {v * 1e3:.2f} ms"
                                               for k, v in ctx.timings.items()))
    return Optimized(current, sched, ctx)


#: label -> the dump folder of the last function of that label optimized on this thread (the
#: native code generation that follows ``optimize`` writes its ``.kir``/``module.ll`` there)
_folders = threading.local()


def dump_folder(label: str, roots: Sequence[Node] | None = None, content: str = ""
                ) -> str | None:
    """The folder under ``SYMK_DUMP_DIR`` of one compiled function, created; None when dumps
    are off.  It is ``<label>-<8 hex digits>``: a hash of the graph's structure (names of its
    placeholders and variables included, so two functions of the same label, e.g. two unnamed
    ones, get two folders, and a re-run of a script finds the same folder again).

    ``optimize`` passes ``roots`` (the graph before the passes); the code generator that runs
    after it (``symk.runtime.native._debug_dump``) passes only the label and gets the same folder.
    Without a recorded folder, ``content`` (e.g. the LLVM IR) is hashed.

    ``K.eval``'s one-off functions (labels starting ``eval:``; Keras makes dozens) are dumped
    only with ``SYMK_DEBUG>=3``, the level that prints every compilation's passes anyway."""
    from symk.config import debug_level, dump_dir

    root = dump_dir()
    if not root or (label.startswith("eval:") and debug_level() < 3):
        return None
    known: dict[str, str] = _folders.__dict__.setdefault("by_label", {})
    if roots is None and label in known:
        return known[label]
    if roots is not None:
        from symk.graph.node import node_name
        from symk.graph.serialize import Unencodable, structure_key

        try:
            digest = structure_key(roots, node_name)[0]
        except Unencodable:  # an attribute without an encoding: hash the printed graph
            from symk.graph.printing import debugprint

            digest = hashlib.sha256(debugprint(list(roots)).encode()).hexdigest()
    else:
        digest = hashlib.sha256(content.encode()).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80] or "function"
    d = os.path.join(root, f"{safe}-{digest[:8]}")
    os.makedirs(d, exist_ok=True)
    if roots is not None:
        known[label] = d
    return d


class _Dumper:
    def __init__(self, name: str, roots: Sequence[Node]) -> None:
        from symk.config import debug_level

        self.name = name
        self.level = debug_level()
        self.dir = dump_folder(name, roots)

    def graph(self, tag: str, roots: list[Node]) -> None:
        if self.level < 3 and self.dir is None:
            return
        from symk.graph.printing import debugprint

        text = debugprint(roots)
        if self.level >= 3:
            log(3, f"--- '{self.name}' after {tag} ---\n{text}")
        if self.dir:
            with open(os.path.join(self.dir, f"{tag}.txt"), "w") as f:
                f.write(text + "\n")

    def schedule(self, s: Schedule, roots: list[Node]) -> None:
        if self.level < 3 and self.dir is None:
            return
        text = s.describe()
        if self.level >= 3:
            log(3, f"--- '{self.name}' schedule ---\n{text}")
        if self.dir:
            with open(os.path.join(self.dir, "schedule.txt"), "w") as f:
                f.write(text + "\n")
            from symk.graph.printing import to_dot

            to_dot(roots, os.path.join(self.dir, "graph.dot"))
