"""The ``blas`` pass: a matrix product added into a variable becomes one ``gemm`` node.

``w - s * dot(a, b)`` (an SGD update of a weight by its gradient), ``w + s * dot(a, b)`` and
``w -/+ dot(a, b)``, where ``w`` is a variable shaped like the product and the product feeds
nothing else, become ``gemm(w, a, b, alpha=-/+s, beta=1)``.  BLAS then accumulates the product
into its output in one pass, and when the result is ``w``'s own update the cpu device writes it
straight into ``w`` (no gradient array, no update kernel).  It needs the consumer counts of
the whole graph, so it is a pass of its own rather than a local rule.
"""

from __future__ import annotations

from symk.graph.node import Node, apply, creation_line, substitute, toposort
from symk.graph.ops.leaves import const_array
from symk.graph.ops.linalg import matmul2d_layout

_FLOATS = ("float32", "float64")


def _product(n: Node, clients: dict[int, int]) -> tuple[Node, float] | None:
    """(the einsum, its scale) when ``n`` is a 2-D matrix product or a scalar constant times
    one, used by nothing else."""
    scale = 1.0
    if n.op.name == "mul" and clients[id(n)] == 1:
        for e, s in (n.inputs, n.inputs[::-1]):
            c = const_array(s)
            if e.op.name == "einsum" and c is not None and c.size == 1 and s.ndim == 0:
                n, scale = e, float(c.reshape(()))
                break
        else:
            return None
    if n.op.name != "einsum" or clients[id(n)] != 1 or len(n.inputs) != 2:
        return None
    if matmul2d_layout(n.attrs["spec"]) is None or any(x.dtype != n.dtype for x in n.inputs):
        return None
    return n, scale


def _gemm(n: Node, clients: dict[int, int]) -> Node | None:
    if n.op.name not in ("add", "sub") or n.dtype not in _FLOATS:
        return None
    left, right = n.inputs
    # w + p and p + w (sign +1); w - p (sign -1)
    pairs = [(left, right, 1.0)] + ([(right, left, 1.0)] if n.op.name == "add" else [])
    if n.op.name == "sub":
        pairs = [(left, right, -1.0)]
    for acc, other, sign in pairs:
        if acc.op.name != "variable" or acc.dtype != n.dtype or acc.shape != n.shape:
            continue
        found = _product(other, clients)
        if found is None or found[0].dtype != n.dtype or found[0].shape != n.shape:
            continue
        e, scale = found
        # w +/- s * (a @ b) = gemm(w, a, b, alpha=+/-s, beta=1)
        return apply("gemm", [acc, *e.inputs], line=creation_line(n), spec=e.attrs["spec"],
                     alpha=sign * scale, beta=1.0)
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
