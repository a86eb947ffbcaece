"""CTC in K (Keras 2.3.1 / TensorFlow semantics, blank = last class):
``ctc_label_dense_to_sparse``, ``ctc_batch_cost`` (with gradients) and ``ctc_decode``."""

from __future__ import annotations

from symk import config
from symk.backend._core import api, as_count
from symk.backend._sparse import SparseTensor
from symk.errors import ArgumentError, ShapeError
from symk.graph import build as gb
from symk.graph.node import Node, apply
from symk.graph.tensor import Tensor, to_node
from symk.graph.types import is_int


def _lengths(x, what: str) -> Node:
    """An int32 (batch,) vector from a (batch,) or (batch, 1) tensor."""
    node = to_node(x)
    if node.ndim == 2 and node.shape[1] in (1, None):
        node = gb.squeeze(node, 1) if node.shape[1] == 1 else gb.reshape(node, (-1,))
    if node.ndim != 1:
        raise ShapeError(f"{what} must have shape (batch, 1) or (batch,), got {node.type}")
    return node if node.dtype == "int32" else gb.cast(node, "int32")


def _int_labels(y_true) -> Node:
    node = to_node(y_true)
    if node.ndim != 2:
        raise ShapeError(f"the labels must have shape (batch, max_label_length), got "
                         f"{node.type}")
    return node if is_int(node.dtype) else gb.cast(node, "int32")


@api
def ctc_label_dense_to_sparse(labels, label_lengths):
    """The first ``label_lengths[b]`` labels of each row as a sparse tensor (int64 indices
    (batch, position), the label values, dense shape = the labels' shape)."""
    lab = to_node(labels)
    if lab.ndim != 2:
        raise ShapeError(f"labels must have shape (batch, max_label_length), got {lab.type}")
    lengths = _lengths(label_lengths, "label_lengths")
    indices = apply("ctc_label_indices", [lab, lengths])
    values = apply("sparse_gather", [lab, indices])
    dense_shape = gb.cast(gb.shape_of(lab), "int64")
    return SparseTensor(indices, values, dense_shape, lab.shape)


@api
def ctc_batch_cost(y_true, y_pred, input_length, label_length):
    """CTC negative log-likelihood per element, shape (batch, 1); y_pred are softmax outputs
    (batch, time, classes).  As in Keras, the loss is taken on ``log(y_pred + epsilon)``."""
    pred = to_node(y_pred)
    if pred.ndim != 3:
        raise ShapeError(f"y_pred must have shape (batch, time_steps, num_categories), got "
                         f"{pred.type}")
    logits = apply("log", [gb.add(pred, gb.lift(config.epsilon(), pred))])
    loss = apply("ctc_loss", [logits, _int_labels(y_true), _lengths(label_length,
                                                                    "label_length"),
                              _lengths(input_length, "input_length")])
    return Tensor(gb.expand_dims(loss, 1))


@api
def ctc_decode(y_pred, input_length, greedy=True, beam_width=100, top_paths=1,
               merge_repeated=False):
    """(list of int64 (batch, longest decoded length) tensors padded with -1, log-probabilities
    (batch, top_paths)): greedy best path (repeats merged, blanks dropped) or beam search."""
    pred = to_node(y_pred)
    if pred.ndim != 3:
        raise ShapeError(f"y_pred must have shape (batch, time_steps, num_categories), got "
                         f"{pred.type}")
    greedy = bool(greedy)
    if not greedy:
        beam_width = as_count(beam_width, "beam_width", 1)
        top_paths = as_count(top_paths, "top_paths", 1)
        if top_paths > beam_width:
            raise ArgumentError(f"top_paths ({top_paths}) must not exceed beam_width "
                                f"({beam_width})")
    logits = apply("log", [gb.add(pred, gb.lift(config.epsilon(), pred))])
    k = 1 if greedy else int(top_paths)
    packed = apply("ctc_decode", [logits, _lengths(input_length, "input_length")],
                   greedy=greedy, beam_width=1 if greedy else int(beam_width), top_paths=k,
                   merge_repeated=False if greedy else bool(merge_repeated))
    decoded = [Tensor(apply("ctc_unpack_path", [packed], path=j)) for j in range(k)]
    log_prob = gb.cast(apply("getitem", [packed], spec=(("s", None, None, None),
                                                               ("s", None, None, None),
                                                               ("i", 0))), pred.dtype)
    return decoded, Tensor(log_prob)
