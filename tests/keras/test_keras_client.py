"""The real Keras 2.3.1 as a client of symk (``KERAS_BACKEND=symk.backend``).

Models train on the digits data set that ships with scikit-learn (no network).  Numbers are
checked against independent references: accuracies and losses recomputed in numpy from
``predict``, optimizer steps and batch-normalization statistics written out in numpy, and
Keras's own save/load round trips.
"""

from __future__ import annotations

import functools
import os
import re

import keras  # loaded on symk by conftest.py
import numpy as np
import pytest
from keras import backend as K
from keras import callbacks as C
from keras import layers as L
from keras import optimizers as O

import symk.backend as SK

pytestmark = pytest.mark.keras

N_CLASSES = 10


# ---------------------------------------------------------------- data and models


@functools.lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8x8 digits scaled to [0, 1]: (x_train, y_train, x_test, y_test), a fixed 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, ytr, xte, yte


def one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype="float32")[y]


def mlp(output_activation: str = "softmax", dropout: float = 0.2, batchnorm: bool = True):
    model = keras.Sequential()
    model.add(L.Dense(64, activation="relu", input_shape=(64,)))
    if batchnorm:
        model.add(L.BatchNormalization())
    if dropout:
        model.add(L.Dropout(dropout))
    model.add(L.Dense(32, activation="relu"))
    model.add(L.Dense(N_CLASSES, activation=output_activation))
    return model


def np_accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=-1) == y))


# ---------------------------------------------------------------- the backend as Keras sees it


def _keras_backend_names() -> list[str]:
    """The names keras/backend/__init__.py imports one by one (154 lines in Keras 2.3.1; a few
    come from keras.backend.common, the rest from the backend)."""
    src = os.path.join(os.path.dirname(keras.backend.__file__), "__init__.py")
    with open(src) as f:
        text = f.read()
    head = text.split("if backend() ==")[0]
    return re.findall(r"^from \.load_backend import (\w+)$", head, flags=re.M)


def test_keras_runs_on_symk():
    assert K.backend() == "symk.backend"
    assert K.placeholder is SK.placeholder
    assert K.function is SK.function


def test_every_name_keras_imports_exists():
    names = _keras_backend_names()
    assert len(names) >= 148
    missing = [nm for nm in names if not hasattr(SK, nm)]
    assert missing == []


def test_no_backend_function_is_a_stub():
    """Every backend function is implemented: no NotImplementedError stub is left in symk."""
    import pathlib

    root = pathlib.Path(SK.__file__).resolve().parents[1]
    stubs = [str(p) for p in root.rglob("*.py") if "NotImplementedError" in p.read_text()]
    assert stubs == []


def test_keras_settings_reach_symk():
    """keras.backend.common owns floatx/epsilon; symk must follow its setters."""
    old_floatx, old_eps = K.floatx(), K.epsilon()
    try:
        K.set_floatx("float64")
        assert SK.floatx() == "float64"
        assert K.variable(1.0).dtype == "float64"
        assert K.placeholder((2,)).dtype == "float64"
        K.set_epsilon(1e-3)
        assert SK.epsilon() == 1e-3
        # Keras's clipping epsilon is used by the loss: p=0 for the true class gives -log(eps)
        out = K.eval(K.categorical_crossentropy(K.constant([[1.0, 0.0]]),
                                                K.constant([[0.0, 1.0]])))
        np.testing.assert_allclose(out, [-np.log(1e-3)], rtol=1e-6)
    finally:
        K.set_floatx(old_floatx)
        K.set_epsilon(old_eps)
    assert SK.floatx() == old_floatx and K.variable(1.0).dtype == old_floatx


def test_tensor_protocol_used_by_keras():
    x = K.placeholder((None, 3))
    x._keras_history = ("layer", 0, 0)  # arbitrary attributes
    assert K.is_keras_tensor(x)
    assert {x: 1}[x] == 1 and x is not K.placeholder((None, 3))  # hashing by identity
    assert tuple(x.shape) == (None, 3) and list(x.shape) == [None, 3]
    assert not K.is_variable("a string") and not K.is_variable(x)
    init = keras.initializers.glorot_uniform(seed=1)((3, 4))  # a symbolic tensor
    v = K.variable(init)
    assert K.is_variable(v) and K.int_shape(v) == (3, 4)
    limit = np.sqrt(6.0 / 7.0)
    assert np.all(np.abs(K.get_value(v)) <= limit)
    scope = f"outer{K.get_uid('outer_scope')}"  # a scope no other test (or run) used
    with K.name_scope(scope):
        a = K.variable(0.0, name="w")
    b = K.variable(0.0, name=f"{scope}/w")
    assert a.name == f"{scope}/w" and b.name != a.name


