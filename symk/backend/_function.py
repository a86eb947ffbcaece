"""Compiling and running graphs from K: ``function``, ``eval``, updates and gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from symk.backend._core import api
from symk.errors import ArgumentError, SymkError
from symk.graph import build as gb
from symk.graph.grad import gradients as _gradients
from symk.graph.node import Node, substitute
from symk.graph.tensor import Tensor, Variable, to_node
from symk.passes import pipeline, stabilize  # noqa: F401  (pipeline registers the passes)
from symk.passes.registry import select
from symk.passes.rewrite import rewrite
from symk.runtime.function import CompiledFunction


class Update(tuple):
    """``(variable, new_value)``: what ``K.update*`` returns (a plain tuple works as well)."""

    def __new__(cls, variable: Variable, value: Any) -> Update:
        return super().__new__(cls, (variable, value))


def _check_var(x: Any, fn: str) -> Variable:
    if not isinstance(x, Variable):
        raise ArgumentError(f"{fn} needs a symk variable to update, got {type(x).__name__}")
    return x


@api
def update(x, new_x):
    _check_var(x, "update")
    return Update(x, Tensor(gb.cast(to_node(new_x, x), x.dtype)))


@api
def update_add(x, increment):
    _check_var(x, "update_add")
    return Update(x, Tensor(gb.cast(gb.add(x.node, to_node(increment, x)), x.dtype)))


@api
def update_sub(x, decrement):
    _check_var(x, "update_sub")
    return Update(x, Tensor(gb.cast(gb.sub(x.node, to_node(decrement, x)), x.dtype)))


@api
def moving_average_update(x, value, momentum):
    """x <- x - (x - value) * (1 - momentum)."""
    _check_var(x, "moving_average_update")
    delta = gb.mul(gb.sub(x.node, gb.cast(to_node(value, x), x.dtype)), 1.0 - momentum)
    return Update(x, Tensor(gb.cast(gb.sub(x.node, delta), x.dtype)))


def _normalize_updates(updates: Any) -> list[tuple[Variable, Any]]:
    out: list[tuple[Variable, Any]] = []
    for u in updates or []:
        if isinstance(u, (tuple, list)) and len(u) == 2 and isinstance(u[0], Variable):
            var, val = u
            node = gb.cast(to_node(val, var), var.dtype)
            if node.ndim != var.ndim or any(a is not None and a != b
                                            for a, b in zip(node.shape, var.shape)):
                raise SymkError(f"update of variable '{var.name}' {var.shape} with a value of "
                                f"shape {node.shape}")
            out.append((var, node))
        elif isinstance(u, (list, tuple)) and all(isinstance(e, (list, tuple)) for e in u):
            out.extend(_normalize_updates(u))
        else:
            raise ArgumentError(f"an update must be a (variable, new_value) pair or the result "
                                f"of K.update*, got {u!r}")
    return out


_FUNCTION_KWARGS = ("device",)


@api
def function(inputs, outputs, updates=None, name=None, **kwargs):
    bad = set(kwargs) - set(_FUNCTION_KWARGS)
    if bad:
        raise ArgumentError(f"invalid argument(s) {sorted(bad)} passed to K.function; "
                            f"accepted: inputs, outputs, updates, name, "
                            f"{', '.join(_FUNCTION_KWARGS)}")
    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    if not isinstance(inputs, (list, tuple)):
        raise ArgumentError("K.function inputs must be a list of tensors")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise ArgumentError(f"K.function input {i} is {type(x).__name__}, not a symk tensor")
    ups = _normalize_updates(updates)
    new_value = {id(var.node): val for var, val in ups}  # the last update of a variable wins
    out_nodes = [_after_updates(to_node(o), new_value) if getattr(o, "_is_metric", False)
                 else to_node(o) for o in outs]
    fn = CompiledFunction(
        [getattr(x, "sparse_input", None) or x.node for x in inputs], out_nodes, ups,
        name=name, input_names=[x.name for x in inputs], device=kwargs.get("device"))
    return Function(fn, single)


def _after_updates(node: Node, new_value: dict[int, Node]) -> Node:
    """``node`` as read after the call's updates: every updated variable is replaced by its new
    value.  Keras flags stateful-metric results with ``_is_metric``; they must see the
    accumulators after this batch (TensorFlow orders them by control dependencies, Theano
    recomputes them after the updates)."""
    if not new_value:
        return node
    return substitute([node], new_value)[0]


class Function:
    """The callable ``K.function`` returns: a list of arrays in, a list of arrays out."""

    def __init__(self, fn: CompiledFunction, single: bool) -> None:
        self.fn = fn
        self.single = single

    def __call__(self, inputs: Any) -> Any:
        if inputs.__class__ is not list:  # (the usual case skips both checks)
            if isinstance(inputs, dict):
                raise ArgumentError("K.function takes a list of input values, not a dict")
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
        outs = self.fn(inputs)  # (the function only reads the sequence)
        return outs[0] if self.single else outs

    @property
    def name(self) -> str:
        return self.fn.name

    @property
    def kernels(self) -> list[dict[str, Any]]:
        """The compiled kernels (name, ops, Kernel IR, LLVM IR on the cpu device)."""
        return self.fn.kernels()

    def profile(self, enable: bool = True) -> str:
        """Enable per-kernel timing and return the table (calls, time, GB/s) so far."""
        return self.fn.profile(enable)


def evaluate(x: Any) -> np.ndarray:
    if isinstance(x, Update):
        # as with Keras's TensorFlow backend, evaluating K.update*(...) applies the update and
        # gives the variable's new value
        var, value = x
        return CompiledFunction([], [to_node(value)], _normalize_updates([x]),
                                name=f"eval:update:{var.name}")([])[0]
    if isinstance(x, Variable):
        return x.value.copy()
    if not isinstance(x, Tensor):
        return np.asarray(x)
    return CompiledFunction([], [x.node], [], name=f"eval:{x.name}")([])[0]


@api
def gradients(loss, variables):
    """d loss / d variables (the loss is summed if not scalar); zeros where unconnected."""
    single = not isinstance(variables, (list, tuple))
    vs = [variables] if single else list(variables)
    wrt = [to_node(v) for v in vs]
    grads = _gradients(_as_computed(to_node(loss), wrt), wrt)
    out = [Tensor(g) for g in grads]
    return out[0] if single else out


def _as_computed(loss: Node, wrt: list[Node]) -> Node:
    """``loss`` with the stabilize pass's loss rules applied (the formula the compiled function
    evaluates), so that K.gradients differentiates that formula rather than the one written.

    A stabilized form computes the same value wherever the original is finite, hence has the
    same gradient there, and for Keras's cross-entropy of a softmax a much simpler one: the
    clip of log_softmax(x) gives where(in range, g, 0), then g - softmax(x) * sum(g).  Skipped
    when the pass is disabled (``SYMK_OPT=0``, ``SYMK_EXCLUDE=stabilize``), and when a ``wrt``
    node is not a leaf: a rule may rewrite a path through it (log(clip(softmax(x))) no longer
    contains the softmax) and the gradient with respect to it would be lost.
    """
    if any(not w.op.is_leaf for w in wrt) or not any(p.name == "stabilize" for p in select()):
        return loss
    return rewrite([loss], stabilize.loss_rules)[0]


@api
def stop_gradient(variables):
    if isinstance(variables, (list, tuple)):
        return [Tensor(gb.stop_gradient(to_node(v))) for v in variables]
    return Tensor(gb.stop_gradient(to_node(variables)))
