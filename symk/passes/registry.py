"""The pass registry: graph passes ordered by position, selected by tags.

Optimization levels are tag queries (``SYMK_OPT=0`` runs only passes tagged ``required``,
``1`` adds ``O1``, ``2`` (default) adds ``O2``); ``SYMK_EXCLUDE=tag1:tag2`` removes every pass
carrying one of the tags (a pass's name is also one of its tags).  Fusion is the ``fusion`` tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from symk import config
from symk.graph.node import Node


@dataclass
class PassContext:
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


def register_pass(name: str, position: float,
                  tags: tuple[str, ...]) -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        PASSES.append(PassSpec(name, position, frozenset(tags) | {name}, fn))
        PASSES.sort(key=lambda p: p.position)
        return fn
    return deco


#: tags that select something other than a pass (``fusion``: the fusion of kernels)
EXTRA_TAGS = frozenset({"fusion"})


def opt_level() -> int:
    """``SYMK_OPT`` (via ``symk.config``)."""
    return config.opt_level()


def known_tags() -> frozenset[str]:
    """Every tag ``SYMK_EXCLUDE`` may name: the registered passes' tags (names included) and
    ``EXTRA_TAGS``."""
    import symk.passes.pipeline  # noqa: F401  (registers the built-in passes)

    return frozenset().union(EXTRA_TAGS, *(p.tags for p in PASSES))


def excluded_tags() -> set[str]:
    """``SYMK_EXCLUDE`` (via ``symk.config``); an unknown tag is an ArgumentError."""
    return set(config.excluded_tags(known_tags()))


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
