"""Sparse tensors in COO form inside the graph: ``(indices (nnz, ndim) int64, values (nnz,),
dense_shape (ndim,) int64)``, three ordinary nodes.

- ``sparse_to_dense(indices, values, dense_shape)``: the dense tensor (entries at repeated
  indices sum; positions without an entry hold ``default``); static shape in ``shape``.
- ``sparse_gather(x, indices)``: ``x`` at each index row (nnz,); the adjoint of the above.
- ``sparse_matmul(indices, values, dense_shape, b)``: a sparse matrix (or its transpose, with
  ``transpose_a``) times a dense matrix, without densifying.
- ``sparse_sddmm(indices, dense_shape, g, b)``: the matmul's gradient w.r.t. the values,
  ``sum_j g[r_k, j] * b[c_k, j]`` (rows and columns swapped with ``transpose_a``).
All are extern calls.
"""

from __future__ import annotations

import numpy as np

from symk.errors import DTypeError, ShapeError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.op import Op, register
from symk.graph.types import Type, is_int, result_dtype, shape_str


def _check_coo(indices: Type, dense_shape: Type, values: Type | None = None) -> None:
    if indices.ndim != 2 or not is_int(indices.dtype):
        raise ShapeError(f"sparse indices must be an int matrix (nnz, rank), got {indices}")
    if dense_shape.ndim != 1 or not is_int(dense_shape.dtype):
        raise ShapeError(f"sparse dense_shape must be an int vector, got {dense_shape}")
    if values is not None and values.ndim != 1:
        raise ShapeError(f"sparse values must be a vector (nnz,), got {values}")
    if values is not None and None not in (indices.shape[0], values.shape[0]) \
            and indices.shape[0] != values.shape[0]:
        raise ShapeError(f"sparse indices {shape_str(indices.shape)} and values "
                         f"{shape_str(values.shape)} have different numbers of entries")


