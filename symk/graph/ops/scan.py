"""The ``scan`` op: a loop over the leading (time) axis whose body is an inner graph.

A scan node's inputs are ``[*sequences, *initial_carries, *constants]``.  Its ``body``
(:class:`ScanBody`) holds placeholders for one time slice of each sequence, for the carries and
for the constants (loop-invariant values captured from outside, e.g. the weights of a Keras
cell), and the nodes computing the step's outputs and new carries.  Step ``t`` (visited
``T-1 .. 0`` when ``reverse``) computes ``(outs_t, carries) = body(seqs[t], carries, consts)``.

One loop has several results; each is its own node, differing only in ``result``:
``("seq", i)`` the outputs ``i`` stacked over time (index ``t`` holds step ``t``), ``("last",
j)`` the final carry ``j``, ``("carries", j)`` carry ``j`` after each step, stacked.  Nodes
of one loop share inputs and body, so executors run the loop once for all of them
(:meth:`Scan.group_key`, :func:`run_scan`).

The gradient is backpropagation through time: a reverse scan whose body is the vector-Jacobian
product of the step (built with :func:`symk.graph.grad.gradients`, recomputing the step from
the carry trajectory of the forward loop), carrying the carries' adjoints and accumulating the
constants' gradients.  The forward body also outputs its residuals, the sums its per-step
matrix products end in (:func:`saved_products`); the backward loop reads them stacked
instead of recomputing the products.  :func:`build_scan` makes a scan from a traced step,
capturing every loop-invariant value as a constant input (so no invariant work runs per
step).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symk.errors import ShapeError, SymkError
from symk.graph import build as gb
from symk.graph.node import Node, apply, creation_line, fresh_uid, substitute, toposort
from symk.graph.op import Op, register
from symk.graph.serialize import dump_nodes, load_nodes, register_codec
from symk.graph.tensor import storage_of
from symk.graph.types import Type, is_float

SEQ, LAST, CARRIES = "seq", "last", "carries"
#: the ops worth one call over all time steps, and worth keeping instead of recomputing
PRODUCTS = ("einsum", "conv")


class ScanBody:
    """The inner graph of a scan (immutable; hashed by its nodes, i.e. by structure)."""

    __slots__ = ("seqs", "carries", "consts", "outs", "new_carries", "order", "_hash",
                 "__weakref__")

    def __init__(self, seqs: Sequence[Node], carries: Sequence[Node], consts: Sequence[Node],
                 outs: Sequence[Node], new_carries: Sequence[Node]) -> None:
        self.seqs, self.carries, self.consts = tuple(seqs), tuple(carries), tuple(consts)
        self.outs, self.new_carries = tuple(outs), tuple(new_carries)
        if len(self.carries) != len(self.new_carries):
            raise SymkError(f"scan body: {len(self.carries)} carries but "
                            f"{len(self.new_carries)} new carries")
        for k, (c, nc) in enumerate(zip(self.carries, self.new_carries)):
            if c.dtype != nc.dtype or not compatible(c.shape, nc.shape):
                raise ShapeError(f"the step function's new state {k} is {nc.type}, but the "
                                 f"state it replaces is {c.type}: states must keep their type")
        for p in self.seqs + self.carries + self.consts:
            if p.op.name != "placeholder":
                raise SymkError("internal error: scan body inputs must be placeholders")
        #: the body's nodes in evaluation order
        self.order = toposort(list(self.outs) + list(self.new_carries))
        self._hash = hash((self.seqs, self.carries, self.consts, self.outs, self.new_carries))

    def freeze_key(self) -> tuple:
        return (self.seqs, self.carries, self.consts, self.outs, self.new_carries)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScanBody) and self.freeze_key() == other.freeze_key()

    def __repr__(self) -> str:
        return (f"body<{len(self.seqs)} seq, {len(self.carries)} carry, {len(self.consts)} "
                f"const, {len(self.outs)} out, {len(self.order)} nodes>")


# ---------------------------------------------------------------- JSON encoding (plan cache)

#: body -> {digest_arrays: encoding} (bodies are immutable; a body shared by several scan
#: nodes, and nested in their gradients, is encoded once)
_encoded: weakref.WeakKeyDictionary[ScanBody, dict[bool, Any]] = weakref.WeakKeyDictionary()
#: sha256 of a full encoding -> the body it encodes: every scan node of one loop decodes to the
#: same ScanBody (one loop run, one compiled body), and so does a body encoded in this process
_decoded: weakref.WeakValueDictionary[str, ScanBody] = weakref.WeakValueDictionary()
_codec_lock = threading.Lock()


def _content_id(j: Any) -> str:
    return hashlib.sha256(json.dumps(j, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def encode_body(body: ScanBody, digest_arrays: bool = False) -> dict[str, Any]:
    """A name-independent JSON encoding of ``body``: the types of its placeholders (by
    position: sequences, carries, constants), its inner graph (``dump_nodes``, placeholders as
    leaf references) and the positions of its outputs and new carries.  Raises
    ``Unencodable`` for a leaf that is not one of the body's placeholders."""
    with _codec_lock:
        got = _encoded.get(body, {}).get(digest_arrays)
    if got is not None:
        return got
    ins = body.seqs + body.carries + body.consts
    nodes, pos = dump_nodes(list(body.outs) + list(body.new_carries),
                            {id(p): k for k, p in enumerate(ins)}, digest_arrays)
    j = {"n": [len(body.seqs), len(body.carries), len(body.consts)],
         "ins": [[p.dtype, list(p.shape)] for p in ins], "nodes": nodes,
         "outs": [pos[id(n)] for n in body.outs],
         "new": [pos[id(n)] for n in body.new_carries]}
    with _codec_lock:
        _encoded.setdefault(body, {})[digest_arrays] = j
        if not digest_arrays:
            _decoded.setdefault(_content_id(j), body)
    return j


