"""Keras 2.3.1 on symk: a CTC model (a Lambda computing ``K.ctc_batch_cost``, as in Keras's
image_ocr example) trains and decodes with ``K.ctc_decode``; a model with a sparse ``Input``
trains on scipy.sparse data.  References are independent: a brute-force CTC loss and
predictions recomputed in numpy from the layer weights."""

from __future__ import annotations

import itertools

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
import scipy.sparse as sp
from keras import backend as K
from keras import layers as L
from keras import optimizers as O

pytestmark = pytest.mark.keras

N_TIME, N_FEAT, N_LAB, MAX_LEN = 10, 5, 3, 3  # classes: 3 labels + the blank


def ctc_data(n: int, seed: int):
    """Frames that spell the labels: each label shows its one-hot feature for two frames,
    a 'gap' feature (index 4) separates them; features are noisy."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, N_TIME, N_FEAT), np.float32)
    x[:, :, 4] = 1.0
    labels = np.zeros((n, MAX_LEN), np.float32)
    lengths = rng.integers(1, MAX_LEN + 1, n)
    for i in range(n):
        seq = rng.integers(0, N_LAB, lengths[i])
        labels[i, :lengths[i]] = seq
        for k, c in enumerate(seq):
            t = 1 + 3 * k
            x[i, t:t + 2, 4] = 0.0
            x[i, t:t + 2, c] = 1.0
    x += rng.normal(scale=0.1, size=x.shape).astype(np.float32)
    return x, labels, lengths.reshape(-1, 1).astype(np.int32)


def ctc_models():
    inp = L.Input((N_TIME, N_FEAT), name="frames")
    h = L.Dense(16, activation="tanh")(inp)
    y_pred = L.Dense(N_LAB + 1, activation="softmax", name="probs")(h)
    labels = L.Input((MAX_LEN,), name="labels")
    input_length = L.Input((1,), name="input_length", dtype="int32")
    label_length = L.Input((1,), name="label_length", dtype="int32")
    loss = L.Lambda(lambda a: K.ctc_batch_cost(*a), output_shape=(1,), name="ctc")(
        [labels, y_pred, input_length, label_length])
    train = keras.models.Model([inp, labels, input_length, label_length], loss)
    train.compile(optimizer=O.Adam(0.03), loss={"ctc": lambda y_true, y_out: y_out})
    return train, keras.models.Model(inp, y_pred)


def brute_force_nll(probs: np.ndarray, label: tuple[int, ...]) -> float:
    """-log p(label) summing every alignment (classes^frames paths) of (frames, classes)."""
    lp = np.log(probs.astype(np.float64) + K.epsilon())
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    n_t, n_c = lp.shape
    total = -np.inf
    for path in itertools.product(range(n_c), repeat=n_t):
        out, prev = [], None
        for c in path:
            if c != prev and c != n_c - 1:
                out.append(c)
            prev = c
        if tuple(out) == label:
            total = np.logaddexp(total, lp[np.arange(n_t), path].sum())
    return -total


def test_ctc_model_trains_and_decodes():
    np.random.seed(0)
    train, predict = ctc_models()
    x, labels, lengths = ctc_data(96, 0)
    il = np.full((len(x), 1), N_TIME, np.int32)
    ins = {"frames": x, "labels": labels, "input_length": il, "label_length": lengths}
    dummy = np.zeros((len(x), 1), np.float32)
    # the model's loss is the CTC loss: one element against brute force over its first 5
    # frames (a label of length <= 2 fits in them)
    i = int(np.nonzero(lengths[:, 0] <= 2)[0][0])
    short = {"frames": x[i:i + 1], "labels": labels[i:i + 1], "input_length": np.array([[5]]),
             "label_length": lengths[i:i + 1]}
    p5 = predict.predict(x[i:i + 1])[0, :5]
    lab = tuple(int(v) for v in labels[i, :lengths[i, 0]])
    np.testing.assert_allclose(train.predict(short)[0, 0], brute_force_nll(p5, lab), rtol=1e-4)
    first = train.evaluate(ins, dummy, batch_size=32, verbose=0)
    hist = train.fit(ins, dummy, batch_size=32, epochs=15, verbose=0, shuffle=False)
    last = train.evaluate(ins, dummy, batch_size=32, verbose=0)
    losses = hist.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[1] < losses[0] and last < 0.5 * first, (first, losses, last)
    # decode with K.ctc_decode on the prediction model's output
    y_in = K.placeholder((None, N_TIME, N_LAB + 1))
    ln = K.placeholder((None,), dtype="int32")
    dec, logp = K.ctc_decode(y_in, ln, greedy=True)
    decode = K.function([y_in, ln], [dec[0], logp])
    probs = predict.predict(x)
    d, lp = decode([probs, il[:, 0]])
    assert d.shape[0] == len(x) and lp.shape == (len(x), 1)
    correct = 0
    for i in range(len(x)):
        want = labels[i, :lengths[i, 0]].astype(np.int64)
        row = d[i][d[i] >= 0]
        correct += row.shape == want.shape and bool(np.all(row == want))
        assert np.all(d[i][len(row):] == -1)
    assert correct / len(x) >= 0.8, correct
    # beam search agrees with the best path on these confident predictions
    bdec, blp = K.ctc_decode(y_in, ln, greedy=False, beam_width=8, top_paths=2)
    b0, b1, bl = K.function([y_in, ln], bdec + [blp])([probs[:8], il[:8, 0]])
    assert bl.shape == (8, 2) and np.all(bl[:, 0] >= bl[:, 1])


def test_sparse_input_dense_model_trains_on_scipy_data():
    np.random.seed(1)
    rng = np.random.default_rng(1)
    n, dim = 256, 40
    x = sp.random(n, dim, density=0.15, format="csr", random_state=2, dtype=np.float32)
    w_true = rng.normal(size=(dim, 3))
    y = np.argmax(x.toarray() @ w_true, axis=1)
    inp = L.Input((dim,), sparse=True)
    assert K.is_sparse(inp)
    out = L.Dense(3, activation="softmax")(inp)
    model = keras.models.Model(inp, out)
    model.compile(optimizer=O.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    first = model.evaluate(x, y, batch_size=64, verbose=0)[0]
    model.fit(x, y, batch_size=32, epochs=20, verbose=0)
    loss, acc = model.evaluate(x, y, batch_size=64, verbose=0)
    assert loss < 0.6 * first and acc >= 0.85, (first, loss, acc)
    kernel, bias = model.layers[-1].get_weights()
    z = x.toarray() @ kernel + bias
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, batch_size=50), want, rtol=1e-4, atol=1e-6)
