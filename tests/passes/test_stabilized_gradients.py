"""K.gradients differentiates a loss after the stabilize pass's loss rules: the structure of the
gradient of Keras's cross-entropy of a softmax (the log-softmax VJP, no softmax Jacobian), its
numbers against central finite differences in float64 where the clip to [eps, 1 - eps] is
active (logits spread over +-40, smoothed labels), the loss value, the cases where the rules
must not apply (a non-leaf wrt node, SYMK_EXCLUDE=stabilize), and the shape-only rules
(broadcast_like, shape_of) with an operand that broadcasts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from symk import backend as K
from symk.graph.node import toposort
from tests.gradcheck import floatx64
from tests.passes.common import ops

RNG = np.random.default_rng(11)
EPS = 1e-7
N, C = 6, 5


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z - z.max(-1, keepdims=True)
    return m - np.log(np.exp(m).sum(-1, keepdims=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


# name: (K loss of (target, logits), target values, Keras's formula in float64 numpy)
LOSSES: dict[str, tuple[Callable, np.ndarray, Callable]] = {
    "categorical": (
        lambda t, z: K.categorical_crossentropy(t, K.softmax(z)),
        np.eye(C)[RNG.integers(0, C, N)] * 0.9 + 0.1 / C,  # label smoothing
        lambda t, z: -(t * np.log(np.clip(_softmax(z), EPS, 1 - EPS))).sum(-1)),
    "sparse_categorical": (
        lambda t, z: K.sparse_categorical_crossentropy(t, K.softmax(z)),
        RNG.integers(0, C, (N, 1)).astype(np.float64),
        lambda t, z: -np.take_along_axis(
            _log_softmax(np.log(np.clip(_softmax(z), EPS, 1 - EPS))), t.astype(int), -1)[:, 0]),
    "binary": (
        lambda t, z: K.binary_crossentropy(t, K.sigmoid(z)),
        RNG.uniform(0, 1, (N, C)),  # soft targets
        lambda t, z: -(t * np.log(np.clip(_sigmoid(z), EPS, 1 - EPS))
                       + (1 - t) * np.log(1 - np.clip(_sigmoid(z), EPS, 1 - EPS)))),
}


def _spread_logits(binary: bool) -> np.ndarray:
    """Logits spread over +-40 in some rows (probabilities clipped at eps and 1 - eps there)
    and over +-2 in others (nothing clipped)."""
    z = RNG.uniform(-1, 1, (N, C)) * np.array([40, 40, 25, 10, 2, 2])[:, None]
    p = _sigmoid(z) if binary else _softmax(z)
    assert (p < EPS).any() and (p > 1 - EPS).any()
    return z


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_is_the_gradient_of_the_computed_loss(name):
    build, ts, ref = LOSSES[name]
    with floatx64():
        z0 = _spread_logits(name == "binary")
        z = K.variable(z0, dtype="float64")
        t = K.placeholder(ts.shape, dtype="float64")
        loss = K.mean(build(t, z))
        (g,) = K.gradients(loss, [z])
        f = K.function([t], [loss, g])
    val, got = f([ts])
    np.testing.assert_allclose(val, ref(ts, z0).mean(), rtol=1e-12)
    h, fd = 1e-6, np.zeros_like(z0)
    for i in np.ndindex(z0.shape):
        for sign in (1, -1):
            zi = z0.copy()
            zi[i] += sign * h
            K.set_value(z, zi)
            fd[i] += sign * f([ts])[0] / (2 * h)
    assert (np.abs(fd) > 1e-3).sum() > N  # not a degenerate case where all is clipped
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)


def _cce_of_softmax():
    t, z = K.placeholder((None, C)), K.variable(RNG.normal(size=(N, C)))
    p = K.softmax(z)
    return t, z, p, K.mean(K.categorical_crossentropy(t, p))


def test_cce_gradient_is_the_log_softmax_vjp():
    t, z, _, loss = _cce_of_softmax()
    (g,) = K.gradients(loss, [z])
    got = ops(g.node)
    assert "log_softmax" in got and "where" in got, got
    per_class = [n.op.name for n in toposort([g.node]) if n.ndim == 2 and not n.op.is_leaf]
    # no softmax Jacobian, log or renormalization: the where of the clip and the VJP
    assert not {"softmax", "log", "div"} & set(per_class), per_class
    assert per_class.count("sum") == 1, per_class  # the sum(g) of the VJP


def test_a_non_leaf_wrt_keeps_the_formula_as_written():
    # log(clip(softmax(z))) -> clip(log_softmax(z)) would drop the softmax from the loss
    t, z, p, loss = _cce_of_softmax()
    (g,) = K.gradients(loss, [p])
    assert "softmax" in {n.op.name for n in toposort([g.node])}
    ts = np.eye(C)[RNG.integers(0, C, N)].astype(np.float32)
    ps = _softmax(K.get_value(z).astype(np.float64))
    # d/dp of -mean(sum(t * log(p / sum(p)))) at sum(p) = 1: (sum(t) - t / p) / N
    want = (ts.sum(1, keepdims=True) - ts / ps) / N
    np.testing.assert_allclose(K.function([t], [g])([ts])[0], want, rtol=1e-4)


def test_excluded_stabilize_differentiates_as_written(monkeypatch):
    monkeypatch.setenv("SYMK_EXCLUDE", "stabilize")
    _, z, _, loss = _cce_of_softmax()
    (g,) = K.gradients(loss, [z])
    got = ops(g.node)
    assert {"softmax", "div"} <= set(got) and "log_softmax" not in got, got


def test_shape_only_reads_follow_broadcasting_operands():
    # the gradient of sum(t * exp(x @ w)) broadcasts g like t * exp(...), where t has one row and
    # x any number: the rule's broadcast_like(broadcast_like(g, t), x @ w) keeps x's rows
    x, t = K.placeholder((None, 3)), K.placeholder((1, 3))
    w = K.variable(RNG.normal(size=(3, 3)).astype(np.float32))
    (g,) = K.gradients(K.mean(K.sum(t * K.exp(K.dot(x, w)), axis=1)), [w])
    xs = RNG.normal(size=(5, 3)).astype(np.float32)
    ts = RNG.normal(size=(1, 3)).astype(np.float32)
    want = xs.T.astype(np.float64) @ (ts * np.exp(xs @ K.get_value(w).astype(np.float64))) / 5
    np.testing.assert_allclose(K.function([x, t], [g])([xs, ts])[0], want, rtol=1e-5)
