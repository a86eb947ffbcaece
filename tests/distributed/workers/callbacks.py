"""Worker: ranks seeded differently hold identical weights after
BroadcastGlobalVariablesCallback; MetricAverageCallback's logs are the mean over the ranks;
LearningRateWarmupCallback follows Horovod's formula, with momentum correction."""

from __future__ import annotations

import numpy as np
from common import done, gather, keras

from symk import backend as K
from symk import distributed as hvd

keras = keras()
hvd.init()
r, size = hvd.rank(), hvd.size()
rng = np.random.default_rng(10 + r)  # different data and weights on each rank
x = rng.standard_normal((64, 5)).astype("float32")
y = rng.integers(0, 2, 64)


def model(seed, opt):
    m = keras.models.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(5,)),
                                 keras.layers.Dense(2, activation="softmax")])
    init = np.random.default_rng(seed)
    m.set_weights([init.standard_normal(w.shape).astype("float32") for w in m.get_weights()])
    m.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


# 1. broadcast: different seeds, identical weights after training
m = model(100 + r, hvd.DistributedOptimizer(keras.optimizers.Adam(0.01)))
before = gather(m.get_weights())
assert not np.array_equal(before[0][0], before[1][0])
m.fit(x, y, batch_size=16, epochs=2, verbose=0,
      callbacks=[hvd.BroadcastGlobalVariablesCallback(0)])
after = gather(m.get_weights())
for a, b in zip(*after):
    assert np.array_equal(a, b)


# 2. metric average: the raw logs of each rank, then the averaged ones
class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


raw, averaged = Record(), Record()
m = model(5, hvd.DistributedOptimizer(keras.optimizers.SGD(0.05)))
m.fit(x, y, batch_size=16, epochs=2, verbose=0,
      callbacks=[raw, hvd.MetricAverageCallback(), averaged])
for lr_, la in zip(raw.logs, averaged.logs):
    for k in ("loss", "accuracy"):
        both = gather([np.array(lr_[k], np.float64)])
        assert abs(la[k] - (both[0][0] + both[1][0]) / 2) < 1e-12, (k, la[k], both)
    assert lr_["loss"] != la["loss"]  # the ranks' data differ


# 3. warm-up: the rate at every batch, and the momentum during it
class Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        self.seen.append((float(K.get_value(opt.lr)), float(K.get_value(opt.momentum))))


rates = Rates()
m = model(6, hvd.DistributedOptimizer(keras.optimizers.SGD(0.4, momentum=0.5)))
warm = hvd.LearningRateWarmupCallback(warmup_epochs=2, verbose=0)
m.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[warm, rates])
steps = 64 // 16
want_lr, prev = [], 0.4
for e in range(3):
    for b in range(steps):
        if e < 2:
            t = e + b / steps + 1.0 / steps
            lr = 0.4 / size * (t * (size - 1) / 2 + 1)
            want_lr.append((lr, 0.5 * lr / prev))
            prev = lr
        else:
            want_lr.append((prev, 0.5))
np.testing.assert_allclose(np.array(rates.seen), np.array(want_lr), rtol=1e-6)
assert abs(float(K.get_value(m.optimizer.momentum)) - 0.5) < 1e-7  # restored
np.testing.assert_allclose(float(K.get_value(m.optimizer.lr)), 0.4, rtol=1e-6)
done("callbacks")
