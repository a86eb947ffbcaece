"""Specialization: cheaper forms for common special cases (powers, means over static sizes) and
branches decided by constant conditions (the learning phase, once fed, is a constant)."""

from __future__ import annotations

import itertools

import numpy as np

from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.ops.leaves import const_array
from symk.graph.ops.linalg import parse_spec
from symk.graph.types import is_float
from symk.passes.canonicalize import same
from symk.passes.pattern import Bindings, Const, Pat, Var
from symk.passes.rewrite import RuleSet

X = Var("x")
rules = RuleSet()

#: one axis of a ``getitem`` spec: a slice ``("s", start, stop, step)``
SliceSpec = tuple[str, int | None, int | None, int | None]

# x ** 2 -> x * x  (computed in the result dtype: an int x with a float 2 must not overflow)
rules.rule("pow_two", Pat("pow", X, Const("c", 2)), "x ** 2 -> x * x")(
    lambda b, n: same(gb.square(gb.cast(b["x"], n.dtype)), n))
# x ** 1 -> x
rules.rule("pow_one", Pat("pow", X, Const("c", 1)), "x ** 1 -> x")(lambda b, n: same(b["x"], n))


@rules.rule("pow_half", Pat("pow", X, Const("c", 0.5)), "x ** 0.5 -> sqrt(x)")
def _ph(b: Bindings, n: Node) -> Node | None:
    # exact for numpy's power with a scalar 0.5 (sqrt: nan at -inf, -0 at -0); C's pow would
    # give +inf and +0 there, so a target rendering pow(x, 0.5) with libm must special-case it
    if not is_float(n.dtype) or b["c"].type.size() != 1:
        return None
    return same(gb.sqrt(gb.cast(b["x"], n.dtype)), n)


@rules.rule("mean_to_sum", Pat("mean", X), "mean(x, axes) -> sum(x, axes) * (1/n), n static")
def _mean(b: Bindings, n: Node) -> Node | None:
    x = b["x"]
    if not is_float(x.dtype):
        return None
    dims = [x.shape[a] for a in n.attrs["axes"]]
    if None in dims:
        return None
    count = int(np.prod(dims, dtype=np.int64))
    if count == 0:
        return None
    if x.dtype == "float16":  # numpy's mean accumulates float16 in float32
        s = apply("sum", [gb.cast(x, "float32")], axes=n.attrs["axes"],
                  keepdims=n.attrs["keepdims"])
        return gb.cast(gb.mul(s, gb.lift(1.0 / count, s)), "float16")
    s = apply("sum", [x], axes=n.attrs["axes"], keepdims=n.attrs["keepdims"])
    return gb.mul(s, gb.lift(1.0 / count, s))


@rules.rule("where_const", Pat("where", Var("c"), Var("a"), Var("b")),
            "where(True, a, b) -> a; where(False, a, b) -> b (scalar constant condition)")
def _wc(b: Bindings, n: Node) -> Node | None:
    c = const_array(b["c"])
    if c is None or c.size != 1:
        return None
    return same(b["a"] if bool(c.reshape(())) else b["b"], n)


def _free_letter(used: str) -> str:
    return next(c for c in "xyzuvwpqrs" if c not in used)


def _flat(dims: tuple) -> tuple[int, ...] | None:
    """A reshape target for ``dims`` (at most one unknown dim, as -1), else None."""
    if sum(d is None for d in dims) > 1:
        return None
    return tuple(-1 if d is None else d for d in dims)


@rules.rule("einsum_rows", Pat("einsum", Var("a"), Var("b")),
            "einsum('FK,KM->FM', A, B) -> reshape(reshape(A, (-1, K)) @ B, F + M): "
            "a product over the last axis of A with a matrix is one 2-D product")
