"""Row separability of scan bodies (``symk.graph.ops.scan_rows``) and the ops' ``row_axis``
rules: recurrent steps that treat each batch row alone are found separable and rebuilt with an
unknown number of rows; steps that mix rows (a reduction or a product over them, a reshape, a
random draw) are not."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.node import apply, toposort
from symk.graph.ops.scan import placeholder_like
from symk.graph.ops.scan_rows import row_axes, row_split

B, T, F, U = 4, 5, 3, 6


def _body(step, n_states=1, **kw):
    """The scan body K.rnn builds for ``step`` on a (B, T, F) input."""
    x = K.placeholder((B, T, F))
    states = [K.zeros((B, U)) for _ in range(n_states)]
    _, outs, _ = K.rnn(step, x, states, **kw)
    scans = [n for n in toposort([outs.node]) if n.op.name == "scan"]
    assert len(scans) == 1
    return scans[0].attrs["body"]


W = K.variable(np.ones((F, U), "f4"))
UU = K.variable(np.ones((U, U), "f4"))
BIAS = K.variable(np.ones((U,), "f4"))


def _simple(xt, states):
    h = K.tanh(K.bias_add(K.dot(xt, W), BIAS) + K.dot(states[0], UU))
    return h, [h]


def _lstm_like(xt, states):
    h, c = states
    z = K.concatenate([K.dot(xt, W), K.dot(h, UU)], axis=-1)
    i, f = K.sigmoid(z[:, :U]), K.sigmoid(z[:, U:])
    c2 = f * c + i * K.tanh(K.softmax(z)[:, :U])
    h2 = K.expand_dims(K.transpose(K.transpose(K.tanh(c2))), 1)
    h2 = K.squeeze(h2, 1)
    return h2, [h2, c2]


@pytest.mark.parametrize("step,n,kw", [
    (_simple, 1, {}),
    (_simple, 1, {"go_backwards": True}),
    (_simple, 1, {"mask": K.constant(np.ones((B, T), "f4"))}),
    (_lstm_like, 2, {}),
])
def test_row_independent_steps_are_separable(step, n, kw):
    body = _body(step, n, **kw)
    axes = row_axes(body)
    assert axes is not None
    assert all(axes[id(o)] == 0 for o in body.outs + body.new_carries)
    rs = row_split(body)
    assert rs is not None and row_split(body) is rs  # decided once
    rb = rs.body
    for p in rb.seqs + rb.carries + rb.outs + rb.new_carries:
        assert p.shape[0] is None, p
    assert [p.shape[1:] for p in rb.outs] == [p.shape[1:] for p in body.outs]
    assert rb.consts == body.consts


def _mean_over_rows(xt, states):
    h = K.tanh(K.dot(xt, W) + K.mean(states[0], axis=0, keepdims=True))
    return h, [h]


def _gram(xt, states):
    h = states[0]
    h2 = K.tanh(K.dot(K.dot(h, K.transpose(h)), h) + K.dot(xt, W))  # rows contracted
    return h2, [h2]


def _reshaped(xt, states):
    h = K.reshape(K.tanh(K.dot(xt, W) + states[0]), (B, U))
    return h, [h]


def _drawn_per_step(xt, states):
    h = K.tanh(K.dot(xt, W) + states[0])
    return h * K.random_uniform(K.shape(h)), [h]  # a draw per step, shaped by the rows


def _drawn_once(xt, states):
    h = K.tanh(K.dot(xt, W) + states[0]) * K.random_uniform((B, U))
    return h, [h]


def test_loop_constants_with_rows_split_with_them():
    """A (B, U) value drawn once outside the loop (like a recurrent dropout mask) is a
    constant of the loop; each share of the rows reads its own rows of it."""
    body = _body(_drawn_once)
    assert row_axes(body) is None  # not with the constant shared by all rows
    rs = row_split(body)
    assert rs is not None and rs.row_consts == (0,)
    assert rs.body.consts[0].shape == (None, U)


def _softmax_over_rows(xt, states):
    h = K.softmax(K.dot(xt, W) + states[0], axis=0)
    return h, [h]


def _row_slice(xt, states):
    h = K.tanh(K.dot(xt, W) + states[0])
    h = K.concatenate([h[1:], h[:1]], axis=0)  # rows trade places
    return h, [h]


@pytest.mark.parametrize("step", [_mean_over_rows, _gram, _reshaped, _drawn_per_step,
                                  _softmax_over_rows, _row_slice])
def test_steps_mixing_rows_are_not_separable(step):
    body = _body(step)
    assert row_axes(body) is None
    assert row_split(body) is None


def _node(x):
    return getattr(x, "node", x)


def test_row_axis_rules_of_the_ops():
    rows = placeholder_like(_node(K.placeholder((B, U))))
    cube = placeholder_like(_node(K.placeholder((B, 2, U))))
    free = _node(K.placeholder((1, U)))
    wide = _node(K.placeholder((B, U)))  # the same size as the rows, but not a row value

    def axis(n, axes):
        return n.op.row_axis(n, axes)

    assert axis(gb.add(rows, free), [0, None]) == 0
    assert axis(gb.add(rows, wide), [0, None]) is None  # a row-free operand with rows' size
    assert axis(gb.add(cube, _node(K.placeholder((U,)))), [0, None]) == 0
    assert axis(gb.sum(cube, [2]), [0]) == 0
    assert axis(gb.sum(cube, [1], keepdims=True), [0]) == 0
    assert axis(gb.sum(cube, [0]), [0]) is None
    assert axis(gb.transpose(cube, [2, 0, 1]), [0]) == 1
    assert axis(gb.expand_dims(rows, 0), [0]) == 1
    assert axis(gb.expand_dims(rows, 1), [0]) == 0
    assert axis(gb.squeeze(gb.expand_dims(rows, 0), 0), [1]) == 0
    assert axis(gb.einsum("ab,bc->ac", [rows, _node(K.placeholder((U, 2)))]), [0, None]) == 0
    assert axis(gb.einsum("ab,ac->bc", [rows, rows]), [0, 0]) is None  # rows contracted
    assert axis(gb.einsum("ab,ab->ab", [rows, rows]), [0, 0]) == 0
    assert axis(gb.concatenate([rows, rows], 1), [0, 0]) == 0
    assert axis(gb.concatenate([rows, rows], 0), [0, 0]) is None
    assert axis(gb.concatenate([rows, wide], 1), [0, None]) is None
    cols = _node(K.placeholder((B, U))[:, 1:3]).attrs["spec"]
    tail = _node(K.placeholder((B, U))[1:]).attrs["spec"]
    assert axis(apply("getitem", [rows], spec=cols), [0]) == 0
    assert axis(apply("getitem", [rows], spec=tail), [0]) is None
    part = apply("getitem", [rows], spec=cols)
    assert axis(apply("slice_grad", [part, rows], spec=cols), [0, 0]) == 0
    assert axis(apply("slice_grad", [part, wide], spec=cols), [0, None]) is None
    assert axis(apply("softmax", [rows], axis=-1), [0]) == 0
    assert axis(apply("softmax", [rows], axis=0), [0]) is None
    assert axis(apply("broadcast_to", [free], shape=(B, U)), [0]) is None
