"""Keras 2.3.1 recurrent layers on symk: SimpleRNN, LSTM and GRU (``K.rnn``: scanned and
unrolled), return_sequences both ways, Bidirectional, Embedding with ``mask_zero``.

Numbers are checked against independent references: a SimpleRNN's outputs against a numpy
loop over the layer's own weights, masking against the same sequences with more padding, and
training against held-out accuracy on small synthetic sequence tasks.
"""

from __future__ import annotations

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
from keras import layers as L
from keras import optimizers as O

pytestmark = pytest.mark.keras

T = 10


def sum_sign_task(n: int, seed: int, steps: int = T) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of Gaussian numbers; the label is whether their sum is positive."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, steps, 1)).astype("float32")
    return x, (x.sum(axis=(1, 2)) > 0).astype("float32")


def running_sign_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step labels: is the running sum of the sequence so far positive?"""
    x, _ = sum_sign_task(n, seed)
    return x, (np.cumsum(x[:, :, 0], axis=1) > 0).astype("float32")[:, :, None]


def token_task(n: int, seed: int, max_len: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Token sequences 1..4 of random lengths, zero-padded at the end; the label is whether
    token 1 occurs more often than token 2 (ties dropped)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    while len(xs) < n:
        length = int(rng.integers(3, max_len + 1))
        seq = rng.integers(1, 5, size=length)
        c1, c2 = int((seq == 1).sum()), int((seq == 2).sum())
        if c1 == c2:
            continue
        row = np.zeros(max_len, "int32")
        row[:length] = seq
        xs.append(row)
        ys.append(float(c1 > c2))
    return np.stack(xs), np.asarray(ys, "float32")


def _accuracy(model, x, y) -> float:
    p = model.predict(x, batch_size=256).reshape(-1)
    return float(((p > 0.5) == (y.reshape(-1) > 0.5)).mean())


def _fit(model, x, y, epochs: int, lr: float = 0.02, batch: int = 64) -> None:
    model.compile(O.Adam(lr), "binary_crossentropy")
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_simple_rnn_matches_numpy(unroll, go_backwards):
    rng = np.random.default_rng(0)
    layer = L.SimpleRNN(5, return_sequences=True, unroll=unroll, go_backwards=go_backwards)
    model = keras.Sequential([layer], )
    model.build((None, 6, 3))
    x = rng.standard_normal((4, 6, 3)).astype("float32")
    got = model.predict(x)
    w, u, b = layer.get_weights()
    h = np.zeros((4, 5), np.float32)
    outs = []
    for t in (range(5, -1, -1) if go_backwards else range(6)):
        h = np.tanh(x[:, t] @ w + h @ u + b)
        outs.append(h)
    np.testing.assert_allclose(got, np.stack(outs, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_layer_trains(cell):
    x, y = sum_sign_task(640, 1)
    xt, yt = sum_sign_task(400, 2)
    np.random.seed(0)
    model = keras.Sequential([getattr(L, cell)(16, input_shape=(T, 1)),
                              L.Dense(1, activation="sigmoid")])
    _fit(model, x, y, epochs=8)
    acc = _accuracy(model, xt, yt)
    assert acc >= 0.85, f"{cell}: held-out accuracy {acc:.3f}"


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_layer_return_sequences_trains(cell):
    """return_sequences=True: every step's output is trained on a per-step label (one step's
    input alone gives about 0.69 of the labels)."""
    x, y = running_sign_task(640, 3)
    xt, yt = running_sign_task(300, 4)
    np.random.seed(0)
    model = keras.Sequential([getattr(L, cell)(16, return_sequences=True, input_shape=(T, 1)),
                              L.TimeDistributed(L.Dense(1, activation="sigmoid"))])
    assert model.output_shape == (None, T, 1)
    _fit(model, x, y, epochs=8)
    acc = _accuracy(model, xt, yt)
    assert acc >= 0.85, f"{cell}: held-out per-step accuracy {acc:.3f}"


def test_bidirectional_return_sequences_trains():
    """A per-step label (is the running sum positive?) through Bidirectional(LSTM, sequences)
    and a TimeDistributed Dense."""
    x, y = running_sign_task(640, 3)
    xt, yt = running_sign_task(300, 4)
    np.random.seed(0)
    model = keras.Sequential([
        L.Bidirectional(L.LSTM(12, return_sequences=True), input_shape=(T, 1)),
        L.TimeDistributed(L.Dense(1, activation="sigmoid"))])
    _fit(model, x, y, epochs=6)
    acc = _accuracy(model, xt, yt)
    assert acc >= 0.85, f"held-out per-step accuracy {acc:.3f}"


def test_embedding_mask_zero_trains_and_ignores_padding():
    x, y = token_task(768, 5, max_len=8)
    xt, yt = token_task(400, 6, max_len=8)
    np.random.seed(0)
    model = keras.Sequential([L.Embedding(5, 8, mask_zero=True),
                              L.Bidirectional(L.GRU(12)),
                              L.Dense(1, activation="sigmoid")])
    _fit(model, x, y, epochs=10)
    acc = _accuracy(model, xt, yt)
    assert acc >= 0.85, f"held-out accuracy {acc:.3f}"
    # masked steps leave outputs and states alone: more padding changes nothing
    longer = np.concatenate([xt[:50], np.zeros((50, 5), "int32")], axis=1)
    np.testing.assert_allclose(model.predict(longer), model.predict(xt[:50]), rtol=1e-5,
                               atol=1e-6)


def test_recurrent_dropout_trains_and_predicts_deterministically():
    """Cells build their dropout masks on the first call (outside the loop): training uses
    them, prediction (learning phase 0) does not."""
    x, y = sum_sign_task(256, 7)
    np.random.seed(0)
    model = keras.Sequential([L.LSTM(8, dropout=0.3, recurrent_dropout=0.3, input_shape=(T, 1)),
                              L.Dense(1, activation="sigmoid")])
    model.compile(O.Adam(0.02), "binary_crossentropy")
    h = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    assert np.all(np.isfinite(h.history["loss"]))
    np.testing.assert_array_equal(model.predict(x[:20]), model.predict(x[:20]))
    # training-mode outputs differ from test-mode ones (the masks are in the graph)
    f_train = keras.backend.function([model.input, keras.backend.learning_phase()],
                                     [model.output])
    assert not np.allclose(f_train([x[:20], 1])[0], f_train([x[:20], 0])[0])
