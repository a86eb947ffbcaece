"""The mutable handles that ``K`` returns: ``Tensor`` wraps a Node; ``Variable`` adds storage.

Handles compare and hash by identity (Keras relies on it) and accept arbitrary attributes
(``_keras_shape``, ``_keras_history``, ...).  Operators build graph nodes; ``==``/``!=`` stay
identity comparisons.

Two things a Tensor does are not the graph layer's: ``Tensor.eval`` compiles and runs the graph
(``K.eval``), and a list holding tensors used as an operand is stacked by ``K.stack`` (with its
error reporting).  The graph layer imports nothing above it, so ``symk.backend`` hands both over
when it is imported (``install_backend``); every Tensor a program holds comes from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from symk import config
from symk.errors import ArgumentError, ShapeError, SymkError
from symk.graph import build as gb
from symk.graph.node import Node, apply, fresh_uid, node_name, set_name
from symk.graph.storage import Storage
from symk.graph.types import shape_str

_auto = itertools.count(1)

#: ``"eval"``: (tensor) -> its value; ``"stack"``: (list of operands) -> their stacked Tensor.
#: Set by ``install_backend``.
_backend: dict[str, Callable[..., Any]] = {}


def install_backend(*, evaluate: Callable[[Tensor], np.ndarray],
                    stack: Callable[[list[Any]], Tensor]) -> None:
    """Give tensors the backend's ``eval`` (``Tensor.eval``) and ``stack`` (a list of tensors
    used as an operand).  ``symk.backend`` calls it when it is imported."""
    _backend["eval"] = evaluate
    _backend["stack"] = stack


def _from_backend(name: str) -> Callable[..., Any]:
    fn = _backend.get(name)
    if fn is None:
        raise SymkError(f"K.{name} of a symbolic tensor needs the backend: import symk.backend")
    return fn


class Tensor:
    __array_ufunc__ = None  # numpy defers to our reflected operators
    __array_priority__ = 1000

    def __init__(self, node: Node, name: str | None = None) -> None:
        if not isinstance(node, Node):
            raise SymkError(f"Tensor needs a graph Node, got {type(node).__name__}")
        self.node = node
        self.name = name or node_name(node) or f"{node.op.name}_{next(_auto)}"
        set_name(node, name)

    # ------------------------------------------------------------ static info
    @property
    def shape(self) -> tuple[int | None, ...]:
        return self.node.shape

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return self.node.ndim

    def get_shape(self) -> tuple[int | None, ...]:
        return self.node.shape

    def __repr__(self) -> str:
        return f"<symk.Tensor '{self.name}' shape={self.shape} dtype={self.dtype}>"

    def eval(self) -> np.ndarray:
        return _from_backend("eval")(self)

    def __bool__(self) -> bool:
        raise SymkError(f"the truth value of symbolic tensor '{self.name}' is unknown until it "
                        "is computed; use K.switch / K.any / K.all instead of Python 'if'")

    def __iter__(self):
        raise SymkError(f"symbolic tensor '{self.name}' is not iterable; index it or use "
                        "K.stack/K.gather")

    def __len__(self) -> int:
        d = self.shape[0] if self.ndim else None
        if d is None:
            raise SymkError(f"len() of tensor '{self.name}' with unknown first dimension")
        return d

    __hash__ = object.__hash__

    # ------------------------------------------------------------ operators
    def __add__(self, o): return _wrap(gb.add(self.node, _n(o, self)))
    def __radd__(self, o): return _wrap(gb.add(_n(o, self), self.node))
    def __sub__(self, o): return _wrap(gb.sub(self.node, _n(o, self)))
    def __rsub__(self, o): return _wrap(gb.sub(_n(o, self), self.node))
    def __mul__(self, o): return _wrap(gb.mul(self.node, _n(o, self)))
    def __rmul__(self, o): return _wrap(gb.mul(_n(o, self), self.node))
    def __truediv__(self, o): return _wrap(gb.div(self.node, _n(o, self)))
    def __rtruediv__(self, o): return _wrap(gb.div(_n(o, self), self.node))
    def __floordiv__(self, o): return _wrap(gb.floordiv(self.node, _n(o, self)))
    def __rfloordiv__(self, o): return _wrap(gb.floordiv(_n(o, self), self.node))
    def __mod__(self, o): return _wrap(gb.mod(self.node, _n(o, self)))
    def __rmod__(self, o): return _wrap(gb.mod(_n(o, self), self.node))
    def __pow__(self, o): return _wrap(gb.pow(self.node, _n(o, self)))
    def __rpow__(self, o): return _wrap(gb.pow(_n(o, self), self.node))
    def __neg__(self): return _wrap(gb.neg(self.node))
    def __pos__(self): return self
    def __abs__(self): return _wrap(gb.abs(self.node))
    def __lt__(self, o): return _wrap(gb.lt(self.node, _n(o, self)))
    def __le__(self, o): return _wrap(gb.le(self.node, _n(o, self)))
    def __gt__(self, o): return _wrap(gb.gt(self.node, _n(o, self)))
    def __ge__(self, o): return _wrap(gb.ge(self.node, _n(o, self)))
    def __and__(self, o): return _wrap(gb.logical_and(self.node, _n(o, self)))
    def __rand__(self, o): return _wrap(gb.logical_and(_n(o, self), self.node))
    def __or__(self, o): return _wrap(gb.logical_or(self.node, _n(o, self)))
    def __ror__(self, o): return _wrap(gb.logical_or(_n(o, self), self.node))
    def __invert__(self): return _wrap(gb.logical_not(self.node))

    def __matmul__(self, o):
        return _wrap(matmul(self.node, _n(o, self)))

    def __rmatmul__(self, o):
        return _wrap(matmul(_n(o, self), self.node))

    def __getitem__(self, key: Any) -> Tensor:
        return _wrap(getitem(self.node, key))


class Variable(Tensor):
    """A tensor with storage: a numpy array replaced on update (or, for a ``gemm`` update that
    nothing else reads, accumulated into in place; ``get_value`` always returns a copy)."""

    def __init__(self, value: np.ndarray, name: str, constraint: Any = None) -> None:
        self.uid = fresh_uid()
        self.storage = Storage(value, name)
        node = apply("variable", [], dtype=value.dtype.name, shape=value.shape, uid=self.uid,
                     storage=self.storage)
        super().__init__(node, name)
        self.constraint = constraint
        self._keras_shape = tuple(value.shape)
        self._uses_learning_phase = False

    @property
    def value(self) -> np.ndarray:
        return self.storage.value

    @value.setter
    def value(self, v: np.ndarray) -> None:
        self.storage.value = v

    def set(self, value: Any) -> None:
        """Store a copy of ``value`` (same shape; a cast only when it keeps every value)."""
        current = self.value
        a = value if isinstance(value, np.ndarray) else gb.as_array(value, what="the value")
        if a.shape != current.shape:
            raise ShapeError(f"cannot set variable '{self.name}' of shape "
                             f"{shape_str(current.shape)} to a value of shape "
                             f"{shape_str(a.shape)}")
        if a.dtype == current.dtype:
            self.value = np.array(a, copy=True)
        else:
            self.value = gb.as_array(a, current.dtype, f"the value for '{self.name}'")

    def __repr__(self) -> str:
        return f"<symk.Variable '{self.name}' shape={self.shape} dtype={self.dtype}>"


def storage_of(node: Node) -> Storage:
    return node.attrs["storage"]


def _wrap(node: Node) -> Tensor:
    return Tensor(node)


def to_node(x: Any, like: Tensor | Node | None = None) -> Node:
    """A Node for a Tensor, Node, Python scalar, list or numpy array."""
    if isinstance(x, Tensor):
        return x.node
    if isinstance(x, Node):
        return x
    ln = like.node if isinstance(like, Tensor) else like
    if isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)):
        return gb.lift(x, ln)
    if isinstance(x, (list, tuple)) and any(isinstance(e, Tensor) for e in x):
        return _from_backend("stack")(list(x)).node
    a = gb.as_array(x, what=f"the {type(x).__name__} operand")
    if a.dtype == np.float64 and not isinstance(x, np.ndarray):
        a = a.astype(config.floatx())
    return gb.const(a)


_n = to_node


def matmul(a: Node, b: Node) -> Node:
    """numpy matmul semantics (batch dims must have the same rank)."""
    letters = "abcdefghijklmnopqrstuvw"
    if a.ndim == 1 and b.ndim == 1:
        return gb.einsum("i,i->", [a, b])
    if a.ndim < 1 or b.ndim < 1:
        raise SymkError("matmul needs tensors of rank >= 1")
    if b.ndim == 1:
        ba = letters[: a.ndim - 2]
        return gb.einsum(f"{ba}ij,j->{ba}i", [a, b])
    if a.ndim == 1:
        bb = letters[: b.ndim - 2]
        return gb.einsum(f"j,{bb}jk->{bb}k", [a, b])
    if a.ndim != b.ndim:
        raise SymkError(f"matmul of ranks {a.ndim} and {b.ndim}: batch ranks must match")
    ba = letters[: a.ndim - 2]
    return gb.einsum(f"{ba}xy,{ba}yz->{ba}xz", [a, b])


def getitem(x: Node, key: Any) -> Node:
    """x[key] with ints, slices, None, Ellipsis; an int tensor/array key gathers rows."""
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) == 1 and isinstance(key[0], (Tensor, Node, list, np.ndarray)):
        return apply("gather", [x, to_node(key[0])])
    n_axes = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ArgumentError("an index can only have a single ellipsis ('...')")
    spec: list[tuple] = []
    for k in key:
        if k is Ellipsis:
            spec += [("s", None, None, None)] * (x.ndim - n_axes)
        elif k is None:
            spec.append(("n",))
        elif isinstance(k, slice):
            parts = []
            for v in (k.start, k.stop, k.step):
                if v is not None and not isinstance(v, (int, np.integer)):
                    raise ArgumentError(f"slice bounds must be Python ints, got {v!r}")
                parts.append(None if v is None else int(v))
            spec.append(("s", *parts))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            spec.append(("i", int(k)))
        else:
            raise ArgumentError(f"unsupported index {k!r} of type {type(k).__name__}")
    if n_axes > x.ndim:
        raise ArgumentError(f"too many indices ({n_axes}) for a tensor of rank {x.ndim}")
    return apply("getitem", [x], spec=tuple(spec))
