"""The pass registry: graph passes ordered by position, selected by tags.

Optimization levels are tag queries (``SYMK_OPT=0`` runs only passes tagged ``required``,
``1`` adds ``O1``, ``2`` (default) adds ``O2``); ``SYMK_EXCLUDE=tag1:tag2`` removes every pass
carrying one of the tags (a pass's name is also one of its tags).  Fusion is the ``fusion`` tag.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from symk.errors import ArgumentError
from symk.graph.node import Node


@dataclass
class PassContext:
    target_lacks: frozenset[str] = frozenset()
    stats: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


PassFn = Callable[[list[Node], PassContext], list[Node]]


@dataclass(frozen=True)
class PassSpec:
    name: str
    position: float
    tags: frozenset[str]
    fn: PassFn


PASSES: list[PassSpec] = []
LEVEL_TAGS = {0: {"required"}, 1: {"required", "O1"}, 2: {"required", "O1", "O2"}}


def register_pass(name: str, position: float, tags: tuple[str, ...]):
    def deco(fn: PassFn) -> PassFn:
        PASSES.append(PassSpec(name, position, frozenset(tags) | {name}, fn))
        PASSES.sort(key=lambda p: p.position)
        return fn
    return deco


def opt_level() -> int:
    raw = os.environ.get("SYMK_OPT", "2") or "2"
    if raw not in ("0", "1", "2"):
        raise ArgumentError(f"SYMK_OPT must be 0, 1 or 2, got {raw!r}")
    return int(raw)


def excluded_tags() -> set[str]:
    raw = os.environ.get("SYMK_EXCLUDE", "")
    return {t for t in raw.split(":") if t}


def select(level: int | None = None, exclude: set[str] | None = None) -> list[PassSpec]:
    """Passes enabled at ``level`` without ``exclude``d tags, in order."""
    level = opt_level() if level is None else level
    exclude = excluded_tags() if exclude is None else exclude
    wanted = LEVEL_TAGS[level]
    return [p for p in PASSES if p.tags & wanted and not p.tags & exclude]


def fusion_enabled(level: int | None = None, exclude: set[str] | None = None) -> bool:
    level = opt_level() if level is None else level
    exclude = excluded_tags() if exclude is None else exclude
    return level >= 1 and "fusion" not in exclude
