"""Native implementations of extern ops on the CPU device.

``CPU_EXTERNS`` maps an op name to a factory ``(node) -> callable | None``: the callable takes
the node's input arrays and returns its value; ``None`` means "use the op's numpy reference".
Op families register their fast paths here from their own modules (``register_cpu_extern``),
which the cpu device's table entry imports (``Device.extern_modules``).

``einsum`` of two operands with no letter summed inside one operand only is a (batched) matrix
product: the operands are permuted (as views) into (batch, free, contracted) and
(batch, contracted, free) and handed to ``numpy.matmul``, i.e. BLAS GEMM, without einsum's
per-call path search.  Anything else falls back to the op's numpy reference.

Inside a compiled function's call every product first tells ``symk.runtime.threads`` its size,
which sets the BLAS thread count it runs with (one thread for small products).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from symk.errors import ShapeError
from symk.graph.node import Node
from symk.graph.ops.linalg import matmul2d_layout, parse_spec
from symk.runtime import threads
from symk.runtime.blas import NO_TRANS, ROW_MAJOR, gemm_fn, operand
from symk.runtime.cpu_pool import num_threads, on_pool

CpuExtern = Callable[..., np.ndarray]
_Factory = Callable[[Node], CpuExtern | None]
CPU_EXTERNS: dict[str, _Factory] = {}
_F = TypeVar("_F", bound=_Factory)


#: multi-result ops (a scan): op name -> factory ``(nodes, plan) -> callable | None`` (``plan``:
#: the CpuPlan that runs them); the callable takes the shared input arrays and returns the
#: value of each node
_GroupFactory = Callable[[list[Node], Any], Callable[..., list] | None]
CPU_GROUP_EXTERNS: dict[str, _GroupFactory] = {}
_GF = TypeVar("_GF", bound=_GroupFactory)


def register_cpu_group_extern(op_name: str) -> Callable[[_GF], _GF]:
    """Decorator: register a fast-path factory for a multi-result op (see CPU_GROUP_EXTERNS)."""
    def deco(factory: _GF) -> _GF:
        CPU_GROUP_EXTERNS[op_name] = factory
        return factory
    return deco


#: extern ops whose fast paths call BLAS (a plan holding one enters a thread scope and tunes
#: the BLAS threads of its calls; its kernels split across threads only when large)
CPU_BLAS_EXTERNS: set[str] = set()


def register_cpu_extern(op_name: str, blas: bool = False) -> Callable[[_F], _F]:
    """Decorator: register a fast-path factory for the extern op ``op_name`` (``blas``: the
    fast path calls BLAS)."""
    def deco(factory: _F) -> _F:
        CPU_EXTERNS[op_name] = factory
        if blas:
            CPU_BLAS_EXTERNS.add(op_name)
        return factory
    return deco


def matmul2d_plan(node: Node, alloc: Callable[[tuple[int, ...]], np.ndarray],
                  ) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """For a 2-D matrix-product einsum whose operands have its dtype: ``(a, b) -> a @ b``
    written into ``alloc(shape)`` on (transposed) views, with less Python per call than
    :func:`matmul_plan` (no casts, reshapes or shape arithmetic); else None."""
    layout = matmul2d_layout(node.attrs["spec"])
    if layout is None or len(node.inputs) != 2 or any(x.dtype != node.dtype
                                                      for x in node.inputs):
        return None
    ta, tb, swap = layout
    matmul = np.matmul
    cur, product = threads.cur, threads.product

    def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = _oriented(a, b, ta, tb, swap)
        m, n = a.shape[0], b.shape[1]
        if cur[0]:  # inside a thread scope: the BLAS thread count for this size
            flops = 2 * m * n * a.shape[1]
            if flops >= threads.MT_MIN_FLOPS:
                r = own_matmul(a, b, alloc)
                if r is not None:
                    return r
            product(flops)
        return matmul(a, b, out=alloc((m, n)))
    return mm


def _oriented(a: np.ndarray, b: np.ndarray, ta: bool, tb: bool, swap: bool,
              ) -> tuple[np.ndarray, np.ndarray]:
    """The stored operands of a ``matmul2d_layout`` product as (M, K) and (K, N) views whose
    product is the result."""
    if ta:
        a = a.T
    if tb:
        b = b.T
    return (b.T, a.T) if swap else (a, b)


def _blas_operand(x: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """(array, transpose flag, leading dimension, address) of a BLAS operand, copied to C
    order when it is not a strided matrix BLAS can read."""
    try:
        return (x, *operand(x))
    except ValueError:
        x = np.ascontiguousarray(x)
        return (x, *operand(x))


@register_cpu_extern("einsum", blas=True)
def matmul_plan(node: Node, matmul: Callable = np.matmul,
                alloc: Callable[[tuple[int, ...]], np.ndarray] | None = None,
                ) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """A fast implementation of an einsum node, or None when it is not a matrix product.
    With ``alloc`` (shape -> a free C-contiguous array of the node's dtype) the product is
    written into the array it returns instead of a fresh one."""
    (a_l, b_l), out = parse_spec(node.attrs["spec"])
    if len(node.inputs) != 2 or len(set(a_l)) != len(a_l) or len(set(b_l)) != len(b_l):
        return None
    sa, sb, so = set(a_l), set(b_l), set(out)
    if (sa - sb - so) or (sb - sa - so) or (so - sa - sb):
        return None
    batch = [c for c in out if c in sa and c in sb]
    contract = [c for c in a_l if c in sb and c not in so]
    free_a = [c for c in out if c in sa and c not in sb]
    free_b = [c for c in out if c in sb and c not in sa]
    perm_a = [a_l.index(c) for c in batch + free_a + contract]
    perm_b = [b_l.index(c) for c in batch + contract + free_b]
    # when the output wants B's free letters first, compute B^T A^T: the result is then
    # already in output order and contiguous (no transposed view for later kernels to copy)
    swap = out == "".join(batch + free_b + free_a) and free_a and free_b
    order = batch + (free_b + free_a if swap else free_a + free_b)
    perm_out = [order.index(c) for c in out]
    dtype = np.dtype(node.dtype)
    nb, nfa = len(batch), len(free_a)
    ident_out = perm_out == list(range(len(out)))

    # per operand-shape pair: the 2-D/3-D matmul shapes and the result's shape (numpy's own
    # shape arithmetic costs more than a small GEMM's call overhead when done per call)
    shapes: dict[tuple, tuple] = {}

    def plan_shapes(sa_: tuple, sb_: tuple) -> tuple:
        ta = tuple(sa_[p] for p in perm_a)
        tb = tuple(sb_[p] for p in perm_b)
        bs = ta[:nb]
        fa, k = ta[nb:nb + nfa], ta[nb + nfa:]
        fb = tb[nb + len(k):]
        ka = math.prod(k)
        a2 = bs + (math.prod(fa), ka)
        b2 = bs + (ka, math.prod(fb))
        shape = bs + fb + fa if swap else bs + fa + fb
        if len(shapes) >= 64:  # bounded: a function fed ever-new shapes keeps only recent ones
            shapes.clear()
        flops = 2 * math.prod(bs) * math.prod(fa) * ka * math.prod(fb)
        ent = shapes[(sa_, sb_)] = (a2, b2, shape, flops)
        return ent

    cur, product = threads.cur, threads.product
    own = matmul is np.matmul

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ent = shapes.get((a.shape, b.shape))
        a2s, b2s, shape, flops = ent if ent is not None else plan_shapes(a.shape, b.shape)
        a2 = a.astype(dtype, copy=False).transpose(perm_a).reshape(a2s)
        b2 = b.astype(dtype, copy=False).transpose(perm_b).reshape(b2s)
        x, y = (b2.swapaxes(-1, -2), a2.swapaxes(-1, -2)) if swap else (a2, b2)
        r = None
        if cur[0]:  # inside a thread scope: symk's shares, or the BLAS count for this size
            if own and flops >= threads.MT_MIN_FLOPS and len(a2s) == 2:
                r = own_matmul(x, y, alloc)
            if r is None:
                product(flops)
        if r is None:
            r = matmul(x, y) if alloc is None else \
                matmul(x, y, out=alloc(x.shape[:-1] + y.shape[-1:]))
        if r.shape != shape:
            r = r.reshape(shape)
        return r if ident_out else r.transpose(perm_out)

    return run


#: a big product is split by symk into shares of at least this many rows of C (else columns)
SPLIT_MIN_ROWS = 128
SPLIT_MIN_COLS = 64


def own_split(flops: int, m: int, n: int) -> tuple[int, int]:
    """(shares, axis of C) in which symk runs a product itself, or (1, 0): BLAS runs it, with
    the scope's thread count for its size.

    A big product (``threads.MT_MIN_FLOPS``) is split into row (else column) shares of C
    across symk's pool, one BLAS thread each, when the scope's budget has more than one
    thread.  BLAS's own worker threads then never start, so none spins on a core after the
    product while symk's threads work there: OpenBLAS's spin for ~0.1 s after each threaded
    call, and a loop split by rows or a kernel split across threads ran at half speed beside
    one."""
    p = threads.big[0]
    if flops < threads.MT_MIN_FLOPS or p < 2:
        return 1, 0
    if m >= p * SPLIT_MIN_ROWS:
        return p, 0
    if n >= p * SPLIT_MIN_COLS:
        return p, 1
    return 1, 0


def gemm_shares(call: Callable, ta: int, tb: int, m: int, n: int, k: int, alpha: float,
                a: int, lda: int, b: int, ldb: int, beta: float, c: int, ldc: int,
                itemsize: int, parts: int, axis: int) -> None:
    """``C = alpha * op(A) @ op(B) + beta * C`` by the CBLAS ``call`` (row-major, addresses)
    as ``parts`` shares of C's rows (``axis`` 0) or columns (1) on symk's pool, one BLAS
    thread each."""

    def share(lo: int, hi: int) -> None:
        if axis == 0:  # rows of op(A) and of C
            call(ROW_MAJOR, ta, tb, hi - lo, n, k, alpha,
                 a + lo * (lda if ta == NO_TRANS else 1) * itemsize, lda, b, ldb, beta,
                 c + lo * ldc * itemsize, ldc)
        else:  # columns of op(B) and of C
            call(ROW_MAJOR, ta, tb, m, hi - lo, k, alpha, a, lda,
                 b + lo * (1 if tb == NO_TRANS else ldb) * itemsize, ldb, beta,
                 c + lo * itemsize, ldc)
    size = m if axis == 0 else n
    bounds = [size * i // parts for i in range(parts + 1)]
    threads.single(lambda: on_pool(num_threads(), share, list(zip(bounds, bounds[1:]))))


def own_matmul(x: np.ndarray, y: np.ndarray,
               alloc: Callable[[tuple[int, ...]], np.ndarray] | None = None,
               ) -> np.ndarray | None:
    """``x @ y`` (2-D, one float dtype) run by symk in shares (:func:`own_split`) into
    ``alloc(shape)`` (C-contiguous) or a fresh array; None when it is not to be split (or
    there is no CBLAS): the caller runs it."""
    m, k = x.shape
    n = y.shape[1]
    parts, axis = own_split(2 * m * n * k, m, n)
    if parts < 2 or x.dtype != y.dtype or y.shape[0] != k:
        return None  # (sizes that disagree: numpy raises its error, BLAS would read past y)
    call = gemm_fn(x.dtype)
    if call is None:
        return None
    out = np.empty((m, n), x.dtype) if alloc is None else alloc((m, n))
    x, fa, lda, pa = _blas_operand(x)  # (x and y stay referenced during the call)
    y, fb, ldb, pb = _blas_operand(y)
    gemm_shares(call, fa, fb, m, n, k, 1.0, pa, lda, pb, ldb, 0.0, out.ctypes.data, n,
                x.itemsize, parts, axis)
    return out


def gemm_plan(node: Node, alloc: Callable[[tuple[int, ...]], np.ndarray] | None = None,
              inplace: bool = False, matmul: Callable = np.matmul,
              ) -> Callable[..., np.ndarray] | None:
    """``(c, a, b, alpha, beta) -> beta * c + alpha * (a @ b)`` for a ``gemm`` node: one CBLAS
    call adding the product into a copy of ``c`` in an ``alloc``ed buffer, or into ``c`` itself
    with ``inplace`` (the caller guarantees nothing reads ``c`` afterwards).  Without CBLAS (or
    with another ``matmul``, such as CuPy's) the product is scaled and added with array
    methods; so is a ``beta`` of 0 when ``c`` holds inf or nan (BLAS would not read ``c``)."""
    layout = matmul2d_layout(node.attrs["spec"])
    if layout is None:
        return None
    ta, tb, swap = layout
    dtype = np.dtype(node.dtype)
    cblas = gemm_fn(dtype) if matmul is np.matmul else None
    cur, product = threads.cur, threads.product

    def run(c: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: np.ndarray,
            beta: np.ndarray) -> np.ndarray:
        al, be = float(alpha), float(beta)
        if a.dtype != dtype or b.dtype != dtype:
            a, b = a.astype(dtype), b.astype(dtype)
        a, b = _oriented(a, b, ta, tb, swap)
        m, k = a.shape
        n = b.shape[1]
        if b.shape[0] != k or c.shape != (m, n):  # BLAS would index past a smaller operand
            raise ShapeError(f"matrix product of shapes {a.shape} and {b.shape} added into "
                             f"an accumulator of shape {c.shape}: the sizes do not agree")
        flops = 2 * m * n * k
        parts, axis = own_split(flops, m, n) if cur[0] and cblas is not None else (1, 0)
        if cur[0] and parts < 2:  # inside a thread scope: the BLAS thread count for this size
            product(flops)
        if cblas is not None and m and n and k and (be != 0.0 or math.isfinite(c.sum())):
            if inplace and c.dtype == dtype and c.flags.c_contiguous and c.flags.writeable \
                    and not np.may_share_memory(c, a) and not np.may_share_memory(c, b):
                out = c
            else:
                out = np.empty((m, n), dtype) if alloc is None else alloc((m, n))
                np.copyto(out, c)
            a, fa, lda, pa = _blas_operand(a)  # (a and b stay referenced during the call)
            b, fb, ldb, pb = _blas_operand(b)
            if parts > 1:
                gemm_shares(cblas, fa, fb, m, n, k, al, pa, lda, pb, ldb, be, out.ctypes.data,
                            n, dtype.itemsize, parts, axis)
            else:
                cblas(ROW_MAJOR, fa, fb, m, n, k, al, pa, lda, pb, ldb, be, out.ctypes.data, n)
            return out
        r = matmul(a, b) if alloc is None else matmul(a, b, out=alloc((m, n)))
        if al != 1.0:
            r *= al
        if be == 1.0:
            r += c
        else:  # (0 * inf and 0 * nan stay nan)
            r += be * c
        return r
    return run


@register_cpu_extern("gemm", blas=True)
def _gemm(node: Node) -> Callable | None:
    return gemm_plan(node)
