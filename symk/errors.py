"""symk's exception hierarchy and the helper that finds the user's source line.

Every error symk raises for bad input is a ``SymkError`` (also a subclass of the built-in
exception a Python user would expect: ``ValueError`` for shapes, ``TypeError`` for dtypes).
Messages name the API function, the offending tensor and the user's line.
"""

from __future__ import annotations

import os
import sys

_SYMK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SKIP_PARTS = (os.sep + "keras" + os.sep, os.sep + "contextlib.py")


def user_line(skip_libraries: bool = True) -> str:
    """Return ``file:line`` of the innermost frame outside symk (and outside keras)."""
    f = sys._getframe(1)
    fallback = None
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_SYMK_DIR):
            if fallback is None:
                fallback = f
            if not skip_libraries or not any(p in fn for p in _SKIP_PARTS):
                return f"{fn}:{f.f_lineno}"
        f = f.f_back
    if fallback is not None:
        return f"{fallback.f_code.co_filename}:{fallback.f_lineno}"
    return "<unknown>"


class SymkError(Exception):
    """Base class of all symk errors."""


class ShapeError(SymkError, ValueError):
    """Incompatible or invalid shapes (at graph-building time or at run time)."""


class DTypeError(SymkError, TypeError):
    """Unknown dtype or a dtype an operation does not accept."""


class ArgumentError(SymkError, ValueError):
    """An invalid argument value (bad axis, unknown option, ...)."""


class InputError(SymkError, ValueError):
    """A value fed to a compiled function does not fit its placeholder."""


class DeviceError(SymkError, RuntimeError):
    """A requested device is not available."""
