"""K.ctc_batch_cost, K.ctc_decode and K.ctc_label_dense_to_sparse against independent numpy
references written here: brute-force enumeration of every alignment (all classes^time paths)
for the loss and the beam search, a hand-written best-path decoder, and the numbers of Keras
2.3.1's own backend tests (computed by TensorFlow)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError, ShapeError, SymkError
from tests.harness import available_devices

EPS = 1e-7  # K.epsilon(): Keras takes logs of y_pred + epsilon


def _log_probs(y):
    """Per-frame log-probabilities the CTC functions use: log-softmax of log(y + eps)."""
    z = np.log(np.asarray(y, np.float64) + EPS)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _collapse(path, blank):
    out = []
    prev = None
    for c in path:
        if c != prev and c != blank:
            out.append(int(c))
        prev = c
    return tuple(out)


def brute_force(y, n_frames):
    """{labelling: log p} summing exp(sum of log-probs) over every alignment of n frames."""
    lp = _log_probs(y)[:n_frames]
    n_cls = lp.shape[1]
    acc: dict[tuple, float] = {}
    for path in itertools.product(range(n_cls), repeat=n_frames):
        lab = _collapse(path, n_cls - 1)
        acc[lab] = np.logaddexp(acc.get(lab, -np.inf), lp[np.arange(n_frames), path].sum())
    return acc


def _softmax_probs(rng, shape):
    x = rng.normal(size=shape) * 1.5
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _ctc_fn(dev, dynamic, width=3):
    shape = (None, None, None) if dynamic else None
    yt = K.placeholder((None, width) if dynamic else (3, width))
    yp = K.placeholder(shape if dynamic else (3, 5, 4))
    il = K.placeholder((None, 1), dtype="int32")
    ll = K.placeholder((None, 1), dtype="int32")
    return K.function([yt, yp, il, ll], [K.ctc_batch_cost(yt, yp, il, ll)], device=dev)


@pytest.mark.parametrize("dev", available_devices())
@pytest.mark.parametrize("dynamic", [False, True])
def test_ctc_batch_cost_matches_brute_force(dev, dynamic):
    rng = np.random.default_rng(0)
    y = _softmax_probs(rng, (3, 5, 4))
    # repeated labels (need a blank between them), a shorter label, an empty label; labels
    # are floats as Keras feeds them, padding past label_length is arbitrary
    labels = np.array([[1, 1, 0], [2, 0, 9], [7, 7, 7]], np.float32)
    il = np.array([[5], [4], [3]], np.int32)
    ll = np.array([[3], [2], [0]], np.int32)
    out = _ctc_fn(dev, dynamic)([labels, y, il, ll])[0]
    assert out.shape == (3, 1) and out.dtype == np.float32
    for b in range(3):
        ref = brute_force(y[b], il[b, 0])
        want = -ref[tuple(int(v) for v in labels[b, :ll[b, 0]])]
        np.testing.assert_allclose(out[b, 0], want, rtol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_batch_cost_keras_example(dev):
    """Keras 2.3.1's test_ctc data and TensorFlow's losses (the -1 is padding)."""
    y = np.asarray(
        [[[0.633766, 0.221185, 0.0917319, 0.0129757, 0.0142857, 0.0260553],
          [0.111121, 0.588392, 0.278779, 0.0055756, 0.00569609, 0.010436],
          [0.0357786, 0.633813, 0.321418, 0.00249248, 0.00272882, 0.0037688],
          [0.0663296, 0.643849, 0.280111, 0.00283995, 0.0035545, 0.00331533],
          [0.458235, 0.396634, 0.123377, 0.00648837, 0.00903441, 0.00623107]],
         [[0.30176, 0.28562, 0.0831517, 0.0862751, 0.0816851, 0.161508],
          [0.24082, 0.397533, 0.0557226, 0.0546814, 0.0557528, 0.19549],
          [0.230246, 0.450868, 0.0389607, 0.038309, 0.0391602, 0.202456],
          [0.280884, 0.429522, 0.0326593, 0.0339046, 0.0326856, 0.190345],
          [0.423286, 0.315517, 0.0338439, 0.0393744, 0.0339315, 0.154046]]], np.float32)
    labels = K.variable(np.array([[0, 1, 2, 1, 0], [0, 1, 1, 0, -1]]), dtype="int32")
    loss = K.ctc_batch_cost(labels, K.variable(y), K.variable([[5], [5]], dtype="int32"),
                            K.variable([[5], [4]], dtype="int32"))
    out = K.function([], [loss], device=dev)([])[0]
    np.testing.assert_allclose(out[:, 0], [3.34211, 5.42262], atol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_batch_cost_infeasible_is_inf(dev):
    """'1 1' needs three frames (a blank between the repeats): with two the loss is +inf."""
    y = _softmax_probs(np.random.default_rng(1), (3, 5, 4))
    labels = np.array([[1, 1, 0]] * 3, np.float32)
    out = _ctc_fn(dev, False)([labels, y, np.array([[2], [3], [5]]), np.array([[2]] * 3)])[0]
    assert np.isposinf(out[0, 0]) and np.all(np.isfinite(out[1:]))


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_batch_cost_is_stable_for_peaked_predictions(dev):
    """Near one-hot predictions over many frames: log space keeps the loss finite and
    accurate where a product of probabilities would underflow."""
    n_time = 300
    y = np.full((1, n_time, 3), 1e-30, np.float64)
    y[0, :, 2] = 1.0  # all blank ...
    y[0, 100, 0] = 1.0  # ... but one frame says "0"
    y[0, 100, 2] = 1e-30
    y /= y.sum(-1, keepdims=True)
    with _floatx("float64"):
        yt = K.placeholder((1, 1))
        yp = K.placeholder((1, n_time, 3))
        il = K.placeholder((1, 1), dtype="int32")
        ll = K.placeholder((1, 1), dtype="int32")
        f = K.function([yt, yp, il, ll], [K.ctc_batch_cost(yt, yp, il, ll)], device=dev)
        good = f([np.zeros((1, 1)), y, [[n_time]], [[1]]])[0][0, 0]
        bad = f([np.ones((1, 1)), y, [[n_time]], [[1]]])[0][0, 0]
    # the loss of the right label is ~0; of a label never predicted ~ -log(eps) ~ 16.1 + ...
    assert 0 <= good < 1e-4
    assert np.isfinite(bad) and bad > 10


class _floatx:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = K.floatx()
        K.set_floatx(self.dtype)

    def __exit__(self, *exc):
        K.set_floatx(self.old)


def greedy_ref(y, lengths):
    """Hand-written best path: argmax per frame, merge repeats, drop blanks."""
    blank = y.shape[2] - 1
    seqs, lps = [], []
    for b, n in enumerate(lengths):
        best = [int(np.argmax(y[b, t])) for t in range(n)]
        seqs.append(_collapse(best, blank))
        lps.append(-sum(np.log(y[b, t, best[t]] + EPS) for t in range(n)))
    width = max(len(s) for s in seqs)
    dense = np.full((len(seqs), width), -1, np.int64)
    for b, s in enumerate(seqs):
        dense[b, :len(s)] = s
    return dense, np.array(lps)[:, None]


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_decode_greedy_keras_example(dev):
    """Keras 2.3.1's test_ctc_decode_greedy data: decodes [0, 1] and [1, 1, 0]."""
    p0 = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4, 0.6], [0.0, 0.0, 0.4, 0.6],
                   [0.0, 0.9, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    p1 = np.array([[0.1, 0.9, 0.0, 0.0], [0.0, 0.9, 0.1, 0.0], [0.0, 0.0, 0.1, 0.9],
                   [0.0, 0.9, 0.1, 0.1], [0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    y = np.stack([p0, p1]).astype(np.float32)
    yp = K.placeholder((None, 6, 4))
    il = K.placeholder((None,), dtype="int32")
    dec, lp = K.ctc_decode(yp, il, greedy=True)
    assert len(dec) == 1
    d, logp = K.function([yp, il], [dec[0], lp], device=dev)([y, np.array([4, 5])])
    np.testing.assert_array_equal(d, [[0, 1, -1], [1, 1, 0]])
    assert d.dtype == np.int64 and logp.shape == (2, 1) and logp.dtype == np.float32
    want = [-np.log([1.0, 0.6, 0.6, 0.9]).sum(), -np.log([0.9, 0.9, 0.9, 0.9, 0.9]).sum()]
    np.testing.assert_allclose(logp[:, 0], want, rtol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_decode_greedy_random(dev):
    rng = np.random.default_rng(3)
    y = _softmax_probs(rng, (5, 9, 4))
    lengths = np.array([9, 1, 5, 7, 9], np.int32)
    yp = K.placeholder((None, None, 4))
    il = K.placeholder((None,), dtype="int32")
    dec, lp = K.ctc_decode(yp, il)
    d, logp = K.function([yp, il], [dec[0], lp], device=dev)([y, lengths])
    want_d, want_lp = greedy_ref(y, lengths)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_allclose(logp, want_lp, rtol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_decode_beam_keras_example(dev):
    """Keras 2.3.1's test_ctc_decode_beam_search: TensorFlow's beams and log-probabilities
    (inputs scaled by e^2: only the per-frame distribution matters)."""
    p = np.array([[0.30999, 0.309938, 0.0679938, 0.0673362, 0.0708352, 0.173908],
                  [0.215136, 0.439699, 0.0370931, 0.0393967, 0.0381581, 0.230517],
                  [0.199959, 0.489485, 0.0233221, 0.0251417, 0.0233289, 0.238763],
                  [0.279611, 0.452966, 0.0204795, 0.0209126, 0.0194803, 0.20655],
                  [0.51286, 0.288951, 0.0243026, 0.0220788, 0.0219297, 0.129878],
                  [0.155251, 0.164444, 0.173517, 0.176138, 0.169979, 0.160671]])
    y = np.concatenate([np.exp(np.log(p[:5]) + 2.0), np.ones((2, 6))])[None].astype("float32")
    yp = K.variable(y)
    dec, lp = K.ctc_decode(yp, K.variable(np.array([5]), dtype="int32"), greedy=False,
                           beam_width=2, top_paths=2)
    assert len(dec) == 2
    outs = K.function([], dec + [lp], device=dev)([])
    np.testing.assert_array_equal(outs[0], [[1, 0]])
    np.testing.assert_array_equal(outs[1], [[0, 1, 0]])
    np.testing.assert_allclose(outs[2], [[-3.5821197, -3.777835]], rtol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
@pytest.mark.parametrize("seed", [0, 1])
def test_ctc_decode_beam_matches_brute_force(dev, seed):
    """A beam wide enough to keep every prefix is exact: the top paths are the most probable
    labellings, with their exact log-probabilities."""
    rng = np.random.default_rng(seed)
    y = _softmax_probs(rng, (2, 5, 3))
    lengths = np.array([5, 4], np.int32)
    yp = K.placeholder((None, 5, 3))
    il = K.placeholder((None,), dtype="int32")
    dec, lp = K.ctc_decode(yp, il, greedy=False, beam_width=64, top_paths=3)
    outs = K.function([yp, il], dec + [lp], device=dev)([y, lengths])
    for b in range(2):
        ref = sorted(brute_force(y[b], lengths[b]).items(), key=lambda kv: -kv[1])[:3]
        for k, (lab, logp) in enumerate(ref):
            row = outs[k][b]
            assert tuple(int(v) for v in row[row >= 0]) == lab
            assert np.all(row[len(lab):] == -1)
            np.testing.assert_allclose(outs[3][b, k], logp, rtol=1e-5)


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_decode_beam_merge_repeated(dev):
    """merge_repeated collapses repeated labels in the output beams (TensorFlow's option)."""
    y = np.full((1, 3, 3), 0.01, np.float32)
    y[0, [0, 2], 0] = 0.98
    y[0, 1, 2] = 0.98  # "0 blank 0" -> labelling (0, 0)
    yp = K.variable(y)
    il = K.variable(np.array([3]), dtype="int32")
    plain = K.function([], K.ctc_decode(yp, il, greedy=False, beam_width=8)[0], device=dev)([])
    merged = K.function([], K.ctc_decode(yp, il, greedy=False, beam_width=8,
                                         merge_repeated=True)[0], device=dev)([])
    np.testing.assert_array_equal(plain[0], [[0, 0]])
    np.testing.assert_array_equal(merged[0], [[0]])


@pytest.mark.parametrize("dev", available_devices())
def test_ctc_label_dense_to_sparse(dev):
    labels = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8]], np.int32)
    lengths = np.array([2, 0, 4], np.int32)
    lab = K.placeholder((None, 4), dtype="int32")
    ln = K.placeholder((None,), dtype="int32")
    st = K.ctc_label_dense_to_sparse(lab, ln)
    assert K.is_sparse(st)
    idx, vals, shape, dense = K.function([lab, ln], [st.indices, st.values, st.dense_shape,
                                                     K.to_dense(st)], device=dev)([labels,
                                                                                   lengths])
    np.testing.assert_array_equal(idx, [[0, 0], [0, 1], [2, 0], [2, 1], [2, 2], [2, 3]])
    np.testing.assert_array_equal(vals, [3, 1, 5, 3, 5, 8])
    np.testing.assert_array_equal(shape, [3, 4])
    assert idx.dtype == np.int64 and shape.dtype == np.int64
    mask = np.arange(4)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(dense, np.where(mask, labels, 0))


# ---------------------------------------------------------------- errors


def test_errors_at_build_time():
    yp = K.placeholder((2, 5, 4))
    with pytest.raises(ShapeError, match="y_pred"):
        K.ctc_batch_cost(K.placeholder((2, 3)), K.placeholder((2, 5)), K.placeholder((2, 1)),
                         K.placeholder((2, 1)))
    with pytest.raises(ShapeError, match="batch sizes"):
        K.ctc_batch_cost(K.placeholder((3, 3)), yp, K.placeholder((2, 1)),
                         K.placeholder((2, 1)))
    with pytest.raises(ShapeError, match="input_length"):
        K.ctc_batch_cost(K.placeholder((2, 3)), yp, K.placeholder((2, 2)),
                         K.placeholder((2, 1)))
    with pytest.raises(ArgumentError, match="top_paths"):
        K.ctc_decode(yp, K.placeholder((2,)), greedy=False, beam_width=2, top_paths=3)
    with pytest.raises(ArgumentError, match="beam_width"):
        K.ctc_decode(yp, K.placeholder((2,)), greedy=False, beam_width=0)


@pytest.mark.parametrize("labels,il,ll,match", [
    ([[3, 0]], 5, 1, "blank"),  # the blank (last class) is not a label
    ([[-1, 0]], 5, 1, "label values"),
    ([[0, 0]], 5, 3, "label_length"),
    ([[0, 0]], 6, 1, "input_length"),
])
def test_errors_at_run_time(labels, il, ll, match):
    yt = K.placeholder((1, 2))
    yp = K.placeholder((1, 5, 4))
    ilp, llp = K.placeholder((1, 1)), K.placeholder((1, 1))
    f = K.function([yt, yp, ilp, llp], [K.ctc_batch_cost(yt, yp, ilp, llp)],
                   device=available_devices()[0])
    with pytest.raises(SymkError, match=match):
        f([np.array(labels, np.float32), np.full((1, 5, 4), 0.25, np.float32), [[il]], [[ll]]])