def _check_bounds(indices: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if indices.shape[1] != len(shape):
        raise ShapeError(f"{what}: indices of rank {indices.shape[1]} for a dense shape "
                         f"{tuple(shape)}")
    if indices.size and (indices.min() < 0 or np.any(indices.max(axis=0) >= np.asarray(shape))):
        raise ShapeError(f"{what}: an index is out of range for the dense shape "
                         f"{tuple(shape)}")


@register
class SparseToDense(Op):
    name = "sparse_to_dense"
    arity = 3
    extern = True
    attr_names = ("shape", "default")

    def infer(self, inputs, shape, default=0):
        indices, values, dense_shape = inputs
        _check_coo(indices, dense_shape, values)
        if dense_shape.shape[0] is not None and dense_shape.shape[0] != len(shape):
            raise ShapeError(f"dense_shape {dense_shape} does not have {len(shape)} entries")
        return Type(values.dtype, tuple(shape))

    def ref(self, indices, values, dense_shape, shape, default=0):
        dshape = tuple(int(d) for d in dense_shape)
        for k, (s, d) in enumerate(zip(shape, dshape)):
            if s is not None and s != d:
                raise ShapeError(f"sparse tensor of dense shape {dshape} where {tuple(shape)} "
                                 f"is expected (dimension {k})")
        _check_bounds(indices, dshape, "sparse_to_dense")
        at = tuple(indices.T)
        out = np.zeros(dshape, values.dtype)
        np.add.at(out, at, values)
        if default != 0:
            hit = np.zeros(dshape, bool)
            hit[at] = True
            out = np.where(hit, out, np.asarray(default, values.dtype))
        return out

    def vjp(self, node, g):
        return [None, apply("sparse_gather", [g, node.inputs[0]]), None]


@register
class SparseGather(Op):
    name = "sparse_gather"
    arity = 2
    extern = True

    def infer(self, inputs):
        x, indices = inputs
        if indices.ndim != 2 or not is_int(indices.dtype):
            raise ShapeError(f"indices must be an int matrix (nnz, rank), got {indices}")
        if indices.shape[1] is not None and indices.shape[1] != x.ndim:
            raise ShapeError(f"indices of rank {indices.shape[1]} for a tensor {x}")
        return Type(x.dtype, (indices.shape[0],))

    def ref(self, x, indices):
        _check_bounds(indices, x.shape, "sparse_gather")
        return x[tuple(indices.T)]

    def vjp(self, node, g):
        x, indices = node.inputs
        shape = gb.cast(gb.shape_of(x), "int64")
        return [apply("sparse_to_dense", [indices, g, shape], shape=x.shape, default=0),
                None]


def row_sums(rows: np.ndarray, parts: np.ndarray, n_rows: int, dtype: np.dtype) -> np.ndarray:
    """out[r] = sum of parts[k] over k with rows[k] == r (a segmented sum; 2x faster than
    ``np.add.at``)."""
    out = np.zeros((n_rows,) + parts.shape[1:], dtype)
    if rows.size:
        order = np.argsort(rows, kind="stable")
        rows, parts = rows[order], parts[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = np.add.reduceat(parts.astype(dtype, copy=False), starts, axis=0)
    return out


def _matmul_dims(a_shape: tuple[int, ...], transpose_a: bool) -> tuple[int, int]:
    return (a_shape[1], a_shape[0]) if transpose_a else (a_shape[0], a_shape[1])


@register
class SparseMatmul(Op):
    """``A @ b`` (``A.T @ b`` with ``transpose_a``) for a sparse 2-D ``A``; ``rows`` is the
    static number of rows of the result."""

    name = "sparse_matmul"
    arity = 4
    extern = True
    attr_names = ("transpose_a", "rows")

    def infer(self, inputs, transpose_a=False, rows=None):
        indices, values, dense_shape, b = inputs
        _check_coo(indices, dense_shape, values)
        if b.ndim != 2:
            raise ShapeError(f"a sparse matrix can only be multiplied by a 2-D dense tensor, "
                             f"got {b}")
        if indices.shape[1] is not None and indices.shape[1] != 2:
            raise ShapeError(f"sparse_matmul needs a 2-D sparse matrix, got indices {indices}")
        dtype = result_dtype(values.dtype, b.dtype)
        if dtype == "bool":
            raise DTypeError("sparse_matmul of boolean tensors")
        return Type(dtype, (rows, b.shape[1]))

    def ref(self, indices, values, dense_shape, b, transpose_a=False, rows=None):
        dshape = tuple(int(d) for d in dense_shape)
        _check_bounds(indices, dshape, "sparse_matmul")
        n_out, n_in = _matmul_dims(dshape, transpose_a)
        if b.shape[0] != n_in:
            raise ShapeError(f"sparse_matmul: a sparse matrix of shape {dshape}"
                             f"{' (transposed)' if transpose_a else ''} cannot multiply a "
                             f"dense matrix of shape {b.shape}")
        r, c = (indices[:, 1], indices[:, 0]) if transpose_a else (indices[:, 0], indices[:, 1])
        return row_sums(r, values[:, None] * b[c], n_out, np.result_type(values.dtype, b.dtype))

    def vjp(self, node, g):
        indices, values, dense_shape, b = node.inputs
        ta = node.attrs.get("transpose_a", False)
        dv = apply("sparse_sddmm", [indices, dense_shape, g, b], transpose_a=ta)
        db = apply("sparse_matmul", [indices, values, dense_shape, g], transpose_a=not ta,
                   rows=b.shape[0])
        return [None, dv, None, db]


@register
class SparseSddmm(Op):
    """Sampled dense-dense product: ``out[k] = sum_j g[r_k, j] * b[c_k, j]`` for each index
    ``(r_k, c_k)`` (swapped with ``transpose_a``): the values gradient of ``sparse_matmul``."""

    name = "sparse_sddmm"
    arity = 4
    extern = True
    attr_names = ("transpose_a",)

    def infer(self, inputs, transpose_a=False):
        indices, dense_shape, g, b = inputs
        _check_coo(indices, dense_shape)
        if g.ndim != 2 or b.ndim != 2:
            raise ShapeError(f"sparse_sddmm needs 2-D dense operands, got {g} and {b}")
        return Type(result_dtype(g.dtype, b.dtype), (indices.shape[0],))

    def ref(self, indices, dense_shape, g, b, transpose_a=False):
        dshape = tuple(int(d) for d in dense_shape)
        _check_bounds(indices, dshape, "sparse_sddmm")
        r, c = (indices[:, 1], indices[:, 0]) if transpose_a else (indices[:, 0], indices[:, 1])
        dtype = np.result_type(g.dtype, b.dtype)
        return np.einsum("kj,kj->k", g[r].astype(dtype), b[c].astype(dtype))

    def vjp(self, node, g):
        indices, dense_shape, gm, b = node.inputs
        ta = node.attrs.get("transpose_a", False)
        d_gm = apply("sparse_matmul", [indices, g, dense_shape, b], transpose_a=ta,
                     rows=gm.shape[0])
        d_b = apply("sparse_matmul", [indices, g, dense_shape, gm], transpose_a=not ta,
                    rows=b.shape[0])
        return [None, None, d_gm, d_b]
