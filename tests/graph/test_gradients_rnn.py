"""K.gradients through loops (the ``scan`` op: backpropagation through time) against central
finite differences: w.r.t. inputs, initial states, captured weights (variables) and Keras
constants, with masks, ``go_backwards``, several states, unrolled and scanned; and through
map_fn / foldl / foldr."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from tests.gradcheck import check_grad

B, T, F, U = 2, 4, 3, 3
_rng = np.random.default_rng(5)
MASK = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], np.float64)


def _simple(x, h0, w, u, **kw):
    def step(xt, states):
        h = K.tanh(K.dot(xt, w) + K.dot(states[0], u))
        return h, [h]
    last, outs, states = K.rnn(step, x, [h0], **kw)
    return [last, outs, states[0]]


def _two_states(x, h0, c0, w, u, **kw):
    """An LSTM-like step: output h, states (h, c)."""
    def step(xt, states):
        h, c = states
        z = K.dot(xt, w) + K.dot(h, u)
        c2 = K.sigmoid(z) * c + K.tanh(z) * 0.5
        h2 = K.tanh(c2) * K.sigmoid(z)
        return h2, [h2, c2]
    last, outs, states = K.rnn(step, x, [h0, c0], **kw)
    return [last, outs, states[1]]


def _with_constant(x, h0, w, k, **kw):
    def step(xt, states):
        h, const = states
        h2 = K.tanh(K.dot(xt, w) * const + h)
        return h2, [h2]
    last, outs, _ = K.rnn(step, x, [h0], constants=[k], **kw)
    return [last, outs]


def _masked(x, h0, w, u, mask, **kw):
    return _simple(x, h0, w, u, mask=mask, **kw)


def _masked_constant_backwards(x, h0, w, u, k, mask, **kw):
    """Mask, a Keras constant and go_backwards together, output narrower than the state."""
    def step(xt, states):
        h, const = states
        h2 = K.tanh(K.dot(xt, w) * const + K.dot(h, u))
        return h2[:, :2], [h2]
    last, outs, states = K.rnn(step, x, [h0], mask=mask, constants=[k], go_backwards=True,
                               **kw)
    return [last, outs, states[0]]


def _mapped(x):
    return K.map_fn(lambda e: K.sin(e) * K.sum(e), x)


def _foldl(x, a0):
    return K.foldl(lambda acc, e: acc * K.cos(e) + e, x, initializer=a0)


def _foldr(x):
    return K.foldr(lambda acc, e: acc * K.tanh(e) + 0.5 * e, x)


X, H, WX, WU = (B, T, F), (B, U), (F, U), (U, U)


def rnn_cases():
    out = []
    for unroll in (False, True):
        for back in (False, True):
            tag = f"{'unroll' if unroll else 'scan'}{'-back' if back else ''}"
            out.append(pytest.param(_simple, [X, H, WX, WU],
                                    {"unroll": unroll, "go_backwards": back}, id="simple-" + tag))
            out.append(pytest.param(_masked, [X, H, WX, WU, MASK],
                                    {"unroll": unroll, "go_backwards": back}, id="masked-" + tag))
        out.append(pytest.param(_two_states, [X, H, H, WX, WU], {"unroll": unroll},
                                id="two-states-" + ("unroll" if unroll else "scan")))
        out.append(pytest.param(_with_constant, [X, H, WX, (1, U)], {"unroll": unroll},
                                id="constant-" + ("unroll" if unroll else "scan")))
        out.append(pytest.param(_masked_constant_backwards, [X, H, WX, WU, (B, U), MASK],
                                {"unroll": unroll},
                                id="masked-constant-back-" + ("unroll" if unroll else "scan")))
    return out


@pytest.mark.parametrize("fn,inputs,kw", rnn_cases())
def test_rnn_gradient(fn, inputs, kw):
    check_grad(fn, inputs, **kw)


@pytest.mark.parametrize("dynamic", [False, True])
def test_rnn_gradient_captured_variables(dynamic):
    """Keras cells capture their weights: the weights are variables, not arguments."""
    check_grad(_simple, [X, H, WX, WU], variables=True, dynamic=dynamic)


def test_rnn_gradient_masked_variables_backwards():
    check_grad(_masked, [X, H, WX, WU, MASK], variables=True, go_backwards=True)


def test_rnn_second_order_through_scan():
    """The gradient of a scan is a scan: differentiate twice (grad of a grad norm)."""
    def fn(x, h0, w, u):
        last, _, _ = _simple(x, h0, w, u)
        (g,) = K.gradients(K.sum(K.square(last)), [w])
        return [g]
    check_grad(fn, [X, H, WX, WU], wrt=[2, 3], rtol=1e-5, atol=1e-7)


OP_CASES = {
    "scan": [(_simple, [X, H, WX, WU], {}),
             (_mapped, [(T, 3)], {}),
             (_foldl, [(T, 3), (3,)], {}),
             (_foldr, [(T, 3)], {})],
}


@pytest.mark.parametrize("fn,inputs,kw", [pytest.param(*c, id=f"{c[0].__name__}")
                                          for c in OP_CASES["scan"][1:]])
def test_loop_gradient(fn, inputs, kw):
    check_grad(fn, inputs, **kw)


def _body_products(node):
    from symk.graph.node import toposort
    body = node.attrs["body"]
    return body, [n for n in toposort(list(body.outs) + list(body.new_carries))
                  if n.op.name == "einsum"]


def test_backward_loop_reads_transposed_weights_as_plain_operands():
    """``dh = dz @ U.T`` in the backward loop reads a copy of ``U.T`` made once outside the
    loop (``ad,db->ab``), never ``U`` as a transposed right operand; the gradient stays
    right (checked against central differences above, and here against a numpy BPTT)."""
    from symk.graph.node import toposort
    from symk.graph.ops.linalg import matmul2d_layout

    rng = np.random.default_rng(3)
    xv, hv = rng.normal(size=X), rng.normal(size=H)
    wv, uv = rng.normal(size=WX) * 0.5, rng.normal(size=WU) * 0.5
    x, h0 = K.placeholder(X, dtype="float64"), K.placeholder(H, dtype="float64")
    w, u = K.variable(wv, dtype="float64"), K.variable(uv, dtype="float64")
    last, _, _ = _simple(x, h0, w, u)
    gu, gh = K.gradients(K.sum(last), [u, h0])
    scans = [n for n in toposort([gu.node, gh.node]) if n.op.name == "scan"
             and n.attrs["reverse"]]
    assert scans
    for sc in scans:
        body, prods = _body_products(sc)
        consts = {id(p) for p in body.consts}
        for e in prods:
            ta, tb, swap = matmul2d_layout(e.attrs["spec"])
            right = e.inputs[0] if swap else e.inputs[1]
            transposed = (not ta) if swap else tb
            assert not (transposed and id(right) in consts), e.attrs["spec"]
        assert any(p.shape == WU[::-1] for p in body.consts)
    got_u, got_h = K.function([x, h0], [gu, gh])([xv, hv])
    # numpy BPTT of h_t = tanh(x_t w + h_{t-1} u), loss sum(h_T)
    hs = [hv]
    for t in range(T):
        hs.append(np.tanh(xv[:, t] @ wv + hs[-1] @ uv))
    dh, du = np.ones_like(hv), np.zeros_like(uv)
    for t in reversed(range(T)):
        dz = dh * (1 - hs[t + 1] ** 2)
        du += hs[t].T @ dz
        dh = dz @ uv.T
    np.testing.assert_allclose(got_u, du, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_h, dh, rtol=1e-10, atol=1e-12)


def test_backward_loop_reads_the_forward_products_instead_of_recomputing_them():
    """The forward loop outputs ``x_t @ w + h @ u`` (a residual, stacked only for the
    gradient); backpropagation reads it rather than recomputing ``h @ u`` over the
    trajectory, and the gradients still match central differences."""
    from symk.graph.node import toposort
    from symk.graph.ops.scan import saved_products

    x, h0 = K.placeholder(X, dtype="float64"), K.placeholder(H, dtype="float64")
    w = K.variable(_rng.normal(size=WX), dtype="float64")
    u = K.variable(_rng.normal(size=WU) * 0.5, dtype="float64")
    last, _, _ = _simple(x, h0, w, u)
    grads = K.gradients(K.sum(K.square(last)), [w, u, h0])
    order = toposort([g.node for g in grads])
    fwd = [n for n in order if n.op.name == "scan" and not n.attrs["reverse"]]
    saved = saved_products(fwd[0].attrs["body"])
    assert saved  # the step's product sum is a residual output
    read = {n.attrs["result"] for n in fwd}
    assert any(("seq", k) in read for k in saved.values())
    assert not [n for n in order if n.op.name == "einsum" and u.node in n.inputs]
    check_grad(_simple, [X, H, WX, WU], variables=True)


def _conv_rnn(x, h0, w, u, **kw):
    """A ConvLSTM-like step: h = tanh(conv(x_t, w) + conv(h, u)), 'same' padding."""
    def step(xt, states):
        h = K.tanh(K.conv2d(xt, w, padding="same") + K.conv2d(states[0], u, padding="same"))
        return h, [h]
    last, outs, states = K.rnn(step, x, [h0], **kw)
    return [last, outs]


CX, CH, CW, CU = (2, 3, 4, 3, 2), (2, 4, 3, 3), (3, 2, 2, 3), (2, 3, 3, 3)


@pytest.mark.parametrize("back", [False, True])
def test_conv_rnn_gradient(back):
    check_grad(_conv_rnn, [CX, CH, CW, CU], go_backwards=back)
    check_grad(_conv_rnn, [CX, CH, CW, CU], variables=True, dynamic=True)


def test_conv_rnn_input_convolution_runs_once_over_all_steps():
    """The input convolution is one convolution of all steps (time merged into the batch);
    the recurrent one is a residual of the forward loop, not recomputed backwards."""
    from symk.graph.node import toposort
    from symk.graph.ops.scan import saved_products

    x, h0 = K.placeholder((None,) + CX[1:], dtype="float64"), K.placeholder(
        (None,) + CH[1:], dtype="float64")
    w = K.variable(_rng.normal(size=CW), dtype="float64")
    u = K.variable(_rng.normal(size=CU), dtype="float64")
    last, _ = _conv_rnn(x, h0, w, u)
    grads = K.gradients(K.sum(last), [w, u])
    order = toposort([g.node for g in grads])
    fwd = [n for n in order if n.op.name == "scan" and not n.attrs["reverse"]]
    body = fwd[0].attrs["body"]
    inner = toposort(list(body.outs) + list(body.new_carries))
    assert [n.op.name for n in inner].count("conv") == 1  # only the recurrent one
    assert [n for n in order if n.op.name == "conv" and n.inputs[1] is w.node]
    assert saved_products(body)
    assert not [n for n in order if n.op.name == "conv" and n.inputs[1] is u.node]
    back = [n for n in order if n.op.name == "scan" and n.attrs["reverse"]][0].attrs["body"]
    inner = toposort(list(back.outs) + list(back.new_carries))
    assert "conv_kernel_grad" not in [n.op.name for n in inner]  # one after the loop
    assert [n for n in order if n.op.name == "conv_kernel_grad"]


def test_weight_gradients_are_one_product_over_all_steps():
    """``dU = sum_t h_{t-1}^T dz_t`` is not accumulated through the backward loop: the loop
    outputs ``dz`` and one product over all steps follows it (checked against numpy BPTT in
    the test above and against central differences here)."""
    from symk.graph.node import toposort

    x, h0 = K.placeholder(X, dtype="float64"), K.placeholder(H, dtype="float64")
    w = K.variable(_rng.normal(size=WX), dtype="float64")
    u = K.variable(_rng.normal(size=WU) * 0.5, dtype="float64")
    last, _, _ = _simple(x, h0, w, u)
    (gu,) = K.gradients(K.sum(last), [u])
    order = toposort([gu.node])
    back = [n for n in order if n.op.name == "scan" and n.attrs["reverse"]]
    assert back and all(c.shape != WU for c in back[0].attrs["body"].carries)
    assert gu.node.op.name == "einsum" and all(i.ndim == 3 for i in gu.node.inputs)
    check_grad(_simple, [X, H, WX, WU], variables=True, go_backwards=True)
    check_grad(_conv_rnn, [CX, CH, CW, CU], variables=True)


def _gates(x, h0, w, u, **kw):
    """Two gates from slices of one recurrent weight (like Keras's LSTM cell)."""
    n = int(h0.shape[-1])

    def step(xt, states):
        h = states[0]
        a = K.sigmoid(K.dot(xt, w[:, :n]) + K.dot(h, u[:, :n]))
        c = K.tanh(K.dot(xt, w[:, n:]) + K.dot(h, u[:, n:]))
        h2 = a * c + (1 - a) * h
        return h2, [h2]
    last, outs, _ = K.rnn(step, x, [h0], **kw)
    return [last, outs]


def test_products_with_slices_of_one_weight_are_one_product():
    """``h @ u[:, :n]`` and ``h @ u[:, n:]`` (slices tiling u) are one product ``h @ u``
    sliced after; slices that do not tile the weight stay apart."""
    from symk.graph.node import toposort
    from symk.graph.ops.scan import merge_sliced_products

    x, h0 = K.placeholder(X, dtype="float64"), K.placeholder(H, dtype="float64")
    w = K.variable(_rng.normal(size=(F, 2 * U)), dtype="float64")
    u = K.variable(_rng.normal(size=(U, 2 * U)) * 0.5, dtype="float64")
    last, _ = _gates(x, h0, w, u)
    scan = [n for n in toposort([last.node]) if n.op.name == "scan"][0]
    body = scan.attrs["body"]
    prods = [n for n in toposort(list(body.outs) + list(body.new_carries))
             if n.op.name == "einsum"]
    assert len(prods) == 1 and prods[0].inputs[1].shape == (U, 2 * U)
    check_grad(_gates, [X, H, (F, 2 * U), (U, 2 * U)], variables=True)
    # apart: u[:, 0:2] and u[:, 3:5] leave a gap
    h = K.placeholder(H, dtype="float64")
    a, b = K.dot(h, u[:, 0:2]), K.dot(h, u[:, 3:5])
    roots = merge_sliced_products([a.node, b.node])
    assert roots[0] is a.node and roots[1] is b.node

