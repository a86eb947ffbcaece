"""Data-parallel training of an MLP on scikit-learn's digits with symk.distributed (Horovod's
Keras API on MPI): every rank trains on its own shard, gradients are averaged over the ranks
each step, and all ranks end with the same weights.

    KERAS_BACKEND=symk.backend mpiexec -n 2 python -m mpi4py examples/keras_distributed.py
    KERAS_BACKEND=symk.backend python examples/keras_distributed.py      # alone: size() == 1
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits

import symk.distributed as hvd

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
args = ap.parse_args()

hvd.init()
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")
x, y = x[hvd.rank()::hvd.size()], y[hvd.rank()::hvd.size()]  # this rank's shard

model = keras.models.Sequential([
    keras.layers.Dense(128, activation="relu", input_shape=(64,)),
    keras.layers.Dense(10, activation="softmax"),
])
# the learning rate grows with the number of ranks (the global batch does), warmed up over
# the first epochs
opt = hvd.DistributedOptimizer(keras.optimizers.Adam(0.001 * hvd.size()))
model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
callbacks = [
    hvd.BroadcastGlobalVariablesCallback(0),  # every rank starts from rank 0's weights
    hvd.MetricAverageCallback(),  # logged metrics are the mean over the ranks
    hvd.LearningRateWarmupCallback(warmup_epochs=2),
]
hist = model.fit(x, y, batch_size=32, epochs=args.epochs, callbacks=callbacks,
                 verbose=0)
if hvd.rank() == 0:
    print(f"{hvd.size()} rank(s): loss {hist.history['loss'][-1]:.4f}, "
          f"accuracy {hist.history['accuracy'][-1]:.4f} (mean over the ranks)")
    print("first layer weights checksum", float(np.sum(model.get_weights()[0])))
