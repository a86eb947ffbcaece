"""Shared helpers of the backend modules: the ``api`` decorator that prefixes errors with the
Keras function the user called, ``keras_shaped`` and the argument validators.  A K function
turns its arguments into graph nodes with ``symk.graph.tensor.to_node`` and returns
``Tensor(node)``."""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from symk.errors import ArgumentError, ShapeError, SymkError, user_line
from symk.graph import build as gb
from symk.graph.node import Node, apply, scope_api
from symk.graph.tensor import Tensor

_depth = threading.local()


def api(fn):
    """Mark a K function: errors raised inside get a ``K.<name>:`` prefix and the user's
    ``file:line`` (outermost call only)."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        d = getattr(_depth, "d", 0)
        _depth.d = d + 1
        token = scope_api.set(name) if d == 0 else None
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
            if token is not None:
                scope_api.reset(token)

    return wrapper


def keras_shaped(always: bool = False):
    """Mark a K function whose result gets a ``_keras_shape`` (its static shape), as Keras's
    Theano backend sets on the results of these functions; Keras and its tests read it back.
    Set when a tensor argument (also inside a list argument) has a ``_keras_shape``, or
    ``always``.  A result that is one of the arguments is left alone."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            if not isinstance(out, Tensor):
                return out
            items = [a for arg in (*args, *kwargs.values())
                     for a in (arg if isinstance(arg, (list, tuple)) else (arg,))]
            if any(out is a for a in items):
                return out
            if always or any(isinstance(a, Tensor) and hasattr(a, "_keras_shape")
                             for a in items):
                out._keras_shape = tuple(out.shape)
            return out

        return wrapper

    return decorate


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


def is_sym(x: Any) -> bool:
    return isinstance(x, (Tensor, Node))


# ---------------------------------------------------------------- argument validators
# They raise symk errors naming the argument; ``api`` adds the K function and the user's line.


def as_count(value: Any, what: str, minimum: int = 0) -> int:
    """``value`` as a Python int >= ``minimum``: ints and numpy ints (also 0-d arrays) pass;
    bools, floats (even 2.0), strings and None are refused."""
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        raise ArgumentError(f"{what} must be an int, got the bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{what} must be an int, got {_describe(value)}") from None
    if v < minimum:
        raise ArgumentError(f"{what} must be >= {minimum}, got {v}")
    return v


def as_dims(shape: Any, what: str = "shape", *, minimum: int = 0, unknown: bool = False,
            wildcards: int | None = 0, tensors: bool = False) -> tuple:
    """A shape (an int or a sequence) as a tuple of ints >= ``minimum``.  ``unknown`` lets
    entries be None, ``wildcards`` is how many entries may be -1 (None: any number; reshape
    takes one), ``tensors`` keeps Tensor entries."""
    lowest = -1 if wildcards != 0 else minimum
    if not _is_sequence(shape):
        return (as_count(shape, what, lowest),)
    items = shape.tolist() if isinstance(shape, np.ndarray) else list(shape)
    text = repr(tuple(items))
    dims = tuple(d if (d is None and unknown) or (tensors and isinstance(d, Tensor))
                 else as_count(d, f"{what} {text}: entry {i}", lowest)
                 for i, d in enumerate(items))
    if wildcards and sum(1 for d in dims if isinstance(d, int) and d == -1) > wildcards:
        raise ShapeError(f"{what} {text} can have at most {wildcards} entry of -1")
    return dims


def as_counts(value: Any, count: int, what: str, minimum: int = 1) -> tuple[int, ...]:
    """An int (used ``count`` times) or a sequence of ``count`` ints, each >= ``minimum``
    (strides, pool and kernel sizes, dilation rates)."""
    dims = as_dims(value, what, minimum=minimum)
    if not _is_sequence(value):
        dims *= count
    if len(dims) != count:
        raise ArgumentError(f"{what} must be an int or {count} ints, got {value!r}")
    return dims


def shape_spec(shape: Any, what: str = "shape", *, wildcards: int = 0) -> tuple:
    """(static shape, int32 shape vector or None) of a shape given as ints and scalar tensors
    or as a 1-D int tensor; the vector is None when every dim is a Python int."""
    if isinstance(shape, Tensor):
        if shape.ndim != 1 or shape.shape[0] is None:
            raise ArgumentError(f"a symbolic {what} must be a 1-D tensor of known length, got "
                                f"{shape.node.type}")
        return (None,) * shape.shape[0], gb.cast(shape.node, "int32")
    dims = as_dims(shape, what, wildcards=wildcards, tensors=True)
    if not any(isinstance(d, Tensor) for d in dims):
        return dims, None
    static = tuple(None if isinstance(d, Tensor) else d for d in dims)
    parts = [gb.reshape(gb.cast(d.node, "int32"), (1,)) if isinstance(d, Tensor)
             else gb.const(np.asarray([d], np.int32)) for d in dims]
    return static, apply("concatenate", parts, axis=0)


def as_real(value: Any, what: str) -> float:
    """A real-number parameter (Python or numpy number, or a 0-d array) as a float."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return float(value)
    raise ArgumentError(f"{what} must be a real number, got {_describe(value)}")


def as_list(value: Any) -> list:
    """An axis argument (one axis or a sequence of them) as a list; entries are checked by
    ``normalize_axis``."""
    return list(value) if _is_sequence(value) else [value]


def _is_sequence(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 1
    return isinstance(x, Iterable) and not isinstance(x, (str, bytes, Tensor))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
