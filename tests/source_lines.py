"""``file:line`` of a marked line in a test file, for tests that check an error names the
user's line."""

from __future__ import annotations

import os


def marker_line(path: str, marker: str, skip: str) -> str:
    """``<basename of path>:<line>`` of the first line holding ``marker`` but not ``skip`` (the
    text of the helper's own call, which holds the marker too)."""
    with open(path) as f:
        for i, ln in enumerate(f, 1):
            if marker in ln and skip not in ln:
                return f"{os.path.basename(path)}:{i}"
    raise AssertionError(f"no line marked {marker!r} in {path}")
