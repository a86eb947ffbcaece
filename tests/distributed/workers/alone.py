"""Worker run as a plain process with mpi4py hidden: ``size() == 1``, every call is a no-op,
training with DistributedOptimizer and the callbacks equals plain training bit for bit, and a
model saved with a DistributedOptimizer loads with the plain Keras optimizer class."""

from __future__ import annotations

import sys

sys.modules["mpi4py"] = None  # type: ignore[assignment]  (import mpi4py now fails)

import numpy as np  # noqa: E402
from common import done, keras  # noqa: E402

from symk import backend as K  # noqa: E402
from symk import distributed as hvd  # noqa: E402

keras = keras()
hvd.init()
assert (hvd.size(), hvd.rank(), hvd.local_size(), hvd.local_rank()) == (1, 0, 1, 0)
x = K.placeholder((None, 2))
assert hvd.allreduce(x) is x and hvd.broadcast(x, 0) is x
v = np.arange(4.0)
assert np.array_equal(hvd.allreduce(v), v) and hvd.allreduce(v) is not v
rng = np.random.default_rng(0)
xs, ys = rng.standard_normal((40, 3)).astype("float32"), rng.integers(0, 2, 40)
weights = [rng.standard_normal(s).astype("float32") for s in ((3, 4), (4,), (4, 2), (2,))]
results = []
for wrap in (False, True):
    m = keras.models.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)),
                                 keras.layers.Dense(2, activation="softmax")])
    m.set_weights(weights)
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    m.compile(hvd.DistributedOptimizer(opt) if wrap else opt,
              "sparse_categorical_crossentropy")
    cbs = [hvd.BroadcastGlobalVariablesCallback(0), hvd.MetricAverageCallback()] if wrap \
        else []
    m.fit(xs, ys, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=cbs)
    results.append(m.get_weights())
for a, b in zip(*results):
    assert np.array_equal(a, b)

# saved with the wrapper, loaded without symk.distributed: Keras's own class, same state
import os  # noqa: E402
import tempfile  # noqa: E402

wrapped = hvd.DistributedOptimizer(keras.optimizers.Adam(0.01))
assert type(wrapped).__name__ == "Adam" and type(wrapped) is not keras.optimizers.Adam
m.compile(wrapped, "sparse_categorical_crossentropy")
m.fit(xs, ys, batch_size=8, epochs=1, verbose=0)
path = os.path.join(tempfile.mkdtemp(), "model.h5")
m.save(path)
loaded = keras.models.load_model(path)
assert type(loaded.optimizer) is keras.optimizers.Adam, type(loaded.optimizer)
for a, b in zip(m.get_weights(), loaded.get_weights()):
    assert np.array_equal(a, b)
saved_state = K.batch_get_value(m.optimizer.weights)
assert len(saved_state) == len(loaded.optimizer.weights) > 1
for a, b in zip(saved_state, K.batch_get_value(loaded.optimizer.weights)):
    assert np.array_equal(a, b)
done("alone")