def _einsum_rows(b: Bindings, n: Node) -> Node | None:
    (la, lb), out = parse_spec(n.attrs["spec"])
    a, m = b["a"], b["b"]
    if len(la) < 3 or len(lb) != 2 or len(set(la + lb)) != len(la) + 1:
        return None
    k, free = la[-1], la[:-1]
    if k not in lb or out != free + lb.replace(k, ""):
        return None
    kdim, ndim = a.shape[-1], m.shape[1 - lb.index(k)]
    kdim = m.shape[lb.index(k)] if kdim is None else kdim
    target = _flat(a.shape[:-1])
    if kdim is None or ndim is None or target is None or kdim == 0:
        return None  # (with K = 0, the -1 of reshape(A, (-1, K)) would be ambiguous)
    x = _free_letter(lb)
    flat = gb.einsum(f"{x}{k},{lb}->{x}{out[-1]}", [gb.reshape(a, (-1, kdim)), m])
    return same(gb.reshape(flat, target + (ndim,)), n)


@rules.rule("einsum_sum_rows", Pat("einsum", Var("a"), Var("b")),
            "einsum('SI,SJ->IJ', A, B) -> reshape(A, (-1, I))^T @ reshape(B, (-1, J)): "
            "a product summed over shared leading axes is one 2-D product")
def _einsum_sum_rows(b: Bindings, n: Node) -> Node | None:
    (la, lb), out = parse_spec(n.attrs["spec"])
    a, c = b["a"], b["b"]
    if len(la) != len(lb) or len(la) < 3 or la[:-1] != lb[:-1] or la[-1] == lb[-1]:
        return None
    i, j = la[-1], lb[-1]
    if out not in (i + j, j + i) or len(set(la + lb)) != len(la) + 1:
        return None
    lead_a, lead_b = a.shape[:-1], c.shape[:-1]
    # the leading axes must agree at run time iff their products do: static and equal, but
    # for one unknown axis at the same place in both
    if sum(d is None for d in lead_a) > 1 or any(
            (d is None) != (e is None) or (d is not None and d != e)
            for d, e in zip(lead_a, lead_b)):
        return None
    if a.shape[-1] is None or c.shape[-1] is None or 0 in (a.shape[-1], c.shape[-1]):
        return None  # (an empty I or J would make the -1 of the reshapes ambiguous)
    x = _free_letter(i + j)
    flat = gb.einsum(f"{x}{i},{x}{j}->{out}", [gb.reshape(a, (-1, a.shape[-1])),
                                                 gb.reshape(c, (-1, c.shape[-1]))])
    return same(flat, n)


