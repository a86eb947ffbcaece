"""Keras backend names that only one reference backend has (TensorFlow's session and variable
initialization helpers, Theano's ``pattern_broadcast``) or that are thin aliases
(``get_variable_shape``, ``is_symbolic``).  Keras itself imports none of them for a third-party
backend; they exist so that code written against either backend finds them in symk."""

from __future__ import annotations

from typing import Any

from symk.backend._core import api
from symk.errors import ArgumentError, ShapeError, SymkError
from symk.graph import build as gb
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import shape_str

_manual_init = False


def get_variable_shape(x: Any) -> tuple:
    """The static shape of a variable (an alias of ``int_shape``)."""
    from symk.backend._variables import int_shape

    return int_shape(x)


def is_symbolic(x: Any) -> bool:
    """True for symk tensors (every symk tensor, variables included, is symbolic: values
    come from ``K.function`` or ``K.eval``)."""
    return isinstance(x, Tensor)


def manual_variable_initialization(value: bool) -> None:
    """Accepted for TensorFlow compatibility; symk variables hold their value from creation,
    so there is nothing to initialize either way."""
    global _manual_init
    _manual_init = bool(value)


def v1_variable_initialization() -> None:
    """TensorFlow 1 initializes pending variables here; symk variables need no initialization."""


def get_session(*args: Any, **kwargs: Any) -> Any:
    raise SymkError("K.get_session: symk has no TensorFlow session (compile graphs with "
                    "K.function; variables are read with K.get_value)")


def set_session(session: Any) -> None:
    raise SymkError("K.set_session: symk has no TensorFlow session (the device is chosen "
                    "with symk.config.set_device or SYMK_DEVICE)")


@api
def pattern_broadcast(x, broadcastable):
    """Theano's patternbroadcast: mark the dims flagged True as broadcastable (size 1).  A dim
    known only at run time becomes a static 1, checked when the function runs; a flag on a dim
    of another static size is an error.  False flags change nothing."""
    node = to_node(x)
    flags = list(broadcastable)
    if len(flags) != node.ndim:
        raise ArgumentError(f"broadcastable has {len(flags)} flags for a tensor of rank "
                            f"{node.ndim}")
    for axis, (flag, d) in enumerate(zip(flags, node.shape)):
        if not flag or d == 1:
            continue
        if d is not None:
            raise ShapeError(f"dimension {axis} of {shape_str(node.shape)} has size {d} and "
                             "cannot be broadcastable (size 1)")
        # squeeze checks the size at run time; expand_dims gives the static 1
        node = gb.expand_dims(gb.squeeze(node, axis), axis)
    return Tensor(node)
