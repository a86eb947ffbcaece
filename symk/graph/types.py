"""Static types of graph values: a dtype plus a shape whose dims are ints or ``None``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symk.errors import DTypeError, ShapeError

Dim = int | None
Shape = tuple[Dim, ...]

_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}


def as_dtype(dtype: object) -> str:
    """Normalize a dtype spec (string, numpy dtype, python type) to a canonical name."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        return dtype
    try:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError as e:
        raise DTypeError(f"unknown dtype {dtype!r}") from e
    if name not in _DTYPES:
        raise DTypeError(f"unsupported dtype {dtype!r} (supported: {sorted(_DTYPES)})")
    return name


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def is_int(dtype: str) -> bool:
    return dtype.startswith("int") or dtype.startswith("uint")


def result_dtype(*dtypes: str) -> str:
    """Promotion of tensor dtypes (numpy rules)."""
    return np.result_type(*[np.dtype(d) for d in dtypes]).name


def scalar_dtype(value: object, other: str) -> str:
    """dtype of a Python scalar combined with a tensor of dtype ``other`` (weak scalar typing)."""
    return np.result_type(np.dtype(other), value).name  # NEP 50: python scalars are weak


@dataclass(frozen=True, slots=True)
class Type:
    dtype: str
    shape: Shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    def size(self) -> int | None:
        n = 1
        for d in self.shape:
            if d is None:
                return None
            n *= d
        return n


def normalize_axis(axis: int, ndim: int, what: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"{what} must be an int, got {axis!r}")
    a = int(axis)
    if not -ndim <= a < ndim:
        raise ShapeError(f"{what} {a} is out of range for a tensor of rank {ndim}")
    return a % ndim if ndim else 0


def normalize_axes(axis: object, ndim: int) -> tuple[int, ...]:
    """axis=None|int|list -> sorted tuple of distinct non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (list, tuple)):
        axes = [normalize_axis(a, ndim) for a in axis]
    else:
        axes = [normalize_axis(axis, ndim)]
    if len(set(axes)) != len(axes):
        raise ShapeError(f"repeated axis in {axis!r}")
    return tuple(sorted(axes))


def broadcast_shapes(*shapes: Shape) -> Shape:
    """Numpy broadcasting of static shapes; ``None`` dims are assumed not to be broadcast."""
    nd = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(nd):
        dims = [s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(f"shapes {', '.join(map(str, shapes))} cannot be broadcast "
                             f"(dimension {i - nd}: {sorted(known)})")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def shape_str(shape: Shape) -> str:
    body = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({body}{',' if len(shape) == 1 else ''})"
