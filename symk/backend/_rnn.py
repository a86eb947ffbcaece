"""Loops of the Keras backend API: ``rnn`` (a scan, or unrolled), ``map_fn``, ``foldl`` and
``foldr``.

``rnn`` follows Keras 2.3.1's TensorFlow backend: inputs are ``(samples, time, ...)``; the step
function is traced once on symbolic per-step values (after one call on the first time slice,
so a cell's cached dropout masks are built outside the loop, as TensorFlow's backend does);
a mask keeps the previous output (zeros before the first step) and the previous states where
it is 0; with ``go_backwards`` time is reversed and the outputs come in processed order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symk.backend._core import api, as_count
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply, toposort
from symk.graph.ops.scan import LAST, SEQ, build_scan, placeholder_like
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import shape_str


def _check_callable(name: str, fn: Any) -> None:
    if not callable(fn):
        raise ArgumentError(f"{name} must be callable, got {type(fn).__name__}")


def _time_major(x: Node) -> Node:
    return gb.transpose(x, (1, 0) + tuple(range(2, x.ndim)))


def _step_at(seq: Node, t: int) -> Node:
    return apply("getitem", [seq], spec=(("i", t),))


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _call_step(step_function: Callable, x_t: Node, states: Sequence[Node],
               constants: Sequence[Any]) -> tuple[Tensor, list[Tensor], bool]:
    out, new_states = step_function(Tensor(x_t), [Tensor(s) for s in states] + list(constants))
    new_states = _as_list(new_states)
    if len(new_states) != len(states):
        raise ArgumentError(f"the step function returned {len(new_states)} new state(s) for "
                            f"{len(states)} state(s)")
    lp = bool(getattr(out, "_uses_learning_phase", False))
    return out, new_states, lp


def _mask_like(m: Node, x: Node) -> Node:
    """A (batch,) boolean mask with trailing unit dims to broadcast against ``x``."""
    for _ in range(x.ndim - m.ndim):
        m = gb.expand_dims(m, m.ndim)
    return m


def _masked(m: Node, new: Node, old: Node) -> Node:
    return gb.where(_mask_like(m, new), new, gb.cast(old, new.dtype))


def _zeros_for(out: Node, x_t0: Node) -> Node:
    """Zeros of the step output's type (its unknown leading dim is the batch size)."""
    if None not in out.shape:
        return gb.zeros_like(out)
    if out.ndim and None not in out.shape[1:] and x_t0.ndim and x_t0.shape[0] is None:
        shp = gb.shape_of(x_t0)
        batch = apply("getitem", [shp], spec=(("s", 0, 1, None),))
        rest = gb.const(np.asarray(out.shape[1:], dtype=shp.dtype))
        vec = gb.concatenate([batch, rest], 0) if out.ndim > 1 else batch
        return apply("fill", [vec], value=0, dtype=out.dtype, shape=out.shape)
    raise ShapeError(f"the step output {shape_str(out.shape)} has unknown dimensions other "
                     "than the batch size; a masked rnn needs its shape")


def _uses_learning_phase(roots: Sequence[Node]) -> bool:
    from symk.backend import _variables

    ph = _variables._learning_phase_ph  # noqa: SLF001
    if ph is None:
        return False
    return any(x is ph.node for x in toposort(roots))


@api
def rnn(step_function, inputs, initial_states, go_backwards=False, mask=None, constants=None,
        unroll=False, input_length=None):
    """Iterate ``step_function`` over the time axis (1) of ``inputs``; returns
    ``(last_output, outputs, new_states)``."""
    _check_callable("step_function", step_function)
    x = to_node(inputs)
    if x.ndim < 3:
        raise ShapeError(f"inputs must be at least 3D (samples, time, ...), got shape "
                         f"{shape_str(x.shape)}")
    states = [to_node(s) for s in _as_list(initial_states)]
    consts = _as_list(constants)
    xt = _time_major(x)
    mt = None
    if mask is not None:
        m = to_node(mask)
        if m.dtype != "bool":
            m = gb.cast(m, "bool")
        while m.ndim > 2 and m.shape[-1] == 1:
            m = gb.squeeze(m, m.ndim - 1)
        if m.ndim != 2:
            raise ShapeError(f"mask must have shape (samples, time), got {shape_str(m.shape)}")
        mt = _time_major(m)
    if go_backwards:
        xt = apply("reverse", [xt], axes=(0,))
        mt = None if mt is None else apply("reverse", [mt], axes=(0,))
    steps = xt.shape[0] if xt.shape[0] is not None else input_length
    if unroll:
        if steps is None:
            raise ShapeError("unroll=True needs a known number of time steps (a static time "
                             "dimension or input_length)")
        return _unrolled(step_function, xt, mt, states, consts, as_count(steps, "input_length"))
    return _scanned(step_function, xt, mt, states, consts)