def decode_body(j: dict[str, Any]) -> ScanBody:
    """The ScanBody of an ``encode_body`` encoding (fresh placeholders; the same object for
    the same encoding while it is alive)."""
    key = _content_id(j)
    with _codec_lock:
        body = _decoded.get(key)
    if body is not None:
        return body
    ns, nc, _ = j["n"]
    ins = [apply("placeholder", [], dtype=dt, shape=tuple(shape), uid=fresh_uid())
           for dt, shape in j["ins"]]
    nodes = load_nodes(j["nodes"], ins)
    made = ScanBody(ins[:ns], ins[ns:ns + nc], ins[ns + nc:], [nodes[i] for i in j["outs"]],
                    [nodes[i] for i in j["new"]])
    with _codec_lock:
        body = _decoded.setdefault(key, made)
    return body


register_codec(ScanBody, "scan", encode_body, decode_body)


def compatible(a: Sequence[int | None], b: Sequence[int | None]) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def placeholder_like(x: Node | Type, shape: Sequence[int | None] | None = None) -> Node:
    t = x.type if isinstance(x, Node) else x
    return apply("placeholder", [], dtype=t.dtype, shape=tuple(t.shape if shape is None
                                                               else shape), uid=fresh_uid())


@register
class Scan(Op):
    name = "scan"
    extern = True
    attr_names = ("body", "reverse", "result")

    def infer(self, inputs, body, reverse=False, result=(SEQ, 0)):
        ns, nc, nk = len(body.seqs), len(body.carries), len(body.consts)
        if len(inputs) != ns + nc + nk:
            raise SymkError(f"scan takes {ns + nc + nk} inputs, got {len(inputs)}")
        if ns == 0:
            raise SymkError("scan needs at least one sequence to iterate over")
        steps: int | None = None
        for k, (t, p) in enumerate(zip(inputs[:ns], body.seqs)):
            if t.ndim < 1 or t.dtype != p.dtype or not compatible(t.shape[1:], p.shape):
                raise ShapeError(f"scan sequence {k} is {t}, expected {p.dtype} with shape "
                                 f"(time, {', '.join(map(str, p.shape))})")
            if t.shape[0] is not None:
                if steps is not None and steps != t.shape[0]:
                    raise ShapeError(f"scan sequences have different lengths ({steps} and "
                                     f"{t.shape[0]})")
                steps = t.shape[0]
        for what, ts, ps in (("initial state", inputs[ns:ns + nc], body.carries),
                             ("constant", inputs[ns + nc:], body.consts)):
            for k, (t, p) in enumerate(zip(ts, ps)):
                if t.dtype != p.dtype or not compatible(t.shape, p.shape):
                    raise ShapeError(f"scan {what} {k} is {t}, expected {p.type}")
        kind, i = result
        if kind == SEQ and 0 <= i < len(body.outs):
            return Type(body.outs[i].dtype, (steps,) + body.outs[i].shape)
        if kind == LAST and 0 <= i < nc:
            return body.new_carries[i].type
        if kind == CARRIES and 0 <= i < nc:
            return Type(body.new_carries[i].dtype, (steps,) + body.new_carries[i].shape)
        raise SymkError(f"scan: bad result {result!r}")

    def group_key(self, node: Node) -> tuple:
        """Nodes with equal keys are results of one loop (executors run it once)."""
        return (node.op.name, node.inputs, node.attrs["body"], node.attrs["reverse"])

    def ref(self, *args: np.ndarray, body: ScanBody, reverse: bool = False,
            result: tuple = (SEQ, 0)) -> np.ndarray:
        return run_scan(body, reverse, args, [result])[0]

    def ref_group(self, nodes: Sequence[Node], *args: np.ndarray) -> list[np.ndarray]:
        a = nodes[0].attrs
        return run_scan(a["body"], a["reverse"], args, [n.attrs["result"] for n in nodes])

    def vjp(self, node: Node, g: Node) -> list[Node | None]:
        return scan_vjp(node, g)


