"""The CPU fast path of the convolution ops (batch split across threads with single-threaded
BLAS), forced on for small sizes, against the naive numpy loops and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.runtime import conv_cpu, threads
from tests.backend.test_conv import naive_conv, ref_transpose
from tests.gradcheck import check_grad
from tests.harness import available_devices

pytestmark = pytest.mark.skipif("cpu" not in available_devices(), reason="no cpu device")


@pytest.fixture
def always_parallel(monkeypatch):
    if threads.blas_api() is None:
        pytest.skip("OpenBLAS not found among the loaded libraries")
    monkeypatch.setattr(conv_cpu, "PARALLEL_MIN_MACS", 0)
    get, _ = threads.blas_api()
    before = get()
    yield
    assert get() == before, "the BLAS thread count was not restored"


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_parallel_forward_and_transpose(always_parallel, batch):
    rng = np.random.default_rng(batch)
    xv = rng.standard_normal((batch, 9, 7, 3))
    kv = rng.standard_normal((3, 2, 3, 4))
    x = K.placeholder((None, 9, 7, 3), dtype="float64")
    k = K.constant(kv, dtype="float64")
    y = K.conv2d(x, k, strides=(2, 1), padding="same", dilation_rate=(1, 1))
    t = K.conv2d_transpose(y, k, (K.shape(y)[0], 9, 7, 3), strides=(2, 1), padding="same")
    dw = K.depthwise_conv2d(x, K.constant(kv[..., :2], dtype="float64"), padding="same")
    f = K.function([x], [y, t, dw], device="cpu")
    got_y, got_t, got_dw = f([xv])
    want_y = naive_conv(xv, kv, (2, 1), "same", "channels_last", (1, 1))
    np.testing.assert_allclose(got_y, want_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_t, ref_transpose(2)(want_y, kv, (batch, 9, 7, 3), (2, 1),
                                                       "same"), rtol=1e-10, atol=1e-10)
    dk = kv[..., :2]
    want_dw = naive_conv(xv, dk.reshape(3, 2, 1, 6), (1, 1), "same", "channels_last", (1, 1),
                         groups=3)
    np.testing.assert_allclose(got_dw, want_dw, rtol=1e-10, atol=1e-10)


def test_parallel_gradients(always_parallel):
    check_grad("conv2d", [(3, 5, 4, 2), (2, 2, 2, 3)], strides=(1, 2), padding="same",
               device_list=["cpu"])


def test_input_gradient_tuner_tries_every_algorithm_then_keeps_the_fastest(monkeypatch):
    """Each call of the first ones runs another algorithm (all give the reference's numbers),
    then the fastest measured one runs from then on."""
    from symk.graph.ops import conv_impl as ci

    used: list[str] = []
    real = ci.conv_input_grad

    def spy(*args, algo=None, **kw):
        used.append(algo)
        return real(*args, algo=algo, **kw)

    monkeypatch.setattr(ci, "conv_input_grad", spy)
    monkeypatch.setattr(conv_cpu, "PARALLEL_MIN_MACS", 1 << 60)  # one thread: one call each
    rng = np.random.default_rng(0)
    xv, kv = rng.standard_normal((2, 6, 5, 3)), rng.standard_normal((3, 3, 3, 4))
    x = K.placeholder((None, 6, 5, 3), dtype="float64")
    k = K.variable(kv, dtype="float64")
    (gx,) = K.gradients(K.sum(K.square(K.conv2d(x, k, padding="same"))), [x])
    f = K.function([x], [gx], device="cpu")
    y = naive_conv(xv, kv, (1, 1), "same", "channels_last", (1, 1))
    pads, _ = ci.geometry((6, 5), (3, 3), (1, 1), (1, 1), [None, None])
    algos = ci.input_grad_algos((3, 3), 3, 4, (1, 1), (1, 1), pads, 1)
    calls = 1 + conv_cpu.AlgoTuner.TRIES * len(algos)  # an untimed first call
    for _ in range(calls + 3):
        got = f([xv])[0]
        want = ref_transpose(2)(2 * y, kv, xv.shape, (1, 1), "same")
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert used[0] == algos[0] and sorted(set(used[1:calls])) == sorted(algos)
    assert len(set(used[calls:])) == 1 and used[-1] in algos
