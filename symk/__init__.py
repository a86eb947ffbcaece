"""symk: a symbolic graph compiler implementing the Keras backend API.

``from symk import backend as K`` builds graphs lazily; ``K.function`` compiles them.
Debugging helpers: ``symk.debugprint``, ``symk.pprint``, ``symk.to_networkx``, ``symk.to_dot``.
"""

from symk.compiler import compile  # noqa: E402,F401,A004  (K.function, or code with build=False)
from symk.errors import (  # noqa: F401
    ArgumentError,
    DeviceError,
    DTypeError,
    InputError,
    ShapeError,
    SymkError,
)
from symk.version import __version__  # noqa: F401


def __getattr__(name: str):
    if name in ("debugprint", "pprint", "to_networkx", "to_dot"):
        from symk.graph import printing

        return getattr(printing, name)
    if name == "backend":
        import importlib

        return importlib.import_module("symk.backend")
    raise AttributeError(f"module 'symk' has no attribute {name!r}")