# ---------------------------------------------------------------- reference evaluation

def eval_body(body: ScanBody, feeds: dict[int, Any],
              rng: np.random.Generator | None = None) -> dict[int, Any]:
    """Values of all body nodes given the placeholders' values (numpy references)."""
    vals = dict(feeds)
    for n in body.order:
        if id(n) in vals:
            continue
        op = n.op
        if op.name == "constant":
            vals[id(n)] = n.attrs["value"].array
        elif op.name == "variable":
            vals[id(n)] = storage_of(n).value
        elif op.is_leaf:
            raise SymkError("internal error: an unbound placeholder inside a scan body")
        else:
            args = [vals[id(i)] for i in n.inputs]
            if op.is_random:
                v = op.ref(rng or np.random.default_rng(n.attrs["seed"]), *args, **n.attrs)
            else:
                v = op.ref(*args, **n.attrs)
            vals[id(n)] = np.asarray(v)
    return vals


def time_steps(body: ScanBody, args: Sequence[np.ndarray]) -> int:
    lengths = {int(np.shape(a)[0]) for a in args[:len(body.seqs)]}
    if len(lengths) != 1:
        raise ShapeError(f"scan sequences have different lengths {sorted(lengths)} at run time")
    return lengths.pop()


def run_scan(body: ScanBody, reverse: bool, args: Sequence[np.ndarray],
             results: Sequence[tuple]) -> list[np.ndarray]:
    """The numpy reference: run the body once per step, return the requested results."""
    ns, nc = len(body.seqs), len(body.carries)
    seqs, carries, consts = args[:ns], list(args[ns:ns + nc]), args[ns + nc:]
    steps = time_steps(body, args)
    want_seq = {i for k, i in results if k == SEQ}
    want_traj = {i for k, i in results if k == CARRIES}
    stacked: dict[tuple, list] = {(SEQ, i): [None] * steps for i in want_seq}
    stacked.update({(CARRIES, i): [None] * steps for i in want_traj})
    rng = np.random.default_rng(0)
    base = {id(p): v for p, v in zip(body.consts, consts)}
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        feeds = dict(base)
        feeds.update({id(p): s[t] for p, s in zip(body.seqs, seqs)})
        feeds.update({id(p): c for p, c in zip(body.carries, carries)})
        vals = eval_body(body, feeds, rng)
        carries = [_as(vals[id(n)], n) for n in body.new_carries]
        for i in want_seq:
            stacked[(SEQ, i)][t] = _as(vals[id(body.outs[i])], body.outs[i])
        for i in want_traj:
            stacked[(CARRIES, i)][t] = carries[i]
    out = []
    for r in results:
        kind, i = r
        if kind == LAST:
            out.append(np.array(carries[i], copy=True))
        else:
            node = body.outs[i] if kind == SEQ else body.new_carries[i]
            out.append(_stack(stacked[tuple(r)], node, args[0]))
    return out


def _as(v: Any, n: Node) -> np.ndarray:
    v = np.asarray(v)
    return v if v.dtype == n.dtype else v.astype(n.dtype)


def _stack(parts: list, n: Node, seq0: np.ndarray) -> np.ndarray:
    if parts:
        return np.stack(parts)
    shape = tuple(0 if d is None else d for d in n.shape)
    return np.zeros((0,) + shape, n.dtype)


# ---------------------------------------------------------------- building scans

class Scanned:
    """What :func:`build_scan` returns: the scan's inputs and attributes, and ``result(r)``
    building the node of one result."""

    def __init__(self, inputs: list[Node], body: ScanBody, reverse: bool) -> None:
        self.inputs, self.body, self.reverse = inputs, body, reverse

    def result(self, kind: str, i: int) -> Node:
        return apply("scan", self.inputs, body=self.body, reverse=self.reverse,
                     result=(kind, int(i)))


