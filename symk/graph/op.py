"""The op registry: each op is defined exactly once, as a subclass of ``Op``.

An op owns its type rule (``infer``), its numpy reference implementation (``ref``), its
vector-Jacobian rule (``vjp``) and, for elementwise ops, a scalar expression (``scalar``) that
the numpy reference, the kernel IR and every renderer use. Nothing about an op is written again
per target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from symk.errors import ArgumentError, SymkError

if TYPE_CHECKING:
    from symk.graph.node import Node
    from symk.graph.types import Type

REGISTRY: dict[str, Op] = {}


@dataclass(frozen=True)
class IndexMap:
    """An op whose output element ``i`` is an element of its input ``source`` (a kernel
    computes it with one load).  ``axes`` has one ``(out_axis, start, step)`` per axis of the
    source: with ``scatter`` False, the source is read at ``start + step * i[out_axis]`` on
    that axis (``out_axis`` None: at ``start``); with ``scatter`` True (steps are 1), the
    output is the source at ``i[out_axis] - start`` where that lies in ``[0, extent)`` on
    every axis with an extent (``extents``: static, -1 for an axis read whole) and
    ``i[a] == k`` for every ``(a, k)`` in ``pins``, else zero."""

    source: int
    axes: tuple[tuple[int | None, int, int], ...]
    scatter: bool = False
    extents: tuple[int, ...] = ()
    pins: tuple[tuple[int, int], ...] = ()


class Op:
    """Base of all ops.  Subclasses set ``name`` and override the rules they need."""

    name: ClassVar[str] = ""
    #: names of the attributes the op accepts (checked when a node is built)
    attr_names: ClassVar[tuple[str, ...]] = ()
    #: number of inputs (None: variadic)
    arity: ClassVar[int | None] = None
    #: True for leaves whose value comes from outside (placeholder, variable, constant)
    is_leaf: ClassVar[bool] = False
    #: True for ops that draw random numbers (their reference takes a numpy Generator)
    is_random: ClassVar[bool] = False
    #: elementwise ops broadcast their inputs and have a scalar expression
    elementwise: ClassVar[bool] = False
    #: True for an elementwise op whose output shape is not the broadcast of its inputs'
    #: shapes alone, as an attribute joins that broadcast (broadcast_to's static ``shape``)
    broadcast_attr: ClassVar[bool] = False
    #: reductions (one reduction per fused kernel)
    reduction: ClassVar[bool] = False
    #: reductions whose partial results combine elementwise: how (``sum``, ``prod``, ``max``,
    #: ``min``, ``any``, ``all``; ``mean`` combines as ``sum``); None for other ops
    combine: ClassVar[str | None] = None
    #: ops that are extern calls and fusion barriers (matmul, gather, scan, ...)
    extern: ClassVar[bool] = False
    #: True when no gradient flows through the op (comparisons, argmax, shape_of, ...)
    nondifferentiable: ClassVar[bool] = False
    #: True when computing the value does something besides (prints, talks to other
    #: processes): the op runs at every call, never at compile time (no constant folding)
    side_effect: ClassVar[bool] = False
    #: True when the value depends on the inputs' shapes only, never on their data
    #: (shape_of, count): runtimes compute it once per input shape
    shape_only: ClassVar[bool] = False
    #: True for reductions with no value over zero elements (max, min, argmax, argmin):
    #: reducing an empty axis is an error (their type rule rejects a static one, and a native
    #: kernel checks a run-time one, as it would otherwise return its start value)
    needs_elements: ClassVar[bool] = False
    #: True when f(a, b) == f(b, a) (binary ops; rewrite patterns match either order)
    commutative: ClassVar[bool] = False
    #: True for matrix products (einsum, gemm), which runtimes hand to BLAS
    matrix_product: ClassVar[bool] = False
    #: True when the value is the input's data in another shape (reshape, expand_dims,
    #: squeeze): the schedule makes it a view step, a runtime copies an address
    reshapes: ClassVar[bool] = False
    #: True when ``ref`` may return its first input or a view of it (reshape, transpose,
    #: getitem, ...): a runtime that writes a buffer in place checks such readers
    may_alias: ClassVar[bool] = False
    #: True when the op reads its inputs from one flat buffer it packs them into
    #: (``allreduce_group``, ``allreduce``): a runtime may have their producers write them there
    packs_inputs: ClassVar[bool] = False
    #: True when ``ref`` takes arrays of any array module (CuPy's too) and returns arrays
    #: of the same module: a device runs it on its own arrays (collectives, on NCCL)
    any_array: ClassVar[bool] = False

    def index_map(self, node: Node) -> IndexMap | None:
        """How a fused kernel computes ``node`` by reading one input at other indices (a
        static slice and its gradient), or None (the op is not such a read)."""
        return None

    def check_attrs(self, attrs: dict[str, Any]) -> None:
        unknown = set(attrs) - set(self.attr_names)
        if unknown:
            raise ArgumentError(f"op '{self.name}' got unknown argument(s) {sorted(unknown)}")

    def infer(self, inputs: Sequence[Type], **attrs: Any) -> Type:
        raise SymkError(f"internal error: op '{self.name}' defines no type rule")

    def ref(self, *args: np.ndarray, **attrs: Any) -> np.ndarray:
        """Numpy reference implementation: the definition of the op's semantics."""
        raise SymkError(f"internal error: op '{self.name}' defines no reference implementation")

    def row_axis(self, node: Node, axes: Sequence[int | None]) -> int | None:
        """Where a batch's rows go through the op.  ``axes`` gives, per input, the axis
        holding the rows (None: the input is the same for every row); the result is the
        output's row axis when each output row depends only on the same row of the inputs,
        else None (the default: the op does not say, so it keeps the rows together)."""
        return None

    def vjp(self, node: Node, g: Node) -> Sequence[Node | None]:
        """Vector-Jacobian product: the gradient w.r.t. each input given ``g`` w.r.t. output."""
        if self.nondifferentiable:
            return [None] * len(node.inputs)
        from symk.errors import SymkError

        raise SymkError(f"op '{self.name}' is not differentiable (no gradient rule)")

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: instantiate the op and add it to the registry."""
    assert cls.name and cls.name not in REGISTRY, cls.name
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ArgumentError(f"unknown op '{name}'") from None


def all_ops() -> dict[str, Op]:
    import symk.graph.ops  # noqa: F401  (registers every op)

    return dict(REGISTRY)

