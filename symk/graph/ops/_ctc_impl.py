"""Numpy algorithms behind the CTC ops (no graph code): the forward-backward (alpha-beta)
recursion in log space for the loss and its gradient, the best-path (greedy) decoder and the
prefix beam search decoder.  The blank is the last class, as in TensorFlow's use by Keras.

The loss recursions run over all batch elements at once on the extended label sequence
``blank, l1, blank, l2, ..., blank`` (``S = 2 * max_label_length + 1`` states); states past an
element's own ``2 * label_length + 1`` and frames past its ``input_length`` are masked.
"""

from __future__ import annotations

import numpy as np

from symk.errors import ShapeError
from symk.graph.ops.nn import LogSoftmax

NEG = -np.inf


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log_softmax over the classes (the last axis): the ``log_softmax`` op's reference."""
    return LogSoftmax().ref(x, axis=-1)


def _lse(*xs: np.ndarray) -> np.ndarray:
    """Elementwise log(sum(exp(x))) of same-shaped arrays, -inf when all are -inf."""
    m = xs[0]
    for x in xs[1:]:
        m = np.maximum(m, x)
    safe = np.where(np.isfinite(m), m, 0.0)
    s = sum(np.exp(x - safe) for x in xs)
    with np.errstate(divide="ignore"):
        return np.where(np.isneginf(m), NEG, safe + np.log(s))


def _shift(x: np.ndarray, k: int, fill: float | bool) -> np.ndarray:
    """x shifted along the last axis: out[..., s] = x[..., s - k] (``fill`` outside)."""
    out = np.full_like(x, fill)
    if k > 0:
        out[..., k:] = x[..., :-k]
    else:
        out[..., :k] = x[..., -k:]
    return out


def check_lengths(labels: np.ndarray, label_length: np.ndarray, input_length: np.ndarray,
                  n_time: int, n_classes: int) -> None:
    """Run-time checks of the integer inputs, with errors naming the argument."""
    n_lab = labels.shape[1]
    if label_length.size and (label_length.min() < 0 or label_length.max() > n_lab):
        raise ShapeError(f"ctc: label_length values must be in [0, {n_lab}] (the labels' "
                         f"width), got {label_length.tolist()}")
    if input_length.size and (input_length.min() < 0 or input_length.max() > n_time):
        raise ShapeError(f"ctc: input_length values must be in [0, {n_time}] (the number of "
                         f"time steps), got {input_length.tolist()}")
    used = np.arange(n_lab)[None, :] < label_length[:, None]
    vals = labels[used]
    if vals.size and (vals.min() < 0 or vals.max() >= n_classes - 1):
        raise ShapeError(f"ctc: label values must be in [0, {n_classes - 1}) (class "
                         f"{n_classes - 1} of {n_classes} is the blank), got values in "
                         f"[{vals.min()}, {vals.max()}]")


