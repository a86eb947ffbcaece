"""``Storage``: the mutable cell holding a variable's value.  It is an attribute of the
variable's node (compared by identity), so a value lives exactly as long as some graph or
handle refers to its variable."""

from __future__ import annotations

import numpy as np


class Storage:
    __slots__ = ("value", "name")

    def __init__(self, value: np.ndarray, name: str) -> None:
        self.value = value
        self.name = name

    def __repr__(self) -> str:
        return f"<storage '{self.name}' {self.value.dtype}{list(self.value.shape)}>"
