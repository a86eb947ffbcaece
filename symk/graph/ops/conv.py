"""The convolution ops: one N-d (1 to 3 spatial dims) grouped, strided, dilated, padded
convolution in the channels-last layout, and its two gradients, which are convolutions too.

* ``conv(x, w)``: ``x (N, *S, C)``, ``w (*K, C // groups, F)`` -> ``(N, *O, F)``.
* ``conv_input_grad(g, w[, shape_vec])``: the gradient w.r.t. ``x`` (the transposed
  convolution), output ``(N, *in_spatial, C)``; ``in_spatial`` may hold ``None`` dims, then the
  int vector ``shape_vec`` (the full input shape) gives them at run time.
* ``conv_kernel_grad(x, g)``: the gradient w.r.t. ``w``, of the static shape ``kernel_shape``.

Attributes shared by the three: ``strides``, ``dilation`` (ints per spatial dim), ``pads`` (a
``(lo, hi)`` pair per spatial dim, or ``None`` for TensorFlow's SAME padding resolved from the
input size at run time) and ``groups`` (depthwise: ``groups == C``).  All are extern ops
(fusion barriers); their numpy implementations live in ``conv_impl``.  The three ops are
closed under differentiation: each one's vjp is built from the other two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from symk.errors import DTypeError, ShapeError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.op import Op, register
from symk.graph.ops import conv_impl as ci
from symk.graph.types import Type, is_float, shape_str

ATTRS = ("strides", "dilation", "pads", "groups")


def _check_geometry(name: str, nsp: int, strides, dilation, pads, groups) -> None:
    if nsp not in (1, 2, 3):
        raise ShapeError(f"{name}: 1 to 3 spatial dims are supported, got {nsp}")
    for label, v in (("strides", strides), ("dilation", dilation), ("pads", pads)):
        if len(v) != nsp:
            raise ShapeError(f"{name}: {label} {tuple(v)} needs {nsp} entries")
    if any(int(s) < 1 for s in strides) or any(int(d) < 1 for d in dilation):
        raise ShapeError(f"{name}: strides {tuple(strides)} and dilation {tuple(dilation)} "
                         "must be positive")
    if any(p is not None and (len(p) != 2 or min(p) < 0) for p in pads):
        raise ShapeError(f"{name}: pads {tuple(pads)} must be (lo, hi) pairs >= 0 or None")
    if int(groups) < 1:
        raise ShapeError(f"{name}: groups must be >= 1, got {groups}")


def _float_dtype(name: str, a: Type, b: Type) -> str:
    if a.dtype != b.dtype or not is_float(a.dtype):
        raise DTypeError(f"{name}: operands must have one float dtype, got {a.dtype} and "
                         f"{b.dtype}")
    return a.dtype


def _kernel_spatial(name: str, w: Type) -> tuple[int, ...]:
    ks = w.shape[:-2]
    if any(k is None for k in ks):
        raise ShapeError(f"{name}: the kernel's spatial dims must be known, got "
                         f"{shape_str(w.shape)}")
    return tuple(int(k) for k in ks)


def _out_spatial(name: str, spatial, ksize, strides, dilation, pads) -> tuple[int | None, ...]:
    out = tuple(ci.out_size(n, k, s, d, p)
                for n, k, s, d, p in zip(spatial, ksize, strides, dilation, pads))
    if any(o is not None and o <= 0 for o in out):
        raise ShapeError(f"{name}: spatial input {shape_str(tuple(spatial))} is smaller than "
                         f"the (dilated) kernel {tuple(ksize)} with dilation "
                         f"{tuple(dilation)}: empty output {shape_str(out)}")
    return out


def _channels(name: str, c: int | None, cg: int | None, f: int | None, groups: int) -> None:
    if c is not None and cg is not None and c != cg * groups:
        raise ShapeError(f"{name}: the input has {c} channels but the kernel expects "
                         f"{cg * groups} ({cg} per group x {groups} groups)")
    if f is not None and f % groups:
        raise ShapeError(f"{name}: {f} output channels are not divisible by {groups} groups")


def _geo(node) -> dict:
    return {k: node.attrs[k] for k in ATTRS}


@register
class Conv(Op):
    name = "conv"
    arity = 2
    attr_names = ATTRS
    extern = True

    def infer(self, inputs, strides, dilation, pads, groups):
        x, w = inputs
        dtype = _float_dtype(self.name, x, w)
        if x.ndim != w.ndim or x.ndim < 3:
            raise ShapeError(f"conv: input {shape_str(x.shape)} and kernel "
                             f"{shape_str(w.shape)} must have the same rank (spatial dims + 2)")
        nsp = x.ndim - 2
        _check_geometry(self.name, nsp, strides, dilation, pads, groups)
        ks = _kernel_spatial(self.name, w)
        _channels(self.name, x.shape[-1], w.shape[-2], w.shape[-1], groups)
        out = _out_spatial(self.name, x.shape[1:-1], ks, strides, dilation, pads)
        return Type(dtype, (x.shape[0], *out, w.shape[-1]))

    def ref(self, x, w, strides, dilation, pads, groups):
        return ci.conv_forward(x, w, strides, dilation, pads, groups)

    def vjp(self, node, g):
        x, w = node.inputs
        return [input_grad(g, w, x, **_geo(node)), kernel_grad(x, g, w.shape, **_geo(node))]


@register
class ConvInputGrad(Op):
    """The transposed convolution: the gradient of ``conv`` w.r.t. its input."""

    name = "conv_input_grad"
    attr_names = (*ATTRS, "in_spatial")
    extern = True

    def infer(self, inputs, strides, dilation, pads, groups, in_spatial):
        if len(inputs) not in (2, 3):
            raise ShapeError(f"conv_input_grad takes 2 or 3 inputs, got {len(inputs)}")
        g, w = inputs[:2]
        dtype = _float_dtype(self.name, g, w)
        if g.ndim != w.ndim or g.ndim < 3:
            raise ShapeError(f"conv_input_grad: input {shape_str(g.shape)} and kernel "
                             f"{shape_str(w.shape)} must have the same rank")
        nsp = g.ndim - 2
        _check_geometry(self.name, nsp, strides, dilation, pads, groups)
        if len(in_spatial) != nsp:
            raise ShapeError(f"conv_input_grad: output size {tuple(in_spatial)} needs {nsp} "
                             "entries")
        if any(d is None for d in in_spatial) and len(inputs) != 3:
            raise ShapeError("conv_input_grad: unknown output dims need a shape input")
        ks = _kernel_spatial(self.name, w)
        if g.shape[-1] is not None and w.shape[-1] is not None and g.shape[-1] != w.shape[-1]:
            raise ShapeError(f"conv_input_grad: the input has {g.shape[-1]} channels but the "
                             f"kernel {shape_str(w.shape)} has {w.shape[-1]} output channels")
        _channels(self.name, None, None, w.shape[-1], groups)
        out = _out_spatial(self.name, in_spatial, ks, strides, dilation, pads)
        for o, d in zip(out, g.shape[1:-1]):
            if o is not None and d is not None and o != d:
                raise ShapeError(f"conv_input_grad: an output of spatial size "
                                 f"{shape_str(tuple(in_spatial))} is convolved to "
                                 f"{shape_str(out)}, but the input has spatial size "
                                 f"{shape_str(g.shape[1:-1])}")
        c = None if w.shape[-2] is None else w.shape[-2] * groups
        return Type(dtype, (g.shape[0], *in_spatial, c))

    def ref(self, g, w, shape_vec=None, *, strides, dilation, pads, groups, in_spatial):
        if shape_vec is not None:
            in_spatial = tuple(int(s) for s in np.asarray(shape_vec)[1:-1])
        return ci.conv_input_grad(g, w, in_spatial, strides, dilation, pads, groups)

    def vjp(self, node, dy):
        g, w = node.inputs[:2]
        geo = _geo(node)
        return [apply("conv", [dy, w], **geo),
                kernel_grad(dy, g, w.shape, **geo)] + [None] * (len(node.inputs) - 2)


@register
class ConvKernelGrad(Op):
    """The gradient of ``conv`` w.r.t. its kernel."""

    name = "conv_kernel_grad"
    arity = 2
    attr_names = (*ATTRS, "kernel_shape")
    extern = True

    def infer(self, inputs, strides, dilation, pads, groups, kernel_shape):
        x, g = inputs
        dtype = _float_dtype(self.name, x, g)
        if x.ndim != g.ndim or x.ndim < 3:
            raise ShapeError(f"conv_kernel_grad: input {shape_str(x.shape)} and gradient "
                             f"{shape_str(g.shape)} must have the same rank")
        nsp = x.ndim - 2
        _check_geometry(self.name, nsp, strides, dilation, pads, groups)
        if len(kernel_shape) != x.ndim or any(k is None for k in kernel_shape):
            raise ShapeError(f"conv_kernel_grad: kernel shape {tuple(kernel_shape)} must be "
                             f"known and of rank {x.ndim}")
        _channels(self.name, x.shape[-1], kernel_shape[-2], kernel_shape[-1], groups)
        if g.shape[-1] is not None and g.shape[-1] != kernel_shape[-1]:
            raise ShapeError(f"conv_kernel_grad: the gradient has {g.shape[-1]} channels, "
                             f"the kernel {tuple(kernel_shape)} {kernel_shape[-1]}")
        _out_spatial(self.name, x.shape[1:-1], kernel_shape[:-2], strides, dilation, pads)
        return Type(dtype, tuple(kernel_shape))

    def ref(self, x, g, strides, dilation, pads, groups, kernel_shape):
        return ci.conv_kernel_grad(x, g, kernel_shape[:-2], strides, dilation, pads, groups)

    def vjp(self, node, ddw):
        x, g = node.inputs
        geo = _geo(node)
        return [input_grad(g, ddw, x, **geo), apply("conv", [x, ddw], **geo)]


def input_grad(g, w, like, *, strides, dilation, pads, groups):
    """conv_input_grad node whose output has the shape of the node ``like`` (its runtime shape
    is passed along only when some spatial dim is unknown)."""
    spatial = tuple(like.shape[1:-1])
    extra = [gb.shape_of(like)] if None in spatial else []
    return apply("conv_input_grad", [g, w, *extra], strides=strides, dilation=dilation,
                 pads=pads, groups=groups, in_spatial=spatial)


def kernel_grad(x, g, kernel_shape: Sequence[int], *, strides, dilation, pads, groups):
    return apply("conv_kernel_grad", [x, g], strides=strides, dilation=dilation,
                 pads=pads, groups=groups, kernel_shape=tuple(int(k) for k in kernel_shape))