def _extended(labels: np.ndarray, label_length: np.ndarray, blank: int):
    """(ext labels (B, S), valid state mask, skip mask: state s may be entered from s - 2)."""
    b, n_lab = labels.shape
    n_states = 2 * n_lab + 1
    ext = np.full((b, n_states), blank, np.int64)
    ext[:, 1::2] = labels
    valid = np.arange(n_states)[None, :] < (2 * label_length[:, None] + 1)
    skip = np.zeros((b, n_states), bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    return ext, valid, skip


def _forward_backward(logits, labels, label_length, input_length, backward: bool):
    """(log p(label | input) per element, log alpha, log beta-hat or None, log-probs, ext)."""
    logits = np.asarray(logits, np.float64)
    b, n_time, n_classes = logits.shape
    labels = np.asarray(labels, np.int64)
    label_length = np.asarray(label_length, np.int64).reshape(b)
    input_length = np.asarray(input_length, np.int64).reshape(b)
    check_lengths(labels, label_length, input_length, n_time, n_classes)
    blank = n_classes - 1
    logp = log_softmax(logits)
    used = np.arange(labels.shape[1])[None, :] < label_length[:, None]
    ext, valid, skip = _extended(np.where(used, labels, 0), label_length, blank)
    n_states = ext.shape[1]
    emit = np.take_along_axis(logp, np.broadcast_to(ext[:, None, :], (b, n_time, n_states)),
                              axis=2)
    alpha = np.full((b, n_time, n_states), NEG)
    a = np.full((b, n_states), NEG)
    if n_time:
        a[:, :2] = emit[:, 0, :2]
        a = np.where(valid & (input_length > 0)[:, None], a, NEG)
        alpha[:, 0] = a
    for t in range(1, n_time):
        new = _lse(a, _shift(a, 1, NEG), np.where(skip, _shift(a, 2, NEG), NEG)) + emit[:, t]
        active = (valid & (t < input_length)[:, None])
        alpha[:, t] = np.where(active, new, NEG)
        a = np.where((t < input_length)[:, None], alpha[:, t], a)
    last = 2 * label_length  # index of the final blank state
    rows = np.arange(b)
    end_a = a[rows, last]
    end_b = np.where(last >= 1, a[rows, np.maximum(last - 1, 0)], NEG)
    log_p = np.logaddexp(end_a, end_b)
    log_p = np.where(input_length == 0, np.where(label_length == 0, 0.0, NEG), log_p)
    beta = None
    if backward:
        beta = np.full((b, n_time, n_states), NEG)
        init = np.full((b, n_states), NEG)
        init[rows, last] = 0.0
        init[rows, np.maximum(last - 1, 0)] = np.where(last >= 1, 0.0, init[rows, 0])
        cur = np.full((b, n_states), NEG)
        skip_next = _shift(skip, -2, False)
        for t in range(n_time - 1, -1, -1):
            if t + 1 < n_time:
                x = cur + emit[:, t + 1]
                rec = _lse(x, _shift(x, -1, NEG), np.where(skip_next, _shift(x, -2, NEG), NEG))
            else:
                rec = np.full((b, n_states), NEG)
            first = (t == input_length - 1)[:, None]
            inside = (t < input_length - 1)[:, None]
            cur = np.where(first, init, np.where(inside & valid, rec, NEG))
            beta[:, t] = cur
    return log_p, alpha, beta, logp, ext


def ctc_loss(logits, labels, label_length, input_length) -> np.ndarray:
    """-log p(labels | softmax(logits)) per batch element (+inf when no alignment exists)."""
    log_p, *_ = _forward_backward(logits, labels, label_length, input_length, backward=False)
    return -log_p


def ctc_loss_grad(logits, labels, label_length, input_length) -> np.ndarray:
    """d ctc_loss / d logits: softmax(logits) - posterior class occupancy on the first
    ``input_length`` frames, zero after them and for elements with no alignment."""
    log_p, alpha, beta, logp, ext = _forward_backward(logits, labels, label_length,
                                                      input_length, backward=True)
    b, n_time, n_classes = logp.shape
    input_length = np.asarray(input_length, np.int64).reshape(b)
    ok = np.isfinite(log_p)
    occ = np.exp(alpha + beta - np.where(ok, log_p, 0.0)[:, None, None])  # (B, T, S)
    onehot = np.zeros((b, ext.shape[1], n_classes))
    np.put_along_axis(onehot, ext[:, :, None], 1.0, axis=2)
    post = np.einsum("bts,bsc->btc", occ, onehot)
    live = (np.arange(n_time)[None, :] < input_length[:, None])[:, :, None]
    grad = np.where(live, np.exp(logp) - post, 0.0)
    return np.where(ok[:, None, None], grad, 0.0)


def greedy_decode(logits: np.ndarray, input_length: np.ndarray):
    """Best path per element: (list of label arrays, log-prob column (B, 1)).  The log
    probability is TensorFlow's: minus the sum over frames of the largest logit."""
    logits = np.asarray(logits, np.float64)
    blank = logits.shape[2] - 1
    paths, scores = [], np.zeros((logits.shape[0], 1))
    for i, n in enumerate(np.asarray(input_length, np.int64).reshape(-1)):
        best = np.argmax(logits[i, :n], axis=-1)
        scores[i, 0] = -np.sum(np.max(logits[i, :n], axis=-1)) if n else 0.0
        new = np.ones(len(best), bool)
        new[1:] = best[1:] != best[:-1]
        paths.append(best[new & (best != blank)])
    return [paths], scores


def beam_search(scores: np.ndarray, width: int, top_paths: int):
    """Prefix beam search over one element's frame scores (T, C), log space.  Returns the
    ``top_paths`` best label sequences and their log scores, best first."""
    n_time, n_classes = scores.shape
    blank = n_classes - 1
    prefixes: list[tuple[int, ...]] = [()]
    pb = np.array([0.0])  # log score of the prefix ending in a blank
    pn = np.array([NEG])  # ... ending in its last label
    for t in range(n_time):
        row = scores[t]
        total = np.logaddexp(pb, pn)
        last = np.array([p[-1] if p else -1 for p in prefixes])
        # extensions by one label: from a blank ending only when the label repeats the last
        ext = total[:, None] + row[None, :-1]
        rep = last >= 0
        ext[rep, last[rep]] = pb[rep] + row[last[rep]]
        new_pb = total + row[blank]
        new_pn = np.where(rep, pn + row[np.maximum(last, 0)], NEG)
        index = {p: k for k, p in enumerate(prefixes)}
        for k, p in enumerate(prefixes):  # an extension that is already a beam merges into it
            if p:
                j = index.get(p[:-1])
                if j is not None:
                    new_pn[k] = np.logaddexp(new_pn[k], ext[j, p[-1]])
                    ext[j, p[-1]] = NEG
        cand = np.concatenate([np.logaddexp(new_pb, new_pn), ext.reshape(-1)])
        keep = min(width, int(np.sum(cand > NEG)) or 1)
        order = np.argsort(-cand, kind="stable")[:keep]
        nb = len(prefixes)
        new_prefixes, npb, npn = [], [], []
        for o in order:
            if o < nb:
                new_prefixes.append(prefixes[o])
                npb.append(new_pb[o])
                npn.append(new_pn[o])
            else:
                j, c = divmod(int(o - nb), n_classes - 1)
                new_prefixes.append(prefixes[j] + (c,))
                npb.append(NEG)
                npn.append(ext[j, c])
        prefixes, pb, pn = new_prefixes, np.array(npb), np.array(npn)
    total = np.logaddexp(pb, pn)
    order = np.argsort(-total, kind="stable")[:top_paths]
    return [prefixes[o] for o in order], [float(total[o]) for o in order]


def beam_decode(logits: np.ndarray, input_length: np.ndarray, width: int, top_paths: int,
                merge_repeated: bool):
    """Beam search per element on the frame log-probabilities (log-softmax of the logits):
    (per path a list of label arrays, log-probabilities of the label sequences (B, top))."""
    logits = np.asarray(logits, np.float64)
    b = logits.shape[0]
    paths: list[list[np.ndarray]] = [[] for _ in range(top_paths)]
    logprob = np.full((b, top_paths), NEG)
    for i, n in enumerate(np.asarray(input_length, np.int64).reshape(-1)):
        sc = log_softmax(logits[i, :n])
        seqs, lps = beam_search(sc, width, top_paths)
        for k in range(top_paths):
            seq = np.asarray(seqs[k] if k < len(seqs) else (), np.int64)
            if merge_repeated and seq.size:
                seq = seq[np.concatenate([[True], seq[1:] != seq[:-1]])]
            paths[k].append(seq)
            if k < len(lps):
                logprob[i, k] = lps[k]
    return paths, logprob


def pack(paths: list[list[np.ndarray]], logprob: np.ndarray, n_time: int) -> np.ndarray:
    """Decoder results as one float64 array (B, top_paths, 1 + T): the log-probability, then
    the labels padded with -1."""
    b, k = logprob.shape
    out = np.full((b, k, 1 + n_time), -1.0)
    out[:, :, 0] = logprob
    for j, per in enumerate(paths):
        for i, seq in enumerate(per):
            out[i, j, 1:1 + len(seq)] = seq
    return out