def _tiles(x: Node, n: Node) -> tuple[tuple[int, ...], list[int], tuple[int, ...]] | None:
    """For pooling ``n`` whose windows tile its input ``x`` exactly (strides equal to the
    window, static spatial dims divisible by it, a static channel dim): the reshape target
    ``(-1, H1/p1, p1, H2/p2, p2, ..., C)``, the window axes of that shape, and the pooled
    target ``(-1, H1/p1, 1, H2/p2, 1, ..., C)``; else None (no padding can occur then)."""
    pool, strides = n.attrs["pool_size"], n.attrs["strides"]
    spatial, chans = x.shape[1:-1], x.shape[-1]
    if tuple(pool) != tuple(strides) or chans is None or any(
            d is None or d % p for d, p in zip(spatial, pool)):
        return None
    if chans == 0 or 0 in spatial:  # (-1 in the target would be ambiguous: 0 elements)
        return None
    target: list[int] = [-1]
    pooled: list[int] = [-1]
    for d, p in zip(spatial, pool):
        target += [d // p, p]
        pooled += [d // p, 1]
    return tuple(target + [chans]), [2 + 2 * s for s in range(len(pool))], \
        tuple(pooled + [chans])


@rules.rule("pool_tiles", Pat("pool", X),
            "pool(x) with windows tiling x -> max/mean of reshape(x, (n, H/p, p, ..., C)) "
            "over the window axes (one reduction kernel)")
def _pool_tiles(b: Bindings, n: Node) -> Node | None:
    x = b["x"]
    t = _tiles(x, n)
    if t is None or (n.attrs["mode"] == "avg" and x.dtype != "float32" and
                     x.dtype != "float64"):
        return None
    target, axes, _ = t
    op = "max" if n.attrs["mode"] == "max" else "mean"
    return same(apply(op, [gb.reshape(x, target)], axes=tuple(axes), keepdims=False), n)


@rules.rule("max_pool_grad_tiles", Pat("max_pool_grad", X, Var("g")),
            "max_pool_grad(x, g) with windows tiling x -> where(window offset == first argmax "
            "of the window, g, 0) over reshape(x, (n, H/p, p, ..., C)): two kernels")
def _max_pool_grad_tiles(b: Bindings, n: Node) -> Node | None:
    x, g = b["x"], b["g"]
    t = _tiles(x, n)
    if t is None or None in x.shape[1:]:
        return None
    target, axes, pooled = t
    x6 = gb.reshape(x, target)
    rank = len(target)
    pool = n.attrs["pool_size"]
    # the window's first maximum, found as the reference finds it: a strictly greater value
    # moves it (so nan never does, and ties keep the first)
    best = idx = None
    for k, off in enumerate(itertools.product(*[range(p) for p in pool])):
        spec: list[SliceSpec] = [("s", None, None, None)] * rank
        for a, o in zip(axes, off):
            spec[a] = ("s", o, o + 1, 1)
        c = apply("getitem", [x6], spec=tuple(spec))
        if best is None:
            best, idx = c, gb.const(0, "int32")
            continue
        up = gb.gt(c, best)
        best = gb.maximum(best, c)
        idx = gb.where(up, gb.const(k, "int32"), idx)
    shape = [1] * rank
    for a, p in zip(axes, pool):
        shape[a] = p
    offsets = gb.const(np.arange(int(np.prod(pool)), dtype=np.int32).reshape(shape))
    hit = gb.eq(offsets, idx)
    dx = gb.where(hit, gb.reshape(g, pooled), gb.const(0, g.dtype))
    return same(gb.reshape(dx, tuple(-1 if d is None else d for d in x.shape)), n)


#: a convolution with at most this many (input channels x kernel taps) products per output
#: is computed as an elementwise sum of shifted input slices (one fused kernel)
CONV_TAPS_MAX = 27


@rules.rule("conv_taps", Pat("conv", X, Var("w")),
            "conv(x, w) with few channels x taps (a first layer on 1-3 channels) -> "
            "sum over taps t and channels c of x[:, t-shifted window, c:c+1] * w[t, c, :]")
def _conv_taps(b: Bindings, n: Node) -> Node | None:
    # y[n, o, f] = sum_{t, c} x[n, o * s + t * d, c] * w[t, c, f] (valid padding only: a
    # padded input would need loads outside x)
    from symk.graph.ops.conv_impl import resolve_pads

    x, w = b["x"], b["w"]
    a = n.attrs
    nsp = x.ndim - 2
    if a["groups"] != 1 or None in x.shape[1:] or None in w.shape or None in n.shape[1:] \
            or not is_float(n.dtype) or x.dtype != n.dtype or w.dtype != n.dtype:
        return None
    ksize, chans = w.shape[:nsp], w.shape[-2]
    if chans * int(np.prod(ksize)) > CONV_TAPS_MAX:
        return None
    pads = resolve_pads(x.shape[1:-1], ksize, a["strides"], a["dilation"], a["pads"])
    if any(lo or hi for lo, hi in pads):
        return None
    out = tuple(o for o in n.shape[1:-1] if o is not None)  # (all of them: checked above)
    total: Node | None = None
    for t in itertools.product(*[range(k) for k in ksize]):
        for c in range(chans):
            spec: list[SliceSpec] = [("s", None, None, None)]
            for ti, s, d, o in zip(t, a["strides"], a["dilation"], out):
                spec.append(("s", ti * d, ti * d + s * (o - 1) + 1, s))
            spec.append(("s", c, c + 1, None))
            xs = apply("getitem", [x], spec=tuple(spec))
            wt = apply("getitem", [w], spec=tuple(("i", ti) for ti in t) + (
                ("i", c), ("s", None, None, None)))
            term = gb.mul(xs, wt)
            total = term if total is None else gb.add(total, term)
    if total is None:  # 0 channels or a 0-sized kernel axis: no taps to sum
        return None
    return same(total, n)
