"""Shared helpers of the backend modules: conversion to nodes, wrapping, and the ``api``
decorator that prefixes errors with the Keras function the user called."""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from symk.errors import SymkError
from symk.graph.node import Node
from symk.graph.tensor import Tensor, to_node

_depth = threading.local()


def api(fn):
    """Mark a K function: errors raised inside get a ``K.<name>:`` prefix (outermost only)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        d = getattr(_depth, "d", 0)
        _depth.d = d + 1
        try:
            return fn(*args, **kwargs)
        except SymkError as e:
            if d == 0 and not str(e).startswith("K."):
                raise type(e)(f"K.{name}: {e}") from None
            raise
        finally:
            _depth.d = d

    return wrapper


def n(x: Any, like: Any = None) -> Node:
    """Node of a K argument (tensor, number, list or array)."""
    return to_node(x, like)


def w(node: Node, name: str | None = None) -> Tensor:
    return Tensor(node, name)


def is_sym(x: Any) -> bool:
    return isinstance(x, (Tensor, Node))


def as_int_tuple(shape: Any) -> tuple:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(shape)
