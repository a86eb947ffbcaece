"""Leaf ops: placeholders (fed at call time), variables (storage outside the graph) and
constants (value held in the node's attributes)."""

from __future__ import annotations

import numpy as np

from symk.graph.op import Op, register
from symk.graph.types import Type


@register
class Placeholder(Op):
    """A value fed by the caller; ``default`` (a ConstValue) is used when it is not fed."""

    name = "placeholder"
    is_leaf = True
    arity = 0
    attr_names = ("dtype", "shape", "uid", "default")
    nondifferentiable = True

    def infer(self, inputs, dtype, shape, uid, default=None):
        return Type(dtype, tuple(shape))


@register
class Variable(Op):
    """A value held in a ``Storage`` cell (numpy on CPU); ``uid`` orders variables."""

    name = "variable"
    is_leaf = True
    arity = 0
    attr_names = ("dtype", "shape", "uid", "storage")
    nondifferentiable = True

    def infer(self, inputs, dtype, shape, uid, storage):
        return Type(dtype, tuple(shape))


@register
class Constant(Op):
    name = "constant"
    is_leaf = True
    arity = 0
    attr_names = ("value",)
    nondifferentiable = True

    def infer(self, inputs, value):
        a = value.array
        return Type(a.dtype.name, tuple(a.shape))

    def ref(self, value):
        return value.array


def is_immediate(node) -> bool:
    """Whether ``node`` is a scalar constant, which generated code takes as an immediate: it is
    no kernel input (fusion does not count it, lowering writes its value into the code) and a
    kernel's name holds its value."""
    return node.op.name == "constant" and node.type.size() == 1


def const_array(node) -> np.ndarray | None:
    """The value of a constant node, else None."""
    return node.attrs["value"].array if node.op.name == "constant" else None
