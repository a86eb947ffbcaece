"""Neural-network composites with their own stable references: softmax and log-softmax;
plus identity-like ops with special gradient or side effects (stop_gradient, print)."""

from __future__ import annotations

import sys

import numpy as np

from symk.graph import build as gb
from symk.graph.op import Op, register
from symk.graph.ops.elementwise import float_of
from symk.graph.ops.reduce import max_and_exp_sum
from symk.graph.types import Type, normalize_axis


class _Numpy:
    """numpy under the Kernel IR builder's names: one formula serves the reference and the
    lowering (``_finish``)."""

    div, sub, exp, log = np.divide, np.subtract, np.exp, np.log


class _SoftmaxBase(Op):
    arity = 1
    attr_names = ("axis",)
    reduction = True

    def infer(self, inputs, axis):
        (x,) = inputs
        normalize_axis(axis, x.ndim)
        return Type(float_of(x.dtype), x.shape)

    def lower_reduction(self, node, L) -> None:
        """Kernel IR: a max pass, a pass summing exp(x - max) (in the accumulator's dtype),
        then each element from ``z = x - max`` and that sum (``_finish``)."""
        b, dt = L.b, node.dtype
        m, s = max_and_exp_sum(L, dt)
        s = b.cast(s, dt)
        L.per_element(lambda x: self._finish(b, b.sub(b.cast(x, dt), m), s))

    def row_axis(self, node, axes):
        (a,) = axes  # normalized along another axis: each row alone
        return None if normalize_axis(node.attrs["axis"], node.ndim) == a else a


@register
class Softmax(_SoftmaxBase):
    """softmax(x) = exp(x - max) / sum(exp(x - max)) along ``axis``."""

    name = "softmax"

    def ref(self, x, axis):
        x = x.astype(float_of(x.dtype.name), copy=False)
        if x.size == 0:  # nothing to normalize (an empty axis included): an empty result
            return x.copy()
        z = x - np.max(x, axis=axis, keepdims=True)
        return self._finish(_Numpy, z, np.sum(np.exp(z), axis=axis, keepdims=True))

    @staticmethod
    def _finish(b, z, s):
        # softmax from z = x - max and s = sum(exp(z)) (b: numpy's or Kernel IR's builder)
        return b.div(b.exp(z), s)

    def vjp(self, node, g):
        a = node.attrs["axis"]
        s = gb.sum(gb.mul(g, node), [a], keepdims=True)
        return [gb.mul(node, gb.sub(g, s))]


@register
class LogSoftmax(_SoftmaxBase):
    """log_softmax(x) = x - max - log(sum(exp(x - max))) along ``axis``."""

    name = "log_softmax"

    def ref(self, x, axis):
        x = x.astype(float_of(x.dtype.name), copy=False)
        if x.size == 0:
            return x.copy()
        z = x - np.max(x, axis=axis, keepdims=True)
        return self._finish(_Numpy, z, np.sum(np.exp(z), axis=axis, keepdims=True))

    @staticmethod
    def _finish(b, z, s):
        # log_softmax from z = x - max and s = sum(exp(z))
        return b.sub(z, b.log(s))

    def vjp(self, node, g):
        a = node.attrs["axis"]
        return [gb.sub(g, gb.mul(gb.exp(node), gb.sum(g, [a], keepdims=True)))]


@register
class StopGradient(Op):
    name = "stop_gradient"
    may_alias = True
    arity = 1
    nondifferentiable = True

    def infer(self, inputs):
        return inputs[0]

    def ref(self, x):
        return x


@register
class Print(Op):
    """Identity that prints ``message`` and the value each time it is computed."""

    name = "print"
    may_alias = True
    arity = 1
    attr_names = ("message",)
    extern = True
    side_effect = True

    def infer(self, inputs, message=""):
        return inputs[0]

    def ref(self, x, message=""):
        print(f"{message}{x}", file=sys.stdout, flush=True)
        return x

    def vjp(self, node, g):
        return [g]
