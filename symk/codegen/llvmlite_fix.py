"""Work around llvmlite's pass managers never being freed.

In llvmlite 0.45-0.50 ``ModulePassManager`` and ``FunctionPassManager`` derive from
``(ffi.ObjectRef, NewPassManager)``: ``ObjectRef._dispose`` (a no-op) comes first in the MRO,
so ``NewPassManager._dispose`` (which deletes the C++ pass manager) never runs and every
``pb.getModulePassManager()`` leaks its whole O3 pipeline, including the state its passes grew
while running (measured: ~120 KB per compiled module of a small function, i.e. ~12 MB per 100
compiles).  ``apply()`` (called on import) restores the intended ``_dispose`` when, and only
when, the class still has the no-op one, so a fixed llvmlite is left alone.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False


def apply() -> bool:
    """Make pass managers free their C++ object when collected; True if something was patched."""
    global _done
    with _lock:
        if _done:
            return False
        _done = True
        try:
            from llvmlite.binding import ffi
            from llvmlite.binding import newpassmanagers as npm
        except ImportError:  # pragma: no cover - a llvmlite without the new pass managers
            return False
        base = getattr(npm, "NewPassManager", None)
        fixed = getattr(base, "_dispose", None)
        if fixed is None:  # pragma: no cover
            return False
        patched = False
        for name in ("ModulePassManager", "FunctionPassManager"):
            cls = getattr(npm, name, None)
            if cls is not None and cls._dispose is ffi.ObjectRef._dispose:
                cls._dispose = fixed
                patched = True
        return patched


apply()
