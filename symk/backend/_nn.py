"""Neural-network functions of the Keras backend API: softmax, switch and the learning phase,
dropout, bias_add, l2_normalize and the cross-entropy losses."""

from __future__ import annotations

from symk import config
from symk.backend._config import normalize_data_format
from symk.backend._core import api, as_count, as_list, as_real
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import is_float, normalize_axis, shape_str


@api
def softmax(x, axis=-1):
    node = to_node(x)
    if not is_float(node.dtype):
        node = gb.cast(node, config.floatx())
    return Tensor(apply("softmax", [node], axis=normalize_axis(axis, node.ndim)))


def _value(x):
    return x() if callable(x) else x


@api
def switch(condition, then_expression, else_expression):
    """Select between two tensors by a scalar or elementwise condition."""
    c = to_node(condition)
    if c.dtype != "bool":
        c = gb.cast(c, "bool")
    if c.ndim == 0:
        from symk.graph.ops.leaves import const_array

        folded = const_array(c)
        if folded is not None:  # a constant condition picks one branch, like Python's `if`
            chosen = then_expression if bool(folded) else else_expression
            return Tensor(to_node(_value(chosen)))
    a = to_node(_value(then_expression))
    b = to_node(_value(else_expression), a)
    if c.ndim > a.ndim:
        raise ShapeError(f"rank of the condition ({c.ndim}) must be <= rank of then_expression "
                         f"({a.ndim})")
    for _ in range(a.ndim - c.ndim):
        if c.ndim:
            c = gb.expand_dims(c, c.ndim)
    return Tensor(gb.where(c, a, b))


def in_train_phase(x, alt, training=None):
    from symk.backend._variables import learning_phase

    uses_learning_phase = training is None
    if training is None:
        training = learning_phase()
    if training is True or (isinstance(training, int) and training == 1):
        return _value(x)
    if training is False or (isinstance(training, int) and training == 0):
        return _value(alt)
    out = switch(training, x, alt)
    if uses_learning_phase:
        out._uses_learning_phase = True
    return out


def in_test_phase(x, alt, training=None):
    return in_train_phase(alt, x, training=training)


@api
def dropout(x, level, noise_shape=None, seed=None):
    from symk.backend._variables import _random, shape

    level = as_real(level, "level")
    if not 0 <= level < 1:
        raise ArgumentError(f"dropout level must be in [0, 1), got {level}")
    node = to_node(x)
    keep = 1.0 - level
    if noise_shape is None:
        noise_shape = shape(x) if None in node.shape else node.shape
    mask = _random("random_binomial", noise_shape, node.dtype, seed, p=float(keep)).node
    return Tensor(gb.div(gb.mul(node, mask), keep))


@api
def bias_add(x, bias, data_format=None):
    fmt = normalize_data_format(data_format)
    xn, bn = to_node(x), to_node(bias)
    if bn.ndim not in (1, xn.ndim - 1):
        raise ShapeError(f"unexpected bias dimensions {bn.ndim}, expected 1 or {xn.ndim - 1} "
                         f"(x {shape_str(xn.shape)}, bias {shape_str(bn.shape)})")
    if fmt == "channels_first" and xn.ndim >= 3:
        if bn.ndim == 1:
            shape = (1, bn.shape[0]) + (1,) * (xn.ndim - 2)
        else:  # Keras reshapes (not transposes) a channels_last (spatial..., C) bias
            shape = (1, bn.shape[-1]) + bn.shape[:-1]
    else:
        shape = (1,) * (xn.ndim - bn.ndim) + bn.shape
    if None in shape:
        raise ShapeError(f"bias must have a static shape, got {shape_str(bn.shape)}")
    return Tensor(gb.add(xn, gb.reshape(bn, shape)))


@api
def l2_normalize(x, axis=None):
    node = to_node(x)
    axes = None if axis is None else as_list(axis)
    ss = gb.sum(gb.square(node), axes, keepdims=True)
    return Tensor(gb.mul(node, gb.div(1.0, gb.sqrt(gb.maximum(ss, 1e-12)))))