def build_scan(seqs: Sequence[tuple[Node, Node]], carries: Sequence[tuple[Node, Node]],
               outs: Sequence[Node], new_carries: Sequence[Node], reverse: bool = False,
               bindings: Mapping[int, Node] | None = None) -> Scanned:
    """A scan from a traced step.

    ``seqs``: (outer sequence, its per-step placeholder); ``carries``: (initial value, its
    placeholder); ``outs``/``new_carries``: the step's results.  Every node of the step that
    depends on no per-step placeholder (a captured variable, a Keras constant, a weight
    transposed for a gradient, ...) becomes a constant input computed once outside the loop;
    other placeholders found there are replaced by their outer value from ``bindings``.
    Constant leaves stay inside (they are immediates in generated code).
    """
    bindings = dict(bindings or {})
    roots = merge_sliced_products(list(outs) + list(new_carries))
    seqs, roots = hoist_projections(seqs, carries, roots, bindings)
    outs, new_carries = roots[:len(outs)], roots[len(outs):]
    order = toposort(roots)
    varying = _reaching(order, {id(p) for _, p in seqs} | {id(p) for _, p in carries})
    frontier: dict[int, Node] = {}
    for n in order:
        if id(n) in varying:
            for i in n.inputs:
                if id(i) not in varying and i.op.name != "constant":
                    frontier.setdefault(id(i), i)
    for r in roots:
        if id(r) not in varying and r.op.name != "constant":
            frontier.setdefault(id(r), r)
    inner = list(frontier.values())
    outer = substitute(inner, bindings) if bindings else inner
    # one constant input per distinct outer value
    by_outer: dict[int, Node] = {}
    mapping: dict[int, Node] = {}
    consts: list[Node] = []
    outer_consts: list[Node] = []
    for f, o in zip(inner, outer):
        p = by_outer.get(id(o))
        if p is None:
            p = by_outer[id(o)] = placeholder_like(f)
            consts.append(p)
            outer_consts.append(o)
        mapping[id(f)] = p
    new_roots = substitute(roots, mapping) if mapping else roots
    new_roots = _untranspose_consts(new_roots, consts, outer_consts)
    # sequences the body no longer reads (their products were hoisted) are dropped; one
    # sequence always stays, for the number of steps
    used = {id(n) for n in toposort(new_roots)}
    seqs = [sp for sp in seqs if id(sp[1]) in used] or list(seqs[:1])
    kept = [k for k, p in enumerate(consts) if id(p) in used]
    consts, outer_consts = [consts[k] for k in kept], [outer_consts[k] for k in kept]
    body_outs = list(new_roots[:len(outs)])
    have = {id(o) for o in new_roots}  # a new carry's values are its trajectory already
    for top in _product_sums(new_roots, [p for _, p in carries]):
        if id(top) not in have:  # a residual: stacked only when a gradient asks for it
            body_outs.append(top)
            have.add(id(top))
    body = ScanBody([p for _, p in seqs], [p for _, p in carries], consts,
                    body_outs, new_roots[len(outs):])
    inputs = [s for s, _ in seqs] + [c for c, _ in carries] + outer_consts
    return Scanned(inputs, body, reverse)


def _reaching(order: Sequence[Node], seeds: set[int]) -> set[int]:
    """The ids of ``seeds`` and of every node of ``order`` (topological) that reads one of
    them, directly or not."""
    out = set(seeds)
    for n in order:
        if id(n) not in out and any(id(i) in out for i in n.inputs):
            out.add(id(n))
    return out


def _time_letter(spec: str) -> str:
    """An einsum letter ``spec`` does not use, for a time axis added to it."""
    return next(c for c in "tsrqponmlkzyxwvu" if c not in spec)


def _product_sums(roots: Sequence[Node], carries: Sequence[Node]) -> list[Node]:
    """The residuals of a step: for each matrix product reading a carry (``h @ U``), the value
    its single-use chain of same-shaped sums ends in (``x_t + h @ U``; a ``gemm`` after the
    ``blas`` pass).  The loop outputs them (stacked only when asked), so backpropagation
    through time reads them instead of recomputing the products from the trajectory."""
    order = toposort(roots)
    on_carry = _reaching(order, {id(p) for p in carries})
    users: dict[int, list[Node]] = {}
    for n in order:
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    root_ids = {id(r) for r in roots}
    tops: list[Node] = []
    for n in order:
        if n.op.name not in PRODUCTS or id(n) not in on_carry or not is_float(n.dtype):
            continue
        top = n
        while id(top) not in root_ids and len(users.get(id(top), ())) == 1:
            u = users[id(top)][0]
            if u.op.name not in ("add", "sub") or u.shape != top.shape or u.dtype != top.dtype:
                break
            top = u
        tops.append(top)
    return tops


def saved_products(body: ScanBody) -> dict[int, int]:
    """id of each residual of ``body`` (see :func:`_product_sums`) -> its output index."""
    index = {id(o): k for k, o in enumerate(body.outs)}
    roots = list(body.outs) + list(body.new_carries)
    carried = {id(c) for c in body.new_carries}
    return {id(t): index[id(t)] for t in _product_sums(roots, body.carries)
            if id(t) in index and id(t) not in carried}


