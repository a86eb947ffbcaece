"""CPU fast path of ``sparse_matmul``: scipy's compiled CSR product when scipy is installed
(imported on first use, never required); otherwise the op's numpy reference runs.  The
checks of the reference (bounds, shapes) run first, so errors are the same either way."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from symk.graph.node import Node
from symk.graph.ops.sparse import _check_bounds, _matmul_dims
from symk.runtime.externs import register_cpu_extern


@register_cpu_extern("sparse_matmul")
def sparse_matmul_plan(node: Node) -> Callable[..., np.ndarray] | None:
    try:
        import scipy.sparse as sp
    except ImportError:
        return None
    transpose_a = bool(node.attrs.get("transpose_a", False))
    ref = node.op.ref
    dtype = np.dtype(node.dtype)

    def run(indices: np.ndarray, values: np.ndarray, dense_shape: np.ndarray,
            b: np.ndarray) -> np.ndarray:
        dshape = tuple(int(d) for d in dense_shape)
        if indices.ndim != 2 or indices.shape[1] != 2 or len(dshape) != 2 or \
                b.shape[0] != _matmul_dims(dshape, transpose_a)[1]:
            return ref(indices, values, dense_shape, b, transpose_a=transpose_a)
        _check_bounds(indices, dshape, "sparse_matmul")
        r, c = (indices[:, 1], indices[:, 0]) if transpose_a else (indices[:, 0], indices[:, 1])
        a = sp.csr_matrix((values.astype(dtype, copy=False), (r, c)),
                          shape=_matmul_dims(dshape, transpose_a))
        return np.asarray(a @ b.astype(dtype, copy=False), dtype=dtype)

    return run
