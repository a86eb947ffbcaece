"""Feeding sparse placeholders: a ``SparseInput`` names the three placeholders (indices,
values, dense_shape) behind one sparse input of a compiled function, and turns a fed value
into their three arrays.

Accepted values: a scipy.sparse matrix (duck-typed through ``tocoo``, so scipy is never
imported here), an ``(indices, values, dense_shape)`` triple, or an object with ``indices``,
``values`` and ``dense_shape`` attributes (like TensorFlow's ``SparseTensorValue``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from symk.errors import InputError
from symk.graph.node import Node
from symk.graph.types import shape_str


@dataclass(frozen=True)
class SparseInput:
    """The placeholders of one sparse input and its static dense shape and dtype."""

    indices: Node
    values: Node
    dense_shape: Node
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def parts(self) -> tuple[Node, Node, Node]:
        return (self.indices, self.values, self.dense_shape)

    def arrays(self, value: Any, where: str) -> list[np.ndarray]:
        """[indices (nnz, rank) int64, values (nnz,), dense_shape (rank,) int64]."""
        rank = len(self.shape)
        idx: Any  # the caller's objects, arrays once read below
        vals: Any
        shape: Any
        if hasattr(value, "tocoo") and hasattr(value, "nnz"):
            coo = value.tocoo()
            coo.sum_duplicates()
            idx = np.stack([np.asarray(coo.row), np.asarray(coo.col)], axis=1)
            vals, shape = np.asarray(coo.data), tuple(coo.shape)
        elif all(hasattr(value, a) for a in ("indices", "values", "dense_shape")):
            idx, vals, shape = value.indices, value.values, value.dense_shape
        elif isinstance(value, (tuple, list)) and len(value) == 3:
            idx, vals, shape = value
        else:
            raise InputError(f"{where}: a sparse placeholder takes a scipy.sparse matrix or an "
                             f"(indices, values, dense_shape) triple, got "
                             f"{type(value).__name__}")
        try:
            idx = np.asarray(idx)
            vals = np.asarray(vals)
            shape = np.asarray(shape)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{where}: cannot read the sparse value: {e}") from None
        if shape.ndim != 1 or shape.dtype.kind not in "iu" or shape.size != rank:
            raise InputError(f"{where}: the dense shape must be {rank} integers, got {shape}")
        if idx.size == 0:
            idx = idx.reshape(0, rank)
        if idx.ndim != 2 or idx.shape[1] != rank or idx.dtype.kind not in "iu":
            raise InputError(f"{where}: the indices must be integers of shape (nnz, {rank}), "
                             f"got {idx.dtype} {idx.shape}")
        if vals.ndim != 1 or vals.shape[0] != idx.shape[0]:
            raise InputError(f"{where}: expected {idx.shape[0]} values (one per index), got "
                             f"shape {vals.shape}")
        if vals.dtype == object or vals.dtype.kind not in "biuf":
            raise InputError(f"{where}: sparse values of dtype {vals.dtype} cannot be cast to "
                             f"{self.dtype}")
        for k, (d, s) in enumerate(zip(self.shape, shape.tolist())):
            if d is not None and d != s:
                raise InputError(f"{where}: expected dense shape {shape_str(self.shape)}, got "
                                 f"{tuple(shape.tolist())} (dimension {k}: {s} != {d})")
        if idx.size and (idx.min() < 0 or np.any(idx.max(axis=0) >= shape)):
            raise InputError(f"{where}: a sparse index is out of range for the dense shape "
                             f"{tuple(shape.tolist())}")
        return [idx.astype(np.int64, copy=False), vals.astype(self.dtype, copy=False),
                shape.astype(np.int64)]
