"""Sparse tensors in K: ``placeholder(sparse=True)``, ``is_sparse``, ``to_dense`` and the
sparse path of ``dot``.

A ``SparseTensor`` is a ``Tensor`` whose node is the dense value
``sparse_to_dense(indices, values, dense_shape)``, so every K function that does not know
about sparsity still computes the right thing; ``dot`` uses the COO parts directly
(``sparse_matmul``) and never densifies.  A sparse placeholder is fed with a scipy.sparse
matrix or an ``(indices, values, dense_shape)`` triple (see ``symk.runtime.sparse_feed``).
"""

from __future__ import annotations

from typing import Any

from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply, fresh_uid
from symk.graph.tensor import Tensor
from symk.graph.types import result_dtype, shape_str
from symk.runtime.sparse_feed import SparseInput


class SparseTensor(Tensor):
    """A sparse tensor handle: ``indices``, ``values`` and ``dense_shape`` tensors, like
    TensorFlow's; as a plain tensor it is its dense value."""

    def __init__(self, indices: Node, values: Node, dense_shape: Node,
                 shape: tuple[int | None, ...], name: str | None = None) -> None:
        node = apply("sparse_to_dense", [indices, values, dense_shape], shape=tuple(shape),
                     default=0)
        super().__init__(node, name)
        self.parts = (indices, values, dense_shape)
        self.indices = Tensor(indices)
        self.values = Tensor(values)
        self.dense_shape = Tensor(dense_shape)
        #: set for sparse placeholders: how K.function feeds them
        self.sparse_input: SparseInput | None = None

    def __repr__(self) -> str:
        return f"<symk.SparseTensor '{self.name}' shape={self.shape} dtype={self.dtype}>"


def sparse_placeholder(shape: tuple[int | None, ...], dtype: str, name: str | None) -> Tensor:
    rank = len(shape)
    if rank < 1:
        raise ArgumentError("a sparse placeholder needs rank >= 1")
    indices = apply("placeholder", [], dtype="int64", shape=(None, rank), uid=fresh_uid())
    values = apply("placeholder", [], dtype=dtype, shape=(None,), uid=fresh_uid())
    dense_shape = apply("placeholder", [], dtype="int64", shape=(rank,), uid=fresh_uid())
    t = SparseTensor(indices, values, dense_shape, shape, name or "sparse_placeholder")
    t.sparse_input = SparseInput(indices, values, dense_shape, tuple(shape), dtype)
    return t


def is_sparse(x: Any) -> bool:
    return issubclass(type(x), SparseTensor)


def to_dense(tensor: Any) -> Any:
    if is_sparse(tensor):
        return Tensor(tensor.node)
    return tensor


def sparse_dot(x: SparseTensor, y: Node) -> Tensor:
    """``x @ y`` for a 2-D sparse ``x`` and a 2-D dense ``y`` (TensorFlow's
    ``sparse_dense_matmul``, which Keras calls for a sparse ``dot``)."""
    if x.ndim != 2 or y.ndim != 2:
        raise ShapeError(f"dot of a sparse tensor needs a 2-D sparse and a 2-D dense operand, "
                         f"got shapes {shape_str(x.shape)} and {shape_str(y.shape)}")
    k, m = x.shape[1], y.shape[0]
    if k is not None and m is not None and k != m:
        raise ShapeError(f"incompatible shapes {shape_str(x.shape)} and {shape_str(y.shape)}: "
                         f"{k} != {m}")
    indices, values, dense_shape = x.parts
    dtype = result_dtype(values.dtype, y.dtype)
    if values.dtype != dtype:
        values = gb.cast(values, dtype)
    if y.dtype != dtype:
        y = gb.cast(y, dtype)
    return Tensor(apply("sparse_matmul", [indices, values, dense_shape, y], transpose_a=False,
                        rows=x.shape[0]))