def _untranspose_consts(roots: list[Node], consts: list[Node], outer_consts: list[Node],
                        ) -> list[Node]:
    """Per-step matrix products reading a constant as a transposed right operand (``dz @ U.T``
    in a recurrent gradient) read a transposed copy made once outside the loop instead.

    ``einsum("ad,bd->ab", x, U) = einsum("ad,db->ab", x, transpose(U))``.  BLAS kernels are
    up to 2x slower with a transposed right operand at a recurrent step's sizes (OpenBLAS
    sgemm 32x256x64: 18.8 against 9.6 us); the copy costs one pass over ``U`` per call.
    ``consts``/``outer_consts`` gain the copies (the body's placeholders and their values)."""
    from symk.graph.ops.linalg import matmul2d_layout, parse_spec

    is_const = {id(p): k for k, p in enumerate(consts)}
    made: dict[int, Node] = {}
    memo: dict[int, Node] = {}
    for n in toposort(roots):
        args = [memo[id(i)] for i in n.inputs]
        layout = matmul2d_layout(n.attrs["spec"]) if n.op.name == "einsum" else None
        if layout is not None and len(args) == 2:
            ta, tb, swap = layout
            k = 0 if swap else 1  # the operand BLAS reads as the right one
            if ((not ta) if swap else tb) and id(args[k]) in is_const:
                p = args[k]
                q = made.get(id(p))
                if q is None:
                    q = made[id(p)] = placeholder_like(p, p.shape[::-1])
                    consts.append(q)
                    outer_consts.append(gb.transpose(outer_consts[is_const[id(p)]], (1, 0)))
                ins, out = parse_spec(n.attrs["spec"])
                ins[k] = ins[k][::-1]
                args[k] = q
                memo[id(n)] = apply("einsum", args, line=creation_line(n),
                                    spec=",".join(ins) + "->" + out)
                continue
        if any(x is not y for x, y in zip(args, n.inputs)):
            memo[id(n)] = apply(n.op, args, line=creation_line(n), **n.attrs)
        else:
            memo[id(n)] = n
    return [memo[id(r)] for r in roots]


def _last_axis_slice(k: Node) -> tuple[Node, int, int] | None:
    """(w, start, stop) when ``k`` is ``w[..., start:stop]`` (every other axis whole)."""
    from symk.graph.ops.shape import slice_axes

    if k.op.name != "getitem":
        return None
    w = k.inputs[0]
    m = slice_axes(k.attrs["spec"], w.shape)
    if m is None or len(m) != w.ndim or any(e[0] != "full" for e in m[:-1]):
        return None
    last = m[-1]
    if last[0] != "slice" or last[3] != 1:
        return None
    return w, last[2], last[2] + last[4]


def merge_sliced_products(roots: list[Node]) -> list[Node]:
    """Products of one input with slices of one weight that tile its last axis become one
    product with the whole weight, sliced after: ``conv(h, U[..., 0:F]), conv(h, U[..., F:2F]),
    ... = conv(h, U)[..., 0:F], ...`` (an LSTM/ConvLSTM cell's four gates: one convolution,
    one GEMM, with one im2col and four times the columns, instead of four).  The slices are
    loads inside the kernels that read them; gradients flow through them unchanged."""
    from symk.graph.ops.linalg import parse_spec

    groups: dict[tuple, list[tuple[Node, int, int]]] = {}
    weights: dict[tuple, Node] = {}
    for n in toposort(roots):
        if n.op.name not in PRODUCTS or len(n.inputs) != 2:
            continue
        found = _last_axis_slice(n.inputs[1])
        if found is None:
            continue
        w, a, b = found
        if n.op.name == "conv":
            if n.attrs["groups"] != 1:
                continue
            axis = n.ndim - 1
        else:
            ins, out = parse_spec(n.attrs["spec"])
            letter = ins[1][-1]
            if letter in ins[0] or letter not in out:
                continue
            axis = out.index(letter)
        key = (n.op.name, id(n.inputs[0]), id(w), axis,
               tuple(sorted((k, repr(v)) for k, v in n.attrs.items())))
        groups.setdefault(key, []).append((n, a, b))
        weights[key] = w
    mapping: dict[int, Node] = {}
    for key, members in groups.items():
        w, axis = weights[key], key[3]
        spans = sorted((a, b) for _, a, b in members)
        tiles = spans[0][0] == 0 and spans[-1][1] == w.shape[-1] and all(
            p[1] == q[0] for p, q in zip(spans, spans[1:]))
        if len(members) < 2 or not tiles:
            continue
        first = members[0][0]
        whole = apply(first.op, [first.inputs[0], w], line=creation_line(first), **first.attrs)
        for n, a, b in members:
            spec = tuple(("s", a, b, None) if ax == axis else ("s", None, None, None)
                         for ax in range(n.ndim))
            mapping[id(n)] = apply("getitem", [whole], line=creation_line(n), spec=spec)
    return substitute(roots, mapping) if mapping else roots


