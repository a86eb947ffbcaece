"""Worker: the same Keras model (seeded, no Dropout/BatchNorm) trained N steps with SGD +
momentum and with Adam: one process on batch B (rank 0 alone, no DistributedOptimizer)
against 2 ranks each on one half of each batch (shuffle=False) gives the same weights
(rtol 1e-5, atol 1e-6), both ranks hold bit-identical weights, and each step's gradients
travel in one collective, written there by the gradient kernels."""

from __future__ import annotations

import sys

import numpy as np
from common import done, gather, keras

from symk import distributed as hvd
from symk.graph.ops import collective

keras = keras()
hvd.init()
r = hvd.rank()
B, STEPS = 16, 6
rng = np.random.default_rng(0)
x = rng.standard_normal((B * STEPS, 8)).astype("float32")
y = rng.integers(0, 3, B * STEPS)
weights0 = None


def build(opt):
    global weights0
    m = keras.models.Sequential([keras.layers.Dense(16, activation="tanh", input_shape=(8,)),
                                 keras.layers.Dense(3, activation="softmax")])
    if weights0 is None:
        init = np.random.default_rng(1)
        weights0 = [(init.standard_normal(w.shape) * 0.5).astype("float32")
                    for w in m.get_weights()]
    m.set_weights(weights0)
    m.compile(opt, "sparse_categorical_crossentropy")
    return m


mine = np.concatenate([np.arange(s * B + r * B // 2, s * B + (r + 1) * B // 2)
                       for s in range(STEPS)])
for name, make in (("sgd", lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
                   ("adam", lambda: keras.optimizers.Adam(0.01))):
    opt = hvd.DistributedOptimizer(make())
    assert type(opt).__name__ == type(make()).__name__
    dist = build(opt)
    comm = hvd.comm.mpi_communicator()
    sizes: list[int] = []
    packed: list[bool] = []
    real = comm.allreduce

    def spy(src, dst, what):
        sizes.append(src.size)
        packed.append(src is dst and collective.packed([src[:1], src[1:]]) is src)
        real(src, dst, what)

    comm.allreduce = spy
    dist.fit(x[mine], y[mine], batch_size=B // 2, epochs=1, shuffle=False, verbose=0)
    comm.allreduce = real
    # one collective per step, carrying every gradient, which the gradient kernels wrote
    # straight into its flat buffer (reduced in place, no packing copy)
    n_params = sum(w.size for w in weights0)
    assert sizes == [n_params] * STEPS, (sizes, n_params)
    assert all(packed), packed
    got = dist.get_weights()
    ranks = gather(got)
    for a, b in zip(*ranks):
        assert np.array_equal(a, b), f"{name}: ranks differ"
    if r == 0:
        alone = build(make())
        alone.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(got, alone.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(got, weights0))
        assert moved > 1e-3, f"{name}: training did not move the weights"
        print(f"{name}: max |distributed - alone| "
              f"{max(float(np.abs(a - b).max()) for a, b in zip(got, alone.get_weights())):.2e}",
              file=sys.stderr)
done("equivalence")
