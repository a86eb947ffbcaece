"""Sparse tensors in K: ``placeholder(sparse=True)``, ``variable(scipy.sparse matrix)``,
``is_sparse``, ``to_dense`` and the sparse paths of ``dot`` and ``concatenate``.

A ``SparseTensor`` is a ``Tensor`` whose node is the dense value
``sparse_to_dense(indices, values, dense_shape)``, so every K function that does not know
about sparsity still computes the right thing; ``dot`` uses the COO parts directly
(``sparse_matmul``) and never densifies.  A sparse placeholder is fed with a scipy.sparse
matrix or an ``(indices, values, dense_shape)`` triple (see ``symk.runtime.sparse_feed``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply, fresh_uid
from symk.graph.tensor import Tensor, getitem
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


def sparse_variable(value: Any, dtype: str, name: str) -> SparseTensor:
    """``K.variable`` of a scipy.sparse matrix: a sparse tensor holding its COO parts as
    constants (like TensorFlow's backend, which makes a ``tf.SparseTensor`` of the value; it
    is not updatable).  Repeated entries are summed."""
    coo = value.tocoo()
    coo.sum_duplicates()
    if len(coo.shape) != 2:
        raise ShapeError(f"a sparse value must be a matrix, got shape {tuple(coo.shape)}")
    indices = np.stack([np.asarray(coo.row), np.asarray(coo.col)], axis=1).astype(np.int64)
    values = gb.as_array(np.asarray(coo.data), dtype, "value")
    shape = tuple(int(d) for d in coo.shape)
    t = SparseTensor(gb.const(indices.reshape(-1, 2)), gb.const(values.reshape(-1)),
                     gb.const(np.asarray(shape, np.int64)), shape, name)
    t._keras_shape = shape
    t._uses_learning_phase = False
    return t


def sparse_concat(tensors: list[SparseTensor], axis: int) -> SparseTensor:
    """The sparse concatenation of sparse tensors along ``axis`` (already normalized), as
    TensorFlow's ``sparse.concat``: each operand's indices shifted by the sizes before it."""
    first = tensors[0]
    if len(tensors) == 1:
        return first
    rank = first.ndim
    for t in tensors[1:]:
        if t.ndim != rank:
            raise ShapeError(f"cannot concatenate sparse tensors of shapes "
                             f"{shape_str(first.shape)} and {shape_str(t.shape)}")
        for k, (a, b) in enumerate(zip(first.shape, t.shape)):
            if k != axis and a is not None and b is not None and a != b:
                raise ShapeError(f"cannot concatenate sparse tensors of shapes "
                                 f"{shape_str(first.shape)} and {shape_str(t.shape)} along "
                                 f"axis {axis}: dimension {k} differs")
    unit = gb.const(np.eye(rank, dtype=np.int64)[axis])  # selects the concatenation axis
    dtype = result_dtype(*(t.dtype for t in tensors))
    indices, values = [], []
    offset = None  # int64 scalar: the size along axis of the operands so far
    for t in tensors:
        idx, vals, dense_shape = t.parts
        idx = gb.cast(idx, "int64")
        indices.append(idx if offset is None else gb.add(idx, gb.mul(offset, unit)))
        values.append(gb.cast(vals, dtype))
        size = getitem(gb.cast(dense_shape, "int64"), axis)
        offset = size if offset is None else gb.add(offset, size)
    first_shape = gb.cast(first.parts[2], "int64")
    dense_shape = gb.add(first_shape, gb.mul(gb.sub(offset, getitem(first_shape, axis)), unit))
    sizes = [t.shape[axis] for t in tensors]
    static = list(first.shape)
    for t in tensors[1:]:
        static = [a if a is not None else b for a, b in zip(static, t.shape)]
    static[axis] = None if None in sizes else sum(sizes)
    out = SparseTensor(apply("concatenate", indices, axis=0),
                       apply("concatenate", values, axis=0), dense_shape, tuple(static))
    out._keras_shape = tuple(static)
    out._uses_learning_phase = False
    return out


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
