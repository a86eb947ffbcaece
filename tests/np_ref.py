"""Independent numpy references of the Keras 2.3.1 backend functions (TensorFlow backend
semantics), written from the Keras documentation and source, never from symk's ops.

Each function has the signature of its K counterpart and returns arrays of the dtype Keras
gives (float math is done in float64 and cast back to the input's float dtype).
"""

from __future__ import annotations

import builtins

import numpy as np

from symk import backend as K  # only for the configured floatx and epsilon


def _floatx() -> str:
    return K.floatx()


def _epsilon() -> float:
    return K.epsilon()


def _fdt(x: np.ndarray) -> np.dtype:
    """The float dtype of a result computed from x (floatx for non-float inputs)."""
    x = np.asarray(x)
    return x.dtype if x.dtype.kind == "f" else np.dtype(_floatx())


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _float_unary(f):
    def g(x):
        return f(_f64(x)).astype(_fdt(x))
    return g


# ---------------------------------------------------------------- elementwise

def abs(x):  # noqa: A001
    return np.abs(x)


def square(x):
    return np.multiply(x, x)


def sign(x):
    return np.sign(x)


def round(x):  # noqa: A001
    return np.round(x)  # half to even, like tf.round


def sqrt(x):
    return _float_unary(lambda v: np.sqrt(np.maximum(v, 0.0)))(x)


exp = _float_unary(np.exp)
log = _float_unary(np.log)
sin = _float_unary(np.sin)
cos = _float_unary(np.cos)
tanh = _float_unary(np.tanh)
sigmoid = _float_unary(lambda v: np.exp(-np.logaddexp(0.0, -v)))
hard_sigmoid = _float_unary(lambda v: np.clip(0.2 * v + 0.5, 0.0, 1.0))
softplus = _float_unary(lambda v: np.logaddexp(0.0, v))
softsign = _float_unary(lambda v: v / (1.0 + np.abs(v)))


def pow(x, a):  # noqa: A001
    x = np.asarray(x)
    return np.power(x, np.asarray(a, x.dtype))


def clip(x, min_value, max_value):
    if isinstance(min_value, (int, float)) and isinstance(max_value, (int, float)) \
            and max_value < min_value:
        max_value = min_value
    lo = -np.inf if min_value is None else min_value
    hi = np.inf if max_value is None else max_value
    x = np.asarray(x)
    return np.minimum(np.maximum(x, lo), hi).astype(x.dtype)


def equal(x, y): return np.equal(x, y)
def not_equal(x, y): return np.not_equal(x, y)
def greater(x, y): return np.greater(x, y)
def greater_equal(x, y): return np.greater_equal(x, y)
def less(x, y): return np.less(x, y)
def less_equal(x, y): return np.less_equal(x, y)
def maximum(x, y): return np.maximum(x, y)
def minimum(x, y): return np.minimum(x, y)


def relu(x, alpha=0.0, max_value=None, threshold=0.0):
    """Keras 2.3.1 TF backend: tf.nn.leaky_relu (x if x > 0 else alpha*x) when only alpha is
    set; otherwise x if x > threshold else 0 (clipped to max_value), minus
    alpha * relu(threshold - x)."""
    dt = _fdt(x)
    v = _f64(x)
    if alpha != 0 and max_value is None and threshold == 0:
        return np.where(v > 0, v, alpha * v).astype(dt)
    neg = np.maximum(threshold - v, 0.0) if alpha != 0 else 0.0
    out = np.where(v > threshold, v, 0.0) if threshold != 0 else np.maximum(v, 0.0)
    if max_value is not None:
        out = np.clip(out, 0.0, max_value)
    return (out - alpha * neg).astype(dt)


def elu(x, alpha=1.0):
    return _float_unary(lambda v: np.where(v > 0, v, alpha * np.expm1(v)))(x)


def switch(condition, then_expression, else_expression):
    c = np.asarray(condition).astype(bool)
    a = then_expression() if callable(then_expression) else then_expression
    b = else_expression() if callable(else_expression) else else_expression
    a, b = np.asarray(a), np.asarray(b)
    if c.ndim == 0:
        return a if c else b
    c = c.reshape(c.shape + (1,) * (a.ndim - c.ndim))  # aligned on the leading axes
    return np.where(c, a, b)


# ---------------------------------------------------------------- reductions

def sum(x, axis=None, keepdims=False):  # noqa: A001
    x = np.asarray(x)
    return np.sum(x, axis=_axis(axis), keepdims=keepdims, dtype=x.dtype)