def _move_last(node, axis):
    a = normalize_axis(axis, node.ndim)
    if a == node.ndim - 1:
        return node
    perm = [i for i in range(node.ndim) if i != a] + [a]
    return gb.transpose(node, perm)


@api
def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """-sum(target * log(output)) along ``axis``; probabilities are renormalized and clipped
    to [eps, 1-eps] exactly as Keras does."""
    o, t = to_node(output), to_node(target)
    a = normalize_axis(axis, o.ndim)
    if from_logits:
        return Tensor(gb.neg(gb.sum(gb.mul(t, apply("log_softmax", [o], axis=a)), [a])))
    o = gb.div(o, gb.sum(o, [a], keepdims=True))
    eps = config.epsilon()
    o = gb.clip(o, eps, 1.0 - eps)
    return Tensor(gb.neg(gb.sum(gb.mul(t, gb.log(o)), [a])))


@api
def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy with integer targets; the result has the shape of output without ``axis``."""
    o = _move_last(to_node(output), axis)
    t = to_node(target)
    nclass = o.shape[-1]
    if nclass is None:
        raise ShapeError(f"the class axis of output {shape_str(o.shape)} must be static")
    if not from_logits:
        eps = config.epsilon()
        o = gb.log(gb.clip(o, eps, 1.0 - eps))
    logp = apply("log_softmax", [o], axis=o.ndim - 1)
    # targets are flattened as in Keras (a (batch, 1) target works with a (batch, C) output)
    flat_t = gb.cast(gb.reshape(t, (-1,)), "int64")
    if o.ndim == 2:  # already (rows, classes): no reshapes for the graph to carry around
        flat_p = logp
    elif None not in o.shape:
        flat_p = gb.reshape(logp, (-1, nclass))
    else:
        flat_p = apply("reshape", [logp, gb.const([-1, nclass], "int32")], shape=(-1, nclass))
    hot = gb.eq(gb.expand_dims(flat_t, 1), gb.const(list(range(nclass)), "int64"))
    loss = gb.neg(gb.sum(gb.where(hot, flat_p, 0), [1]))
    out_shape = o.shape[:-1]
    if o.ndim == 2:
        return Tensor(loss)
    if None not in out_shape:
        return Tensor(gb.reshape(loss, out_shape))
    lead = apply("getitem", [gb.shape_of(o)], spec=(("s", None, -1, None),))
    return Tensor(apply("reshape", [loss, lead], shape=out_shape))


@api
def binary_crossentropy(target, output, from_logits=False):
    """-(t*log(p) + (1-t)*log(1-p)) with p clipped to [eps, 1-eps]; with logits
    softplus(x) - x*t (softplus is the stable max(x,0) + log1p(exp(-|x|)), and its gradient
    sigmoid(x) - t is right at x = 0 too, where the max/abs form has kinks)."""
    o, t = to_node(output), to_node(target)
    if from_logits:
        return Tensor(gb.sub(apply("softplus", [o]), gb.mul(o, t)))
    eps = config.epsilon()
    p = gb.clip(o, eps, 1.0 - eps)
    return Tensor(gb.neg(gb.add(gb.mul(t, gb.log(p)), gb.mul(gb.sub(1, t), gb.log(gb.sub(1, p))))))


def _bcast_param(p, x, axis):
    """Reshape a per-channel parameter (C,) so it broadcasts against x along ``axis``."""
    if p is None:
        return None
    pn = to_node(p, x)
    if pn.ndim == 1 and x.ndim > 1 and axis != x.ndim - 1:
        shape = [1] * x.ndim
        shape[axis] = -1 if pn.shape[0] is None else pn.shape[0]
        pn = gb.reshape(pn, shape)
    return pn


def _normalize(xn, m, v, beta, gamma, epsilon):
    """TensorFlow's batch_normalization formula: x * inv + (beta - mean * inv) with
    inv = gamma / sqrt(var + epsilon).  The per-channel terms are computed once over the
    parameters' shape, and x is read by one kernel (x - mean is not materialized)."""
    inv = gb.div(1.0, gb.sqrt(gb.add(v, as_real(epsilon, "epsilon"))))
    if gamma is not None:
        inv = gb.mul(inv, gamma)
    shift = gb.neg(gb.mul(m, inv)) if beta is None else gb.sub(beta, gb.mul(m, inv))
    return gb.add(gb.mul(xn, inv), shift)