def _unrolled(step_function, xt: Node, mt: Node | None, states: list[Node], consts: list,
              steps: int):
    outs: list[Node] = []
    lp = False
    prev: Node | None = None
    for t in range(steps):
        x_t = _step_at(xt, t)
        out, new, lp_t = _call_step(step_function, x_t, states, consts)
        lp |= lp_t
        o, new_n = to_node(out), [to_node(s) for s in new]
        if mt is not None:
            m_t = _step_at(mt, t)
            if prev is None:
                prev = _zeros_for(o, x_t)
            o = _masked(m_t, o, prev)
            new_n = [_masked(m_t, s_new, s_old) for s_new, s_old in zip(new_n, states)]
        prev = o
        outs.append(o)
        states = new_n
    if not outs:
        raise ShapeError("rnn over zero time steps")
    outputs = apply("concatenate", [gb.expand_dims(o, 1) for o in outs], axis=1)
    return _finish(outs[-1], outputs, states, lp)


def _scanned(step_function, xt: Node, mt: Node | None, states: list[Node], consts: list):
    # one call on the first slice, outside the loop: cells cache their dropout masks then
    x0 = _step_at(xt, 0)
    _call_step(step_function, x0, states, consts)
    x_ph = placeholder_like(x0)
    s_ph = [placeholder_like(s) for s in states]
    out, new, lp = _call_step(step_function, x_ph, s_ph, consts)
    o, new_n = to_node(out), [to_node(s) for s in new]
    new_n = [gb.cast(s, p.dtype) if s.dtype != p.dtype else s for s, p in zip(new_n, s_ph)]
    seqs = [(xt, x_ph)]
    carries = list(zip(states, s_ph))
    if mt is not None:
        m_ph = placeholder_like(_step_at(mt, 0))
        prev_ph = placeholder_like(o)
        o = _masked(m_ph, o, prev_ph)
        new_n = [_masked(m_ph, s_new, s_old) for s_new, s_old in zip(new_n, s_ph)]
        seqs.append((mt, m_ph))
        carries.append((_zeros_for(o, x0), prev_ph))
        new_n.append(o)
    sc = build_scan(seqs, carries, [o], new_n)
    outputs_tm = sc.result(SEQ, 0)
    last = _step_at(outputs_tm, -1)
    outputs = _time_major(outputs_tm)
    finals = [sc.result(LAST, j) for j in range(len(states))]
    return _finish(last, outputs, finals, lp)


def _finish(last: Node, outputs: Node, states: list[Node], lp: bool):
    last_t, outputs_t = Tensor(last), Tensor(outputs)
    if lp or _uses_learning_phase([last]):
        last_t._uses_learning_phase = True
        outputs_t._uses_learning_phase = True
    return last_t, outputs_t, [Tensor(s) for s in states]


def _elem_placeholder(e: Node) -> Node:
    if e.ndim < 1:
        raise ShapeError(f"elems must have at least one dimension, got a scalar {e.type}")
    return placeholder_like(_step_at(e, 0))


@api
def map_fn(fn, elems, name=None, dtype=None):
    """``fn`` applied to each element of ``elems`` along axis 0, results stacked."""
    _check_callable("fn", fn)
    e = to_node(elems)
    ph = _elem_placeholder(e)
    out = to_node(fn(Tensor(ph)))
    if dtype is not None:
        out = gb.cast(out, dtype)
    return Tensor(build_scan([(e, ph)], [], [out], []).result(SEQ, 0), name)


def _fold(fn, elems, initializer, reverse: bool, name):
    _check_callable("fn", fn)
    e = to_node(elems)
    if initializer is None:
        if e.ndim < 1 or e.shape[0] == 0:
            raise ShapeError("folding an empty sequence needs an initializer")
        acc0 = _step_at(e, -1 if reverse else 0)
        spec = ("s", None, -1, None) if reverse else ("s", 1, None, None)
        e = apply("getitem", [e], spec=(spec,))
    else:
        acc0 = to_node(initializer, e)
    ph = _elem_placeholder(e)
    acc = placeholder_like(acc0)
    out = to_node(fn(Tensor(acc), Tensor(ph)))
    if out.dtype != acc.dtype:
        out = gb.cast(out, acc.dtype)
    return Tensor(build_scan([(e, ph)], [(acc0, acc)], [], [out], reverse=reverse)
                  .result(LAST, 0), name)


@api
def foldl(fn, elems, initializer=None, name=None):
    """Reduce ``elems`` along axis 0 from the left: ``acc = fn(acc, x)``."""
    return _fold(fn, elems, initializer, False, name)


@api
def foldr(fn, elems, initializer=None, name=None):
    """Reduce ``elems`` along axis 0 from the right: ``acc = fn(acc, x)``."""
    return _fold(fn, elems, initializer, True, name)


__all__ = ["rnn", "map_fn", "foldl", "foldr"]