def prod(x, axis=None, keepdims=False):
    x = np.asarray(x)
    return np.prod(x, axis=_axis(axis), keepdims=keepdims, dtype=x.dtype)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return np.max(x, axis=_axis(axis), keepdims=keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return np.min(x, axis=_axis(axis), keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    x = np.asarray(x)
    dt = x.dtype if x.dtype.kind == "f" else np.dtype(_floatx())
    return np.mean(_f64(x), axis=_axis(axis), keepdims=keepdims).astype(dt)


def var(x, axis=None, keepdims=False):
    x = np.asarray(x)
    dt = _fdt(x)
    v = _f64(x)
    m = np.mean(v, axis=_axis(axis), keepdims=True)
    return np.mean((v - m) ** 2, axis=_axis(axis), keepdims=keepdims).astype(dt)


def std(x, axis=None, keepdims=False):
    return np.sqrt(var(x, axis, keepdims))


def any(x, axis=None, keepdims=False):  # noqa: A001
    return np.any(np.asarray(x) != 0, axis=_axis(axis), keepdims=keepdims)


def all(x, axis=None, keepdims=False):  # noqa: A001
    return np.all(np.asarray(x) != 0, axis=_axis(axis), keepdims=keepdims)


def argmax(x, axis=-1):
    return np.argmax(x, axis=axis).astype(np.int64)


def argmin(x, axis=-1):
    return np.argmin(x, axis=axis).astype(np.int64)


def logsumexp(x, axis=None, keepdims=False):
    dt = _fdt(x)
    v = _f64(x)
    m = np.max(v, axis=_axis(axis), keepdims=True)
    out = np.log(np.sum(np.exp(v - m), axis=_axis(axis), keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=_axis(axis))
    return out.astype(dt)


def cumsum(x, axis=0):
    x = np.asarray(x)
    return np.cumsum(x, axis=axis, dtype=x.dtype)


def cumprod(x, axis=0):
    x = np.asarray(x)
    return np.cumprod(x, axis=axis, dtype=x.dtype)


# ---------------------------------------------------------------- linear algebra and shape

def dot(x, y):
    """Theano/numpy n-D dot: sum over x's last axis and y's second-to-last (or only) axis."""
    x, y = np.asarray(x), np.asarray(y)
    return np.dot(_f64(x), _f64(y)).astype(np.result_type(x, y))


def batch_dot(x, y, axes=None):
    """Keras 2.3.1: per sample, tensordot over (axes[0], axes[1]); the result has x's dims
    (less the summed one) then y's dims (less batch and summed); rank 1 becomes (batch, 1)."""
    x, y = np.asarray(x), np.asarray(y)
    if isinstance(axes, int):
        axes = (axes, axes)
    if axes is None:
        axes = (x.ndim - 1, y.ndim - 1 if y.ndim == 2 else y.ndim - 2)
    a0, a1 = axes[0] % x.ndim, axes[1] % y.ndim
    rows = [np.tensordot(_f64(x[i]), _f64(y[i]), axes=(a0 - 1, a1 - 1))
            for i in range(x.shape[0])]
    out = np.stack(rows).astype(np.result_type(x, y))
    return out.reshape(-1, 1) if out.ndim == 1 else out


def transpose(x):
    return np.transpose(x)


def permute_dimensions(x, pattern):
    return np.transpose(x, pattern)


def gather(reference, indices):
    return np.take(reference, np.asarray(indices), axis=0)


def concatenate(tensors, axis=-1):
    return np.concatenate(tensors, axis=axis)


def stack(x, axis=0):
    return np.stack(x, axis=axis)


def reshape(x, shape):
    return np.reshape(x, shape)


def repeat_elements(x, rep, axis):
    return np.repeat(x, rep, axis=axis)


def repeat(x, n):
    x = np.asarray(x)
    return np.broadcast_to(x[:, None, :], (x.shape[0], n, x.shape[1])).copy()


def arange(start, stop=None, step=1, dtype="int32"):
    if stop is None:
        start, stop = 0, builtins.max(start, 0)
    return np.arange(start, stop, step).astype(dtype)


def tile(x, n):
    x = np.asarray(x)
    n = (n,) if isinstance(n, int) else tuple(n)
    n = (1,) * (x.ndim - len(n)) + n
    return np.tile(x, n)


def flatten(x):
    return np.reshape(x, (-1,))


def batch_flatten(x):
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)


def expand_dims(x, axis=-1):
    return np.expand_dims(x, axis)


def squeeze(x, axis):
    return np.squeeze(x, axis=axis)


def one_hot(indices, num_classes):
    """floatx (TensorFlow's tf.one_hot is always float32; equal under the default floatx)."""
    idx = np.asarray(indices)
    return (idx[..., None] == np.arange(num_classes)).astype(_floatx())


def reverse(x, axes):
    return np.flip(x, axis=(axes,) if isinstance(axes, int) else tuple(axes))


def slice(x, start, size):  # noqa: A001
    key = tuple(builtins.slice(b, None if s == -1 else b + s) for b, s in zip(start, size))
    return np.asarray(x)[key]


def _zero_pad(x, pattern):
    return np.pad(x, pattern, mode="constant", constant_values=0)


def temporal_padding(x, padding=(1, 1)):
    return _zero_pad(x, [(0, 0), tuple(padding), (0, 0)])


def _spatial_pad(x, padding, data_format):
    pads = [tuple(p) for p in padding]
    if (data_format or "channels_last") == "channels_first":
        return _zero_pad(x, [(0, 0), (0, 0)] + pads)
    return _zero_pad(x, [(0, 0)] + pads + [(0, 0)])


def spatial_2d_padding(x, padding=((1, 1), (1, 1)), data_format=None):
    return _spatial_pad(x, padding, data_format)


def spatial_3d_padding(x, padding=((1, 1), (1, 1), (1, 1)), data_format=None):
    return _spatial_pad(x, padding, data_format)


def bias_add(x, bias, data_format=None):
    """Keras 2.3.1: the bias is given in channels_last layout; with channels_first (rank >= 3)
    it is *reshaped* (not transposed) to (1, C, spatial...)."""
    x, b = np.asarray(x), np.asarray(bias)
    if x.ndim >= 3 and data_format == "channels_first":
        if b.ndim == 1:
            shape = (1, b.shape[0]) + (1,) * (x.ndim - 2)
        else:
            shape = (1, b.shape[-1]) + b.shape[:-1]
    else:
        shape = (1,) * (x.ndim - b.ndim) + b.shape
    return x + b.reshape(shape)


def l2_normalize(x, axis=None):
    dt = _fdt(x)
    v = _f64(x)
    ss = np.sum(v * v, axis=_axis(axis), keepdims=True)
    return (v / np.sqrt(np.maximum(ss, 1e-12))).astype(dt)


def softmax(x, axis=-1):
    dt = _fdt(x)
    v = _f64(x)
    e = np.exp(v - np.max(v, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(dt)


def _clip_eps(o, dt):
    """Clip to [eps, 1 - eps] in the output dtype, as Keras does (1 - eps rounds in float32)."""
    o = np.asarray(o).astype(dt)
    return _f64(np.clip(o, dt.type(_epsilon()), dt.type(1.0) - dt.type(_epsilon())))


def _log_softmax(v, axis):
    m = np.max(v, axis=axis, keepdims=True)
    return v - m - np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True))


# ---------------------------------------------------------------- losses

def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    dt = _fdt(output)
    t, o = _f64(target), _f64(output)
    if from_logits:
        return (-np.sum(t * _log_softmax(o, axis), axis=axis)).astype(dt)
    o = _clip_eps(o / np.sum(o, axis=axis, keepdims=True), dt)
    return (-np.sum(t * np.log(o), axis=axis)).astype(dt)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """tf.keras: probabilities are clipped and logged (then log-softmaxed, which renormalizes);
    the class axis is moved last; targets are flattened."""
    dt = _fdt(output)
    o = np.moveaxis(_f64(output), axis, -1)
    if not from_logits:
        o = np.log(_clip_eps(o, dt))
    logp = _log_softmax(o, -1).reshape(-1, o.shape[-1])
    t = np.asarray(target).reshape(-1).astype(np.int64)
    loss = -logp[np.arange(t.size), t]
    return loss.reshape(o.shape[:-1]).astype(dt)


def binary_crossentropy(target, output, from_logits=False):
    dt = _fdt(output)
    t, o = _f64(target), _f64(output)
    if from_logits:  # sigmoid cross-entropy with logits
        return (np.maximum(o, 0) - o * t + np.log1p(np.exp(-np.abs(o)))).astype(dt)
    p = _clip_eps(o, dt)
    return (-(t * np.log(p) + (1 - t) * np.log(1 - p))).astype(dt)
