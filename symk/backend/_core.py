"""Shared helpers of the backend modules: conversion to nodes, wrapping, and the ``api``
decorator that prefixes errors with the Keras function the user called."""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from symk.errors import SymkError, user_line
from symk.graph.node import Node
from symk.graph.tensor import Tensor, to_node

_depth = threading.local()


def api(fn):
    """Mark a K function: errors raised inside get a ``K.<name>:`` prefix and the user's
    ``file:line`` (outermost call only)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        d = getattr(_depth, "d", 0)
        _depth.d = d + 1
        try:
            return fn(*args, **kwargs)
        except SymkError as e:
            if d == 0:
                msg = str(e) if str(e).startswith("K.") else f"K.{name}: {e}"
                shapes = _arg_types(args, kwargs)
                if shapes and not any(k in msg for keys, _ in shapes for k in keys):
                    msg += "\n  (arguments: " + ", ".join(t for _, t in shapes) + ")"
                where = user_line()
                if where not in msg:
                    msg += f"\n  (at {where})"
                raise type(e)(msg) from None
            raise
        finally:
            _depth.d = d

    return wrapper


def _arg_types(args: tuple, kwargs: dict) -> list[tuple[tuple[str, str], str]]:
    """((shape text, type text), 'name dtype[shape]') of a K call's tensor arguments."""
    from symk.graph.types import shape_str

    out = []
    for a in list(args) + list(kwargs.values()):
        items = a if isinstance(a, (list, tuple)) else [a]
        for t in items:
            if isinstance(t, Tensor):
                out.append(((shape_str(t.shape), str(t.node.type)),
                            f"'{t.name}' {t.node.type}"))
    return out


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