def test_function_learning_phase_and_raw_update_tuples():
    x = K.placeholder((None, 2))
    acc = K.variable(np.zeros(2, "float32"))
    count = K.variable(0.0)
    y = K.in_train_phase(x * 10.0, x)
    f = K.function([x, K.learning_phase()], [y],
                   updates=[(acc, acc + K.sum(x, axis=0)), K.update_add(count, 1.0)])
    a = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    np.testing.assert_array_equal(f([a, 1])[0], a * 10)
    np.testing.assert_array_equal(f([a, 0])[0], a)
    np.testing.assert_array_equal(K.get_value(acc), [8.0, 12.0])
    assert K.get_value(count) == 2.0


def test_metric_outputs_are_read_after_the_updates():
    """Keras flags stateful-metric results with _is_metric: the value of a call includes the
    batch of that call (Keras reads it after the updates)."""
    m = keras.metrics.Mean()
    x = K.placeholder((None,))
    result = m(x)
    assert getattr(result, "_is_metric", False)
    f = K.function([x], [result], updates=m.updates)
    assert f([np.array([1.0, 3.0], "float32")])[0] == pytest.approx(2.0)
    assert f([np.array([8.0], "float32")])[0] == pytest.approx(4.0)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("make_opt", [
    lambda: O.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
    lambda: O.Adam(learning_rate=0.005),
    lambda: O.RMSprop(learning_rate=0.002),
], ids=["sgd-nesterov", "adam", "rmsprop"])
def test_mlp_trains_with_each_optimizer(make_opt):
    xtr, ytr, xte, yte = digits()
    model = mlp()
    model.compile(make_opt(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(xtr, ytr, epochs=8, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    probs = model.predict(xte, batch_size=128)
    assert probs.shape == (len(xte), N_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np_accuracy(probs, yte) >= 0.90
    loss, acc = model.evaluate(xte, yte, batch_size=64, verbose=0)
    assert acc == pytest.approx(np_accuracy(probs, yte), abs=1e-6)


def _np_loss(name: str, probs: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """Per-sample Keras losses written out in numpy."""
    t = one_hot(y)
    p = probs.astype(np.float64)
    if name == "categorical_crossentropy":
        p = np.clip(p / p.sum(axis=-1, keepdims=True), eps, 1 - eps)
        return -np.sum(t * np.log(p), axis=-1)
    if name == "sparse_categorical_crossentropy":
        p = np.clip(p, eps, 1 - eps)
        return -np.log(p[np.arange(len(y)), y] / p.sum(axis=-1))
    if name == "binary_crossentropy":
        p = np.clip(p, eps, 1 - eps)
        return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)), axis=-1)
    if name == "mse":
        return np.mean((p - t) ** 2, axis=-1)
    raise AssertionError(name)


def _np_keras_accuracy(loss: str, probs: np.ndarray, y: np.ndarray) -> float:
    """What Keras's 'accuracy' means for each loss: binary accuracy with binary cross-entropy,
    else categorical accuracy."""
    if loss == "binary_crossentropy":
        return float(np.mean(np.mean(one_hot(y) == np.round(probs), axis=-1)))
    return np_accuracy(probs, y)


@pytest.mark.parametrize("loss, activation, sparse", [
    ("categorical_crossentropy", "softmax", False),
    ("sparse_categorical_crossentropy", "softmax", True),
    ("binary_crossentropy", "sigmoid", False),
    ("mse", "softmax", False),
])
def test_losses_train_and_evaluate_matches_numpy(loss, activation, sparse):
    xtr, ytr, xte, yte = digits()
    model = mlp(output_activation=activation)
    model.compile(O.Adam(learning_rate=0.005), loss, metrics=["accuracy"])
    target = ytr if sparse else one_hot(ytr)
    model.fit(xtr, target, epochs=8, batch_size=32, verbose=0)
    probs = model.predict(xte)
    assert np_accuracy(probs, yte) >= 0.90
    # evaluate with a batch size that leaves a partial last batch (450 = 7 * 64 + 2)
    ev_loss, ev_acc = model.evaluate(xte, yte if sparse else one_hot(yte), batch_size=64,
                                     verbose=0)
    want = _np_loss(loss, probs, yte, K.epsilon()).mean()
    assert ev_loss == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert ev_acc == pytest.approx(_np_keras_accuracy(loss, probs, yte), abs=1e-6)


def _np_dense_softmax_grads(x, t, w, b):
    """Gradients of mean categorical cross-entropy of softmax(x @ w + b)."""
    z = x.astype(np.float64) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    gz = (p - t) / len(x)
    return x.T @ gz, gz.sum(axis=0)


def _np_sgd_nesterov(lr, mom):
    state = {}

    def step(k, p, g):
        m = state.get(k, np.zeros_like(p))
        v = mom * m - lr * g
        state[k] = v
        return p + mom * v - lr * g
    return step


def _np_adam(lr, b1=0.9, b2=0.999, eps=1e-7):
    state = {"t": 0}

    def step(k, p, g):
        if k == 0:
            state["t"] += 1
        t = state["t"]
        m = b1 * state.get(("m", k), 0.0) + (1 - b1) * g
        v = b2 * state.get(("v", k), 0.0) + (1 - b2) * g * g
        state[("m", k)], state[("v", k)] = m, v
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return p - lr_t * m / (np.sqrt(v) + eps)
    return step


def _np_rmsprop(lr, rho=0.9, eps=1e-7):
    state = {}

    def step(k, p, g):
        a = rho * state.get(k, 0.0) + (1 - rho) * g * g
        state[k] = a
        return p - lr * g / (np.sqrt(a) + eps)
    return step


@pytest.mark.parametrize("make_opt, np_step", [
    (lambda: O.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
     lambda: _np_sgd_nesterov(0.1, 0.9)),
    (lambda: O.Adam(learning_rate=0.01), lambda: _np_adam(0.01)),
    (lambda: O.RMSprop(learning_rate=0.01), lambda: _np_rmsprop(0.01)),
], ids=["sgd-nesterov", "adam", "rmsprop"])
def test_optimizer_steps_match_numpy(make_opt, np_step):
    """Three batches through model.fit equal the same updates written out in numpy."""
    xtr, ytr, _, _ = digits()
    x, t = xtr[:48], one_hot(ytr[:48])
    model = keras.Sequential([L.Dense(N_CLASSES, activation="softmax", input_shape=(64,))])
    model.compile(make_opt(), "categorical_crossentropy")
    w, b = (a.astype(np.float64) for a in model.get_weights())
    step = np_step()
    model.fit(x, t, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for i in range(3):
        gw, gb = _np_dense_softmax_grads(x[16 * i: 16 * (i + 1)], t[16 * i: 16 * (i + 1)], w, b)
        w, b = step(0, w, gw), step(1, b, gb)
    got_w, got_b = model.get_weights()
    np.testing.assert_allclose(got_w, w, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(got_b, b, rtol=2e-4, atol=2e-6)


def test_batchnorm_statistics_match_numpy():
    xtr, ytr, _, _ = digits()
    x = xtr[:32]
    model = keras.Sequential([L.BatchNormalization(momentum=0.9, input_shape=(64,)),
                              L.Dense(N_CLASSES, activation="softmax")])
    model.compile(O.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    model.fit(x, ytr[:32], batch_size=32, epochs=1, verbose=0)
    bn = model.layers[0]
    mean, var = x.astype(np.float64).mean(axis=0), x.astype(np.float64).var(axis=0)
    n, eps = len(x), bn.epsilon
    np.testing.assert_allclose(K.get_value(bn.moving_mean), 0.1 * mean, atol=1e-6)
    unbiased = var * n / (n - (1.0 + eps))
    np.testing.assert_allclose(K.get_value(bn.moving_variance), 0.9 + 0.1 * unbiased,
                               rtol=1e-5)
    # inference uses the moving statistics: predict == numpy with them
    w, b = model.layers[1].get_weights()
    mm, mv = K.get_value(bn.moving_mean), K.get_value(bn.moving_variance)
    h = (x - mm) / np.sqrt(mv + eps)
    z = h @ w + b
    want = np.exp(z - z.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-6)


def test_dropout_is_active_in_training_only():
    model = keras.Sequential([L.Dropout(0.5, input_shape=(64,))])
    x = np.ones((200, 64), "float32")
    np.testing.assert_array_equal(model.predict(x), x)
    train_out = K.function([model.input, K.learning_phase()], [model.output])([x, 1])[0]
    assert set(np.unique(train_out)) <= {0.0, 2.0}
    assert 0.45 < np.mean(train_out == 0.0) < 0.55


# ---------------------------------------------------------------- validation and callbacks


def test_validation_split_uses_the_last_samples():
    xtr, ytr, _, _ = digits()
    model = mlp()
    model.compile(O.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(xtr, ytr, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    split = int(len(xtr) * 0.8)
    x_val, y_val = xtr[split:], ytr[split:]
    probs = model.predict(x_val)
    assert hist.history["val_accuracy"][-1] == pytest.approx(np_accuracy(probs, y_val),
                                                              abs=1e-6)
    want = _np_loss("sparse_categorical_crossentropy", probs, y_val, K.epsilon()).mean()
    assert hist.history["val_loss"][-1] == pytest.approx(want, rel=1e-4)


def test_early_stopping_and_reduce_lr_on_plateau():
    xtr, ytr, _, _ = digits()
    model = mlp()
    model.compile(O.SGD(learning_rate=0.04, momentum=0.9), "sparse_categorical_crossentropy")
    # a min_delta no epoch can reach: every epoch is a plateau
    stop = C.EarlyStopping(monitor="loss", min_delta=100.0, patience=2)
    reduce = C.ReduceLROnPlateau(monitor="loss", min_delta=100.0, patience=0, factor=0.5,
                                 min_lr=0.0)
    hist = model.fit(xtr[:256], ytr[:256], epochs=20, batch_size=64, verbose=0,
                     callbacks=[stop, reduce])
    assert len(hist.epoch) == 3  # the first epoch sets the reference, then patience=2
    assert stop.stopped_epoch == 2
    # the lr logged for an epoch is the one it ran with; epochs 2 and 3 each halve it after
    np.testing.assert_allclose(hist.history["lr"], [0.04, 0.04, 0.02], rtol=1e-6)
    assert K.get_value(model.optimizer.lr) == pytest.approx(0.01, rel=1e-6)


def test_model_checkpoint_keeps_the_best_epoch(tmp_path):
    xtr, ytr, _, _ = digits()
    split = int(len(xtr) * 0.9)
    model = mlp()
    model.compile(O.Adam(learning_rate=0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    path = str(tmp_path / "best.h5")
    hist = model.fit(xtr, ytr, epochs=4, batch_size=32, validation_split=0.1, verbose=0,
                     callbacks=[C.ModelCheckpoint(path, monitor="val_loss",
                                                  save_best_only=True)])
    best = keras.models.load_model(path)
    loss, _ = best.evaluate(xtr[split:], ytr[split:], verbose=0)
    assert loss == pytest.approx(min(hist.history["val_loss"]), rel=1e-5)


# ---------------------------------------------------------------- saving


def test_save_and_load_model_round_trip(tmp_path):
    xtr, ytr, xte, _ = digits()
    model = mlp(dropout=0.0)
    model.compile(O.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=2, batch_size=32, shuffle=False, verbose=0)
    names = [w.name for w in model.weights + model.optimizer.weights]
    assert len(set(names)) == len(names)
    path = str(tmp_path / "model.h5")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(xte), model.predict(xte))
    for a, b in zip(loaded.optimizer.get_weights(), model.optimizer.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the restored optimizer state (momentum) continues training identically
    model.fit(xtr, ytr, epochs=1, batch_size=32, shuffle=False, verbose=0)
    loaded.fit(xtr, ytr, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_save_and_load_weights(tmp_path):
    xtr, ytr, xte, _ = digits()
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(xtr, ytr, epochs=1, batch_size=32, verbose=0)
    path = str(tmp_path / "weights.h5")
    model.save_weights(path)
    other = mlp()
    assert not np.array_equal(other.predict(xte), model.predict(xte))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(xte), model.predict(xte))


# ---------------------------------------------------------------- functional API


def test_functional_model_with_two_inputs(tmp_path):
    """Top and bottom halves of each digit enter through separate inputs."""
    xtr, ytr, xte, yte = digits()
    top = L.Input((32,), name="top")
    bottom = L.Input((32,), name="bottom")
    h = L.concatenate([L.Dense(32, activation="relu")(top),
                       L.Dense(32, activation="relu")(bottom)])
    h = L.Dropout(0.1)(h)
    out = L.Dense(N_CLASSES, activation="softmax")(h)
    model = keras.Model([top, bottom], out)
    model.compile(O.Adam(learning_rate=0.005), "categorical_crossentropy", metrics=["accuracy"])
    model.fit([xtr[:, :32], xtr[:, 32:]], one_hot(ytr), epochs=8, batch_size=32, verbose=0)
    probs = model.predict([xte[:, :32], xte[:, 32:]])
    assert np_accuracy(probs, yte) >= 0.90
    by_name = model.predict({"top": xte[:, :32], "bottom": xte[:, 32:]})
    np.testing.assert_array_equal(by_name, probs)
    path = str(tmp_path / "two_inputs.h5")
    model.save(path)
    np.testing.assert_array_equal(
        keras.models.load_model(path).predict([xte[:, :32], xte[:, 32:]]), probs)