def hoist_projections(seqs: Sequence[tuple[Node, Node]], carries: Sequence[tuple[Node, Node]],
                      roots: list[Node], bindings: Mapping[int, Node]
                      ) -> tuple[list[tuple[Node, Node]], list[Node]]:
    """Move per-step work that depends on the sequences only and contains a matrix product
    (``x_t @ W + b``) out of the loop: it becomes one product over all steps (one GEMM instead
    of one per step) and a new sequence input.  Only einsums, convolutions (time merged into
    the batch) and elementwise ops are vectorized over the time axis; anything else stays in
    the body."""
    seq_ids = {id(p): s for s, p in seqs}
    order = toposort(roots)
    on_carry = _reaching(order, {id(p) for _, p in carries})
    on_seq = _reaching(order, set(seq_ids))
    memo: dict[int, Node] = {}

    def outer(i: Node) -> Node:
        if id(i) not in memo:
            memo[id(i)] = substitute([i], dict(bindings))[0] if bindings else i
        return memo[id(i)]

    vec: dict[int, Node] = dict(seq_ids)
    gemm: dict[int, bool] = {k: False for k in seq_ids}
    for n in order:
        if id(n) in vec or id(n) not in on_seq or id(n) in on_carry:
            continue
        if any(id(i) in on_seq and id(i) not in vec for i in n.inputs):
            continue  # an input computed per step that could not be vectorized
        v = _vectorize(n, vec, outer)
        if v is not None:
            vec[id(n)] = v
            gemm[id(n)] = n.op.name in PRODUCTS
    # hoist the products read by the body; elementwise work after them stays in the body,
    # fused with the rest of the step (hoisting it would add a pass over all steps' values)
    users_outside: set[int] = {id(r) for r in roots}
    for n in order:
        if id(n) not in vec or n.op.name not in PRODUCTS:
            users_outside.update(id(i) for i in n.inputs)
    mapping: dict[int, Node] = {}
    new_seqs = list(seqs)
    for n in order:
        if id(n) in vec and gemm[id(n)] and id(n) not in seq_ids and id(n) in users_outside:
            p = placeholder_like(n)
            mapping[id(n)] = p
            new_seqs.append((vec[id(n)], p))
    if not mapping:
        return list(seqs), roots
    return new_seqs, substitute(roots, mapping)


def _vectorize(n: Node, vec: Mapping[int, Node], outer) -> Node | None:
    """``n`` computed for all steps at once (a leading time axis), or None."""
    try:
        if n.op.name == "conv" and id(n.inputs[0]) in vec and id(n.inputs[1]) not in vec:
            # conv(x_t, w) for all t: one convolution of the steps merged into the batch
            return unmerge_time(apply("conv", [merge_time(vec[id(n.inputs[0])]),
                                               outer(n.inputs[1])], **n.attrs),
                                vec[id(n.inputs[0])])
        if n.op.name == "einsum":
            from symk.graph.ops.linalg import parse_spec

            ins, out = parse_spec(n.attrs["spec"])
            t = _time_letter(n.attrs["spec"])
            letters = [t + lt if id(i) in vec else lt for lt, i in zip(ins, n.inputs)]
            args = [vec[id(i)] if id(i) in vec else outer(i) for i in n.inputs]
            return apply("einsum", args, spec=",".join(letters) + "->" + t + out)
        if n.op.elementwise:
            args = []
            for i in n.inputs:
                if id(i) in vec:
                    v = vec[id(i)]
                    for _ in range(n.ndim - i.ndim):
                        v = gb.expand_dims(v, 1)
                    args.append(v)
                else:
                    args.append(outer(i))
            return apply(n.op, args, **n.attrs)
    except SymkError:
        return None
    return None


def merge_time(v: Node) -> Node:
    """``(T, B, *rest)`` as ``(T * B, *rest)`` (``rest`` static)."""
    if v.ndim < 2 or None in v.shape[2:]:
        raise SymkError("merge_time: dims after the first two must be static")
    return gb.reshape(v, (-1, *v.shape[2:]))


