"""The ``collections`` and numpy names that Keras 2.3.1 still uses but Python 3.10+ / numpy 2
removed: ``collections.Iterable``, ``Mapping``, ``Sequence``, ... moved to ``collections.abc``,
and numpy 2 dropped ``np.Inf``, ``np.string_``, ``np.unicode_``, ``np.float_``, ...

:func:`apply` only adds names that are missing (it never replaces an existing attribute), so it
is idempotent and cannot change the behaviour of code that does not use the old names.
"""

from __future__ import annotations

import collections
import collections.abc

import numpy as np

ABC_NAMES = (
    "Awaitable", "Callable", "Container", "Coroutine", "Hashable", "ItemsView", "Iterable",
    "Iterator", "KeysView", "Mapping", "MappingView", "MutableMapping", "MutableSequence",
    "MutableSet", "Sequence", "Set", "Sized", "ValuesView",
)

# numpy 1.x aliases removed in numpy 2 that Keras 2.3.1 (or its helpers) touch
NUMPY_ALIASES = {
    "Inf": np.inf,
    "NINF": -np.inf,
    "PINF": np.inf,
    "NaN": np.nan,
    "string_": np.bytes_,
    "unicode_": np.str_,
    "float_": np.float64,
    "complex_": np.complex128,
}


def apply() -> None:
    """Add the missing ``collections`` and numpy aliases (idempotent)."""
    for name in ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    for name, value in NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def applied() -> bool:
    """Whether every alias is present."""
    return (all(hasattr(collections, n) for n in ABC_NAMES)
            and all(n in np.__dict__ for n in NUMPY_ALIASES))
