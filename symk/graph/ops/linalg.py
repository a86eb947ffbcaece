"""Tensor contractions as one op, ``einsum`` over two operands with explicit letters.

``K.dot``, ``K.batch_dot`` and tensordot all build einsum nodes; they are extern calls
(BLAS/cuBLAS) for the backends and fusion barriers.
"""

from __future__ import annotations

import numpy as np

from symk.errors import ShapeError
from symk.graph import build as gb
from symk.graph.op import Op, register
from symk.graph.types import Type, result_dtype, shape_str


def parse_spec(spec: str) -> tuple[list[str], str]:
    ins, out = spec.split("->")
    return ins.split(","), out


def matmul2d_layout(spec: str) -> tuple[bool, bool, bool] | None:
    """For a plain 2-D matrix product (two rank-2 operands sharing one contracted letter, a
    rank-2 result of the two free letters): whether A is stored transposed (K, M), B is
    stored transposed (N, K), and the result is the transposed product (N, M); else None."""
    ins, out = parse_spec(spec)
    if len(ins) != 2:
        return None
    la, lb = ins
    if not (len(la) == len(lb) == len(out) == 2) or len(set(la + lb)) != 3:
        return None
    common = set(la) & set(lb)
    if len(common) != 1:
        return None
    k = common.pop()
    i, j = la.replace(k, ""), lb.replace(k, "")
    if out not in (i + j, j + i):
        return None
    return la[0] == k, lb[1] == k, out == j + i


@register
class Einsum(Op):
    name = "einsum"
    matrix_product = True
    attr_names = ("spec",)
    extern = True

    def infer(self, inputs, spec):
        ins, out = parse_spec(spec)
        if len(ins) != len(inputs):
            raise ShapeError(f"einsum '{spec}' needs {len(ins)} operands, got {len(inputs)}")
        dims: dict[str, int | None] = {}
        for letters, t in zip(ins, inputs):
            if len(letters) != t.ndim:
                raise ShapeError(f"einsum '{spec}': operand of shape {shape_str(t.shape)} "
                                 f"does not have rank {len(letters)}")
            for ch, d in zip(letters, t.shape):
                old = dims.get(ch)
                if old is not None and d is not None and old != d:
                    raise ShapeError("incompatible shapes "
                                     + " and ".join(shape_str(t.shape) for t in inputs)
                                     + f" for contraction '{spec}': {old} != {d}")
                if old is None:
                    dims[ch] = d
        dtype = result_dtype(*[t.dtype for t in inputs])
        if dtype == "bool":
            dtype = "int32"
        return Type(dtype, tuple(dims[ch] for ch in out))

    def ref(self, *xs, spec):
        dtype = result_dtype(*[x.dtype.name for x in xs])
        if dtype == "bool":
            dtype = "int32"
        xs = [x.astype(dtype, copy=False) for x in xs]
        ins, out = parse_spec(spec)
        sizes: dict[str, int] = {}
        for k, (labels, x) in enumerate(zip(ins, xs)):  # numpy would broadcast a size 1
            for lab, d in zip(labels, x.shape):
                if sizes.setdefault(lab, d) != d:
                    raise ShapeError(f"einsum '{spec}': operand {k} has size {d} for index "
                                     f"'{lab}', another operand has {sizes[lab]} "
                                     f"(shapes {[x.shape for x in xs]})")
        if len(xs) == 2:
            # np.einsum with optimize uses BLAS (tensordot) where it can
            return np.asarray(np.einsum(spec, *xs, optimize=True), dtype=dtype)
        return np.asarray(np.einsum(spec, *xs), dtype=dtype)

    def row_axis(self, node, axes):
        # rows stay rows when their letter is free: in the output, in no row-free operand
        ins, out = parse_spec(node.attrs["spec"])
        letters = {ins[i][a] for i, a in enumerate(axes) if a is not None}
        if len(letters) != 1:
            return None
        (ch,) = letters
        if ch not in out or any(a is None and ch in ins[i] for i, a in enumerate(axes)):
            return None
        return out.index(ch)

    def vjp(self, node, g):
        ins, out = parse_spec(node.attrs["spec"])
        grads = []
        for i, x in enumerate(node.inputs):
            others = [(ins[j], node.inputs[j]) for j in range(len(ins)) if j != i]
            avail = set(out).union(*[set(s) for s, _ in others])
            missing = [ch for ch in ins[i] if ch not in avail]
            spec = ",".join([out] + [s for s, _ in others])
            if missing:
                # letters summed only in this operand: contract without them, then broadcast
                keep = "".join(ch for ch in ins[i] if ch in avail)
                part = gb.einsum(f"{spec}->{keep}", [g] + [n for _, n in others])
                for k, ch in enumerate(ins[i]):
                    if ch in missing:
                        part = gb.expand_dims(part, k)
                grads.append(gb.broadcast_like(part, x))
            else:
                grads.append(gb.einsum(f"{spec}->{ins[i]}", [g] + [n for _, n in others]))
        return grads


@register
class Gemm(Op):
    """``gemm(c, a, b, alpha, beta) = beta * c + alpha * einsum(spec, a, b)``: a matrix product
    accumulated into ``c`` (BLAS ?gemm), with 0-d ``alpha``/``beta`` (constants, or variables
    such as Keras's learning rate and momentum).  The ``blas`` pass builds it from updates
    such as ``w - lr * dot(x, g)`` or ``momentum * m - lr * g``, so the product can be
    written straight into the variable.  A ``beta`` of 0 still turns inf/nan in ``c`` into
    nan (0 * inf), as the expression it replaces does."""

    name = "gemm"
    matrix_product = True
    arity = 5
    attr_names = ("spec",)
    extern = True

    def infer(self, inputs, spec):
        c, a, b, alpha, beta = inputs
        t = Einsum.infer(self, [a, b], spec=spec)
        if alpha.ndim or beta.ndim:
            raise ShapeError(f"gemm: alpha {alpha} and beta {beta} must be scalars")
        if c.dtype != t.dtype or c.ndim != t.ndim or any(
                x is not None and y is not None and x != y for x, y in zip(c.shape, t.shape)):
            raise ShapeError(f"gemm: accumulator {c} does not match the product {t}")
        return Type(t.dtype, tuple(x if x is not None else y for x, y in zip(c.shape, t.shape)))

    def ref(self, c, a, b, alpha, beta, spec):
        r = Einsum.ref(self, a, b, spec=spec)
        return np.asarray(beta * c + alpha * r, dtype=r.dtype)

    def vjp(self, node, g):
        c, a, b, alpha, beta = node.inputs
        prod = gb.einsum(node.attrs["spec"], [a, b])
        ga, gb_ = prod.op.vjp(prod, gb.mul(g, alpha))
        return [gb.mul(g, beta), ga, gb_, gb.sum(gb.mul(g, prod)), gb.sum(gb.mul(g, c))]