def unmerge_time(y: Node, like: Node) -> Node:
    """``(T * B, *rest)`` back to ``(T, B, *rest)``, T and B taken from ``like``."""
    if None not in like.shape[:2]:
        return gb.reshape(y, (*like.shape[:2], *y.shape[1:]))
    if None in y.shape[1:]:
        raise SymkError("unmerge_time: dims after the first must be static")
    lead = apply("getitem", [gb.shape_of(like)], spec=(("s", None, 2, None),))
    rest = gb.const(np.asarray(y.shape[1:], np.int32))
    return apply("reshape", [y, gb.concatenate([lead, rest], 0)],
                 shape=(*like.shape[:2], *y.shape[1:]))


# ---------------------------------------------------------------- gradient

def _shift(traj: Node, init: Node, reverse: bool) -> Node:
    """The carry entering each step: ``init`` then the trajectory shifted by one step."""
    first = gb.expand_dims(init, 0)
    if reverse:
        rest = apply("getitem", [traj], spec=(("s", 1, None, None),))
        return gb.concatenate([rest, first], 0)
    rest = apply("getitem", [traj], spec=(("s", None, -1, None),))
    return gb.concatenate([first, rest], 0)


def scan_vjp(node: Node, g: Node) -> list[Node | None]:
    """Backpropagation through time for one result of a scan (see the module docstring)."""
    from symk.graph.grad import gradients

    body: ScanBody = node.attrs["body"]
    reverse: bool = node.attrs["reverse"]
    kind, idx = node.attrs["result"]
    ns, nc = len(body.seqs), len(body.carries)
    seq_in = list(node.inputs[:ns])
    init = list(node.inputs[ns:ns + nc])
    consts = list(node.inputs[ns + nc:])
    fwd = Scanned(list(node.inputs), body, reverse)
    # the step again, on fresh placeholders: inputs of step t and the constants
    bx = [placeholder_like(p) for p in body.seqs]
    bc = [placeholder_like(p) for p in body.carries]
    bk = [placeholder_like(p) for p in body.consts]
    sub = {id(p): q for p, q in zip(body.seqs + body.carries + body.consts, bx + bc + bk)}
    step = substitute(list(body.outs) + list(body.new_carries), sub)
    souts, snew = step[:len(body.outs)], step[len(body.outs):]
    fc = [j for j in range(nc) if is_float(body.carries[j].dtype)]
    adj = {j: placeholder_like(body.new_carries[j]) for j in fc}
    seqs: list[tuple[Node, Node]] = [(s, p) for s, p in zip(seq_in, bx)]
    seqs += [(_shift(fwd.result(CARRIES, j), init[j], reverse), bc[j]) for j in range(nc)]
    terms: list[Node] = []
    cot = {j: adj[j] for j in fc}
    if kind == SEQ:
        gy = placeholder_like(body.outs[idx])
        seqs.append((g, gy))
        terms.append(gb.sum(gb.mul(souts[idx], gy)))
    elif kind == CARRIES:
        gy = placeholder_like(body.new_carries[idx])
        seqs.append((g, gy))
        cot[idx] = gb.add(cot[idx], gy)
    for j in fc:
        terms.append(gb.sum(gb.mul(snew[j], cot[j])))
    cost = terms[0]
    for t in terms[1:]:
        cost = gb.add(cost, t)
    wx = [i for i in range(ns) if is_float(bx[i].dtype)]
    wk = [i for i in range(len(bk)) if is_float(bk[i].dtype)]
    grads = gradients(cost, [bx[i] for i in wx] + [bc[j] for j in fc] + [bk[i] for i in wk])
    gx, gc, gk = grads[:len(wx)], grads[len(wx):len(wx) + len(fc)], grads[len(wx) + len(fc):]
    back_outs = [_like(x, bx[i]) for x, i in zip(gx, wx)]
    saved_k = {id(souts[k]): k for k in saved_products(body).values()}
    pushed, extra = _pushed_out(gk, [bk[i] for i in wk], seqs, list(adj.values()), saved_k,
                                back_outs)
    keep = [k for k in range(len(wk)) if k not in pushed]
    acc = {k: placeholder_like(bk[wk[k]]) for k in keep}
    carries: list[tuple[Node, Node]] = []
    for j in fc:
        start = g if kind == LAST and j == idx else gb.zeros_like(init[j])
        carries.append((start, adj[j]))
    carries += [(gb.zeros_like(consts[wk[k]]), acc[k]) for k in keep]
    new_carries = [_like(x, c) for x, c in zip(gc, (body.carries[j] for j in fc))]
    new_carries += [gb.add(acc[k], _like(gk[k], acc[k])) for k in keep]
    # the step's products are read from the forward loop's residuals, not recomputed
    saved = {i: placeholder_like(souts[k]) for i, k in saved_k.items()}
    n_out = len(back_outs)
    roots = back_outs + extra + new_carries
    if saved:
        seqs += [(fwd.result(SEQ, k), saved[i]) for i, k in saved_k.items()]
        roots = substitute(roots, saved)
    binds = {id(q): c for q, c in zip(bk, consts)}
    back = build_scan(seqs, carries, roots[:n_out + len(extra)], roots[n_out + len(extra):],
                      reverse=not reverse, bindings=binds)
    out: list[Node | None] = [None] * len(node.inputs)
    for k, i in enumerate(wx):
        out[i] = back.result(SEQ, k)
    for k, j in enumerate(fc):
        out[ns + j] = back.result(LAST, k)
    for pos, k in enumerate(keep):
        out[ns + nc + wk[k]] = back.result(LAST, len(fc) + pos)
    for k, (p, srcs) in pushed.items():
        stacked: list[Node] = []
        for how, v in srcs:
            if how == "const":
                stacked.append(substitute([v], binds)[0])
            elif how == "seq":
                stacked.append(v if isinstance(v, Node) else fwd.result(SEQ, v))
            else:  # an output of the backward loop
                stacked.append(back.result(SEQ, v if how == "out" else n_out + v))
        out[ns + nc + wk[k]] = _over_steps(p, stacked, [how != "const" for how, _ in srcs])
    return out