@api
def batch_normalization(x, mean, var, beta, gamma, axis=-1, epsilon=1e-3):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta (gamma, beta may be None).  A 1-D
    parameter lines up with ``axis`` (as TensorFlow's fused path for 4-D inputs does); others
    broadcast as given (the Keras layer passes them already broadcast)."""
    xn = to_node(x)
    a = normalize_axis(axis, xn.ndim)
    m, v = _bcast_param(mean, xn, a), _bcast_param(var, xn, a)
    return Tensor(_normalize(xn, m, v, _bcast_param(beta, xn, a), _bcast_param(gamma, xn, a),
                             epsilon))


@api
def normalize_batch_in_training(x, gamma, beta, reduction_axes, epsilon=1e-3):
    """Normalize x by its mean and variance over ``reduction_axes``; returns
    (normalized, mean, variance) with mean and variance shaped like the kept axes."""
    from symk.backend._math import mean as kmean
    from symk.backend._math import var as kvar

    xn = to_node(x)
    axes = sorted(normalize_axis(r, xn.ndim) for r in reduction_axes)
    m = kmean(x, axes, keepdims=True).node
    v = kvar(x, axes, keepdims=True).node
    kept = [d for i, d in enumerate(xn.shape) if i not in axes]
    bshape = [1 if i in axes else d for i, d in enumerate(xn.shape)]
    if bshape.count(None) == 1:  # one unknown kept axis: the parameters give its size
        bshape[bshape.index(None)] = -1
    gamma, beta = ((None if p is None else gb.reshape(to_node(p, xn), bshape)
                    if None not in bshape else to_node(p, xn)) for p in (gamma, beta))
    out = _normalize(xn, m, v, beta, gamma, epsilon)
    m_out = gb.reshape(m, kept) if None not in kept else _squeeze_axes(m, axes)
    v_out = gb.reshape(v, kept) if None not in kept else _squeeze_axes(v, axes)
    return Tensor(out), Tensor(m_out), Tensor(v_out)


def _squeeze_axes(node, axes):
    for a in sorted(axes, reverse=True):
        node = gb.squeeze(node, a)
    return node


@api
def in_top_k(predictions, targets, k):
    """True where the target class is among the top ``k`` predictions (ties count as in);
    False for a target out of range or a row with a non-finite prediction (as TensorFlow)."""
    p, t = to_node(predictions), to_node(targets)
    if p.ndim != 2 or p.shape[1] is None:
        raise ShapeError(f"in_top_k needs predictions of shape (batch, classes), got "
                         f"{shape_str(p.shape)}")
    import numpy as np

    flat_t = gb.cast(gb.reshape(t, (-1,)), "int64")
    hot = gb.eq(gb.expand_dims(flat_t, 1), gb.const(np.arange(p.shape[1], dtype=np.int64)))
    pt = gb.sum(gb.where(hot, p, 0), [1], keepdims=True)
    above = gb.sum(gb.cast(gb.gt(p, pt), "int32"), [1])
    finite = gb.reduce("all", gb.lt(gb.abs(p), float("inf")), [1])
    valid = gb.logical_and(finite, gb.logical_and(gb.ge(flat_t, 0), gb.lt(flat_t, p.shape[1])))
    return Tensor(gb.logical_and(valid, gb.lt(above, as_count(k, "k"))))


def to_dense(tensor):
    """The dense value of a sparse tensor; any other tensor is returned as is."""
    from symk.backend._sparse import to_dense as _to_dense

    return _to_dense(tensor)
