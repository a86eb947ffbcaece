"""Running compiled graphs: ``CompiledFunction`` (input checks, execution, updates) and the
executors behind each device."""

from symk.runtime.function import CompiledFunction

__all__ = ["CompiledFunction"]