#: the products a constant's gradient may be, to be summed over all steps at once
PUSHED_OUT = ("einsum", "conv_kernel_grad")


def _pushed_out(gk: Sequence[Node], targets: Sequence[Node], seqs: Sequence[tuple[Node, Node]],
                carried: Sequence[Node], saved_k: Mapping[int, int], outs: Sequence[Node],
                ) -> tuple[dict[int, tuple[Node, list]], list[Node]]:
    """The constants' gradients that need no accumulator in the backward loop.

    ``sum_t p(a_t, b_t) = p_T(A, B)``: a gradient that is one product (an einsum, a kernel
    gradient) of per-step values is, summed over the steps, one product over all steps (the
    time axis contracted, or merged into the batch) after the loop: one large GEMM instead of
    one small accumulating GEMM per step.  (A bias's gradient, ``sum_t sum(v_t, rows)``,
    stays accumulated in the loop: summed after it, the Keras LSTM at batch 32 trained ~25%
    slower in some processes, benchmarks/RESULTS.md, session 16.)  Returns ``{k: (product,
    sources)}``, a source per operand being ("const", node), ("seq", outer sequence or
    forward residual index), ("out", index of a loop output) or ("extra", index into the
    returned per-step values the loop must output)."""
    seq_outer = {id(p): s for s, p in seqs}
    vary = _reaching(toposort([x for x in gk if x is not None]),
                     set(seq_outer) | {id(c) for c in carried})
    out_at = {id(o): k for k, o in enumerate(outs)}
    pushed: dict[int, tuple[Node, list]] = {}
    extra: list[Node] = []
    for k, (x, t) in enumerate(zip(gk, targets)):
        if x is None or x.op.name not in PUSHED_OUT or x.dtype != t.dtype:
            continue
        steps = [id(i) in vary for i in x.inputs]
        if not any(steps) or (x.op.name == "conv_kernel_grad" and not (
                all(steps) and all(None not in i.shape[1:] for i in x.inputs))):
            continue
        srcs: list[tuple[str, Any]] = []
        for i, per_step in zip(x.inputs, steps):
            if not per_step:
                srcs.append(("const", i))
            elif id(i) in seq_outer:
                srcs.append(("seq", seq_outer[id(i)]))
            elif id(i) in saved_k:
                srcs.append(("seq", saved_k[id(i)]))
            elif id(i) in out_at:
                srcs.append(("out", out_at[id(i)]))
            else:
                srcs.append(("extra", len(extra)))
                out_at[id(i)] = len(outs) + len(extra)
                extra.append(i)
        pushed[k] = (x, srcs)
    return pushed, extra


def _over_steps(p: Node, stacked: Sequence[Node], per_step: Sequence[bool]) -> Node:
    """The product ``p`` of one step summed over all steps, from its operands stacked over
    time (those with ``per_step``) and its invariant ones."""
    if p.op.name == "conv_kernel_grad":
        return apply(p.op, [merge_time(v) for v in stacked], **p.attrs)
    from symk.graph.ops.linalg import parse_spec

    ins, out = parse_spec(p.attrs["spec"])
    t = _time_letter(p.attrs["spec"])
    letters = [t + lt if s else lt for lt, s in zip(ins, per_step)]
    return apply("einsum", list(stacked), spec=",".join(letters) + "->" + out)


def _like(x: Node, ref: Node) -> Node:
    """``x`` with ``ref``'s dtype (gradients of a step keep the values' dtypes)."""
    return gb.cast(x, ref.dtype) if x.dtype != ref.dtype else x
