"""Debug logging controlled by ``SYMK_DEBUG`` (1: compile events, higher: more detail)."""

from __future__ import annotations

import sys

from symk.config import debug_level


def log(level: int, msg: str) -> None:
    if debug_level() >= level:
        print(f"[symk] {msg}", file=sys.stderr, flush=True)
