"""The ``blas`` pass: a matrix product added into a value of its shape becomes one ``gemm``.

``w - s * dot(a, b)`` (an SGD update of a weight by its gradient), ``m * r - s * dot(a, b)``
(Keras's momentum update), ``w + s * dot(a, b)`` and ``w -/+ dot(a, b)``, where ``w``/``m`` is
any value shaped like the product (a variable, a loop's carry or input slice, another
product), ``s``/``r`` are 0-d (constants or variables) and the product feeds nothing else,
become ``gemm(w, a, b, alpha=-/+s, beta=r or 1)``.  BLAS then accumulates the product into its
output in one pass (after copying ``w`` there), and when the result is a variable's own update
the cpu device writes it straight into the variable (no gradient array, no update kernel; see
``CompiledFunction._inplace_gemms``).  In a recurrent step ``x_t + dot(h, U)`` and a gradient
``dU + dot(h', dz)`` accumulated through time each lose an elementwise kernel.  It needs the
consumer counts of the whole graph, so it is a pass of its own rather than a local rule.
"""

from __future__ import annotations

import numpy as np

from symk.graph import build as gb
from symk.graph.node import Node, apply, creation_line, substitute, toposort
from symk.graph.ops.leaves import const_array
from symk.graph.ops.linalg import matmul2d_layout

_FLOATS = ("float32", "float64")


def _scaled(n: Node, dtype: str) -> tuple[Node, Node | None]:
    """(x, s) for ``n = s * x`` or ``x * s`` with ``s`` a 0-d tensor of ``dtype`` (a constant
    or a variable such as a learning rate), else (n, None)."""
    if n.op.name == "mul":
        for x, s in (n.inputs, n.inputs[::-1]):
            if s.ndim == 0 and s.dtype == dtype and x.ndim:
                return x, s
    return n, None


def _product(n: Node, clients: dict[int, int], dtype: str) -> tuple[Node, Node | None] | None:
    """(the einsum, its scale or None) when ``n`` is a 2-D matrix product, possibly times a
    scalar, used by nothing else."""
    e, s = _scaled(n, dtype)
    if s is not None and clients[id(n)] != 1:
        return None
    if e.op.name != "einsum" or clients[id(e)] != 1 or len(e.inputs) != 2:
        return None
    if matmul2d_layout(e.attrs["spec"]) is None or any(x.dtype != e.dtype for x in e.inputs):
        return None
    return e, s


def _scalar(s: Node | None, negate: bool, dtype: str) -> Node:
    if s is None:
        return gb.const(np.asarray(-1.0 if negate else 1.0, dtype=dtype))
    c = const_array(s)
    if c is not None:
        return gb.const(np.asarray(-c if negate else c, dtype=dtype).reshape(()))
    return gb.neg(s) if negate else s


def _gemm(n: Node, clients: dict[int, int]) -> Node | None:
    if n.op.name not in ("add", "sub") or n.dtype not in _FLOATS:
        return None
    left, right = n.inputs
    # acc + p and p + acc; acc - p
    pairs = [(left, right)] + ([(right, left)] if n.op.name == "add" else [])
    for acc_term, other in pairs:
        acc, beta = _scaled(acc_term, n.dtype)
        if acc.dtype != n.dtype or acc.shape != n.shape or acc.op.name == "constant":
            continue
        found = _product(other, clients, n.dtype)
        if found is None or found[0].dtype != n.dtype or found[0].shape != n.shape:
            continue
        e, alpha = found
        # b * w +/- s * (x @ y) = gemm(w, x, y, alpha=+/-s, beta=b)
        return apply("gemm", [acc, *e.inputs, _scalar(alpha, n.op.name == "sub", n.dtype),
                              _scalar(beta, False, n.dtype)],
                     line=creation_line(n), spec=e.attrs["spec"])
    return None


def fuse_gemm(roots: list[Node]) -> list[Node]:
    """Rewrite every product-into-variable accumulation below ``roots`` as a ``gemm``."""
    order = toposort(roots)
    clients: dict[int, int] = {}
    for n in order:
        for x in n.inputs:
            clients[id(x)] = clients.get(id(x), 0) + 1
    for r in roots:
        clients[id(r)] = clients.get(id(r), 0) + 1
    mapping: dict[int, Node] = {}
    for n in order:
        g = _gemm(n, clients)
        if g is not None:
            mapping[id(n)] = g
    return substitute(roots, mapping) if mapping else roots
