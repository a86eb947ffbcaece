"""CTC ops: the loss (``ctc_loss``) with its gradient op (``ctc_loss_grad``), the decoders
(``ctc_decode``, greedy or beam search, and ``ctc_unpack_path``) and the label conversion
helper ``ctc_label_indices``.  The blank is the last class.  The numpy algorithms live in
``_ctc_impl``; every op here is an extern call.

``ctc_loss(logits, labels, label_length, input_length)`` takes unnormalized scores
(batch, time, classes) and applies a log-softmax over classes, like TensorFlow's ``ctc_loss``
that Keras calls on ``log(y_pred + epsilon)``; its gradient w.r.t. the logits is
``softmax(logits) - posterior occupancy`` from the alpha-beta recursion.
"""

from __future__ import annotations

import numpy as np

from symk.errors import DTypeError, ShapeError, SymkError
from symk.graph import build as gb
from symk.graph.node import apply
from symk.graph.op import Op, register
from symk.graph.ops import _ctc_impl as impl
from symk.graph.types import Type, is_float, is_int, shape_str


def _dim(a, b):
    if a is not None and b is not None and a != b:
        raise ShapeError(f"batch sizes {a} and {b} differ")
    return a if a is not None else b


def _check_ctc_inputs(inputs) -> None:
    logits, labels, lab_len, in_len = inputs
    if logits.ndim != 3 or not is_float(logits.dtype):
        raise ShapeError(f"ctc: the predictions must be a float tensor (batch, time, classes), "
                         f"got {logits}")
    if labels.ndim != 2 or not is_int(labels.dtype):
        raise ShapeError(f"ctc: the labels must be an int tensor (batch, max_label_length), "
                         f"got {labels}")
    for what, t in (("label_length", lab_len), ("input_length", in_len)):
        if t.ndim != 1 or not is_int(t.dtype):
            raise ShapeError(f"ctc: {what} must be an int vector (batch,), got {t}")
    b = logits.shape[0]
    for t in (labels, lab_len, in_len):
        try:
            b = _dim(b, t.shape[0])
        except ShapeError as e:
            raise ShapeError(f"ctc: {e} (shapes {shape_str(logits.shape)}, "
                             f"{shape_str(labels.shape)}, {shape_str(lab_len.shape)}, "
                             f"{shape_str(in_len.shape)})") from None
    if logits.shape[2] is not None and logits.shape[2] < 2:
        raise ShapeError(f"ctc: the predictions need at least 2 classes (one label and the "
                         f"blank), got {logits.shape[2]}")


@register
class CtcLoss(Op):
    """-log p(labels | softmax(logits)) per batch element, shape (batch,)."""

    name = "ctc_loss"
    arity = 4
    extern = True

    def infer(self, inputs):
        _check_ctc_inputs(inputs)
        return Type(inputs[0].dtype, (inputs[0].shape[0],))

    def ref(self, logits, labels, label_length, input_length):
        return impl.ctc_loss(logits, labels, label_length, input_length).astype(logits.dtype)

    def vjp(self, node, g):
        grad = apply("ctc_loss_grad", list(node.inputs))
        g3 = gb.expand_dims(gb.expand_dims(g, 1), 2)
        return [gb.mul(g3, grad), None, None, None]


@register
class CtcLossGrad(Op):
    """d ctc_loss / d logits (batch, time, classes); zero past each element's input length."""

    name = "ctc_loss_grad"
    arity = 4
    extern = True
    nondifferentiable = True  # no second derivatives: vjp raises instead of returning zeros

    def infer(self, inputs):
        _check_ctc_inputs(inputs)
        return inputs[0]

    def ref(self, logits, labels, label_length, input_length):
        return impl.ctc_loss_grad(logits, labels, label_length, input_length) \
            .astype(logits.dtype)

    def vjp(self, node, g):
        raise SymkError("second derivatives of the CTC loss are not supported")


@register
class CtcDecode(Op):
    """Greedy (best path) or beam-search decoding of (batch, time, classes) logits, packed as
    float64 (batch, top_paths, 1 + time): the log-probability then the labels padded with -1.
    Greedy log-probabilities are TensorFlow's: minus the sum of each frame's largest logit."""

    name = "ctc_decode"
    arity = 2
    extern = True
    nondifferentiable = True
    attr_names = ("greedy", "beam_width", "top_paths", "merge_repeated")

    def infer(self, inputs, greedy, beam_width, top_paths, merge_repeated):
        logits, in_len = inputs
        if logits.ndim != 3 or not is_float(logits.dtype):
            raise ShapeError(f"ctc_decode: y_pred must be a float tensor (batch, time, "
                             f"classes), got {logits}")
        if in_len.ndim != 1 or not is_int(in_len.dtype):
            raise ShapeError(f"ctc_decode: input_length must be an int vector (batch,), "
                             f"got {in_len}")
        b = _dim(logits.shape[0], in_len.shape[0])
        t = logits.shape[1]
        return Type("float64", (b, 1 if greedy else top_paths, None if t is None else 1 + t))

    def ref(self, logits, input_length, greedy, beam_width, top_paths, merge_repeated):
        n_time = logits.shape[1]
        in_len = np.asarray(input_length, np.int64)
        if in_len.size and (in_len.min() < 0 or in_len.max() > n_time):
            raise ShapeError(f"ctc_decode: input_length values must be in [0, {n_time}] (the "
                             f"number of time steps), got {in_len.tolist()}")
        if greedy:
            paths, lp = impl.greedy_decode(logits, in_len)
        else:
            paths, lp = impl.beam_decode(logits, in_len, beam_width, top_paths, merge_repeated)
        return impl.pack(paths, lp, n_time)


@register
class CtcUnpackPath(Op):
    """Path ``path`` of a packed ``ctc_decode`` result as int64 (batch, longest decoded length)
    padded with -1 (TensorFlow's dense decoder output)."""

    name = "ctc_unpack_path"
    arity = 1
    extern = True
    nondifferentiable = True
    attr_names = ("path",)

    def infer(self, inputs, path):
        return Type("int64", (inputs[0].shape[0], None))

    def ref(self, packed, path):
        lab = packed[:, path, 1:]
        used = np.any(lab >= 0, axis=0)  # per column
        width = int(np.nonzero(used)[0][-1] + 1) if np.any(used) else 0
        return lab[:, :width].astype(np.int64)


@register
class CtcLabelIndices(Op):
    """(batch, position) int64 pairs (nnz, 2) of the first ``label_length[b]`` labels of each
    row, row-major: the indices of Keras's ``ctc_label_dense_to_sparse``."""

    name = "ctc_label_indices"
    arity = 2
    extern = True
    nondifferentiable = True

    def infer(self, inputs):
        labels, lengths = inputs
        if labels.ndim != 2:
            raise ShapeError(f"labels must have rank 2 (batch, max_label_length), got {labels}")
        if lengths.ndim != 1 or not is_int(lengths.dtype):
            raise DTypeError(f"label_lengths must be an int vector (batch,), got {lengths}")
        _dim(labels.shape[0], lengths.shape[0])
        return Type("int64", (None, 2))

    def ref(self, labels, lengths):
        n_lab = labels.shape[1]
        if lengths.size and (lengths.min() < 0 or lengths.max() > n_lab):
            raise ShapeError(f"label_lengths must be in [0, {n_lab}], got {lengths.tolist()}")
        mask = np.arange(n_lab)[None, :] < lengths[:, None]
        return np.argwhere(mask).astype(np.int64).reshape(-1, 2)
