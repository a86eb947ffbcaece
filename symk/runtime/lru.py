"""Bounded in-process caches, so that a long-lived process that keeps building and dropping
functions (a hyper-parameter search, a notebook) stays flat in memory.

``LRU`` is a small thread-safe least-recently-used map bounded by entry count and, optionally,
by total size.  ``ModuleTable`` holds loaded native modules: a bounded LRU of recently used
ones plus a weak map of every module still referenced elsewhere (by a live plan), so a module
in use is always found again and is never released while anything holds it; a module that is
neither recent nor referenced is released by reference counting (its MCJIT engine is disposed
when its last holder goes).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

#: loaded native modules kept after their last plan is dropped (one MCJIT engine each,
#: ~60-70 KB of RSS for a small function): a rebuilt model finds its modules again
MODULES_RECENT = 32
#: object code kept in memory (``symk.runtime.cache``): entries and total bytes
OBJECTS_MAX = 128
OBJECTS_MAX_BYTES = 32 << 20
#: plan templates kept in memory (``symk.runtime.plan_cache``); a small function's template
#: is a few KB of Python objects, a 1000-node graph's a few hundred KB
PLANS_MAX = 64


class LRU:
    """A dict-like map keeping at most ``maxsize`` entries and (when ``sizeof`` is given) at most
    ``maxbytes`` of their total size; the least recently read or written entries go first.  An
    entry bigger than ``maxbytes`` on its own is not kept.  Thread-safe."""

    def __init__(self, maxsize: int, maxbytes: int | None = None,
                 sizeof: Callable[[Any], int] | None = None) -> None:
        self.maxsize, self.maxbytes, self.sizeof = maxsize, maxbytes, sizeof
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            try:
                self._d.move_to_end(key)
            except KeyError:
                return default
            return self._d[key]

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            self._d.move_to_end(key)
            return self._d[key]

    def __setitem__(self, key: Hashable, value: Any) -> None:
        size = self.sizeof(value) if self.sizeof is not None else 0
        with self._lock:
            self._pop(key)
            if self.maxbytes is not None and size > self.maxbytes:
                return
            self._d[key] = value
            self._sizes[key] = size
            self.nbytes += size
            while len(self._d) > self.maxsize or (
                    self.maxbytes is not None and self.nbytes > self.maxbytes):
                self._pop(next(iter(self._d)))

    def _pop(self, key: Hashable) -> Any:
        v = self._d.pop(key, None)
        self.nbytes -= self._sizes.pop(key, 0)
        return v

    def pop(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._d:
                return default
            return self._pop(key)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._d))

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._sizes.clear()
            self.nbytes = 0


class ModuleTable:
    """Loaded native modules by object-cache key: the ``recent`` most recently used ones are
    held strongly (a rebuilt model finds its modules even after the old one was dropped); any
    other module is held weakly, i.e. only while a plan (or anything else) still uses it.
    Dict-like (``get``, ``[key] = mod``, ``pop``, ``clear``, ``len``, ``in``)."""

    def __init__(self, recent: int) -> None:
        self.recent = LRU(recent)
        self.live: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            mod = self.recent.get(key)
            if mod is None:
                mod = self.live.get(key)
                if mod is None:
                    return default
                self.recent[key] = mod  # used again: recent again
            return mod

    def __getitem__(self, key: str) -> Any:
        mod = self.get(key)
        if mod is None:
            raise KeyError(key)
        return mod

    def __setitem__(self, key: str, mod: Any) -> None:
        with self._lock:
            self.live[key] = mod
            self.recent[key] = mod

    def pop(self, key: str, default: Any = None) -> Any:
        with self._lock:
            a, b = self.recent.pop(key), self.live.pop(key, None)
            mod = a if a is not None else b
            return default if mod is None else mod

    def __contains__(self, key: object) -> bool:
        return key in self.recent or key in self.live

    def __len__(self) -> int:
        """The number of modules loaded and still reachable (recent or in use)."""
        return len(set(self.recent.keys()) | set(self.live.keys()))

    def clear(self) -> None:
        """Forget every module; modules still used by live plans stay loaded (their plans hold
        them) but are no longer found here."""
        with self._lock:
            self.recent.clear()
            self.live.clear()
