"""float32 CPU convolutions on oneDNN (``symk.runtime.onednn`` through ``conv_cpu``): every
direction, geometry and layout against the float64 numpy implementation, the batch shares on
symk's threads, the fallback when oneDNN cannot, and ``SYMK_ONEDNN=0``."""

from __future__ import annotations

import random

import numpy as np
import pytest

from symk import backend as K
from symk.graph.ops import conv_impl as ci
from symk.runtime import conv_cpu, onednn
from tests.backend.test_conv import naive_conv
from tests.harness import available_devices

pytestmark = [
    pytest.mark.skipif("cpu" not in available_devices(), reason="no cpu device"),
    pytest.mark.skipif(not onednn.available(), reason=f"oneDNN: {onednn.why_unavailable()}"),
]


class _Node:
    """What the conv externs read of a node."""

    def __init__(self, **attrs) -> None:
        self.attrs, self.dtype = attrs, "float32"


@pytest.fixture
def counted(monkeypatch):
    """Counts the convolutions oneDNN ran, per direction."""
    calls: dict[str, int] = {}
    real = onednn.run

    def spy(kind, *args):
        ok = real(kind, *args)
        calls[kind] = calls.get(kind, 0) + int(ok)
        return ok

    monkeypatch.setattr(onednn, "run", spy)
    return calls


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))


def _geometries(count: int, seed: int):
    rnd = random.Random(seed)
    made = 0
    while made < count:
        nsp = rnd.choice([1, 2, 2, 3])
        sp = [rnd.randint(4, 11) for _ in range(nsp)]
        ks = [rnd.randint(1, 4) for _ in range(nsp)]
        strides = tuple(rnd.choice([1, 1, 2, 3]) for _ in range(nsp))
        dilation = tuple(rnd.choice([1, 1, 2]) for _ in range(nsp))
        groups = rnd.choice([1, 1, 2, 4])
        cg, m = rnd.choice([1, 3, 8]), rnd.choice([1, 2, 5])
        pads = tuple(rnd.choice([None, (0, 0), (1, 0), (1, 1), (0, 2)]) for _ in range(nsp))
        try:
            _, out = ci.geometry(sp, ks, strides, dilation, pads)
        except Exception:  # an empty output: not a convolution to test
            continue
        made += 1
        yield (rnd.choice([1, 3, 8, 33]), sp, ks, cg, m, groups, out,
               dict(strides=strides, dilation=dilation, pads=pads, groups=groups))


@pytest.mark.parametrize("seed", range(4))
def test_every_direction_matches_numpy_over_random_geometries(monkeypatch, counted, seed):
    monkeypatch.setattr(conv_cpu, "PARALLEL_MIN_MACS", 0)  # batch shares even when small
    rng = np.random.default_rng(seed)
    for n, sp, ks, cg, m, groups, out, a in _geometries(30, seed):
        x = rng.standard_normal((n, *sp, cg * groups)).astype(np.float32)
        w = rng.standard_normal((*ks, cg, m * groups)).astype(np.float32)
        g = rng.standard_normal((n, *out, m * groups)).astype(np.float32)
        x64, w64, g64 = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
        where = f"{a} input {x.shape} kernel {w.shape}"
        y = conv_cpu.conv_plan(_Node(**a))(x, w)
        assert _rel(y, ci.conv_forward(x64, w64, **a)) < 1e-5, where
        dx = conv_cpu.conv_input_grad_plan(_Node(**a, in_spatial=tuple(sp)))(g, w)
        assert _rel(dx, ci.conv_input_grad(g64, w64, sp, **a)) < 1e-5, where
        dw = conv_cpu.conv_kernel_grad_plan(_Node(**a, kernel_shape=w.shape))(x, g)
        assert _rel(dw, ci.conv_kernel_grad(x64, g64, ks, **a)) < 1e-5, where
    # most geometries run on oneDNN (some, e.g. a pad wider than the kernel, fall back)
    assert all(counted.get(k, 0) >= 15 for k in ("fwd", "bwd_data", "bwd_weights")), counted


def test_strided_valid_convolution_with_unread_input_rows(counted):
    """28 -> 13 with a 3-tap stride-2 window never reads the last input row (oneDNN's high pad
    is -1): its gradient is zero."""
    rng = np.random.default_rng(1)
    a = dict(strides=(2, 2), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    g = rng.standard_normal((4, 13, 13, 5)).astype(np.float32)
    dx = conv_cpu.conv_input_grad_plan(_Node(**a, in_spatial=(28, 28)))(g, w)
    assert np.all(dx[:, 27] == 0) and np.all(dx[:, :, 27] == 0)
    want = ci.conv_input_grad(g.astype(np.float64), w.astype(np.float64), (28, 28), **a)
    assert _rel(dx, want) < 1e-5
    assert counted == {"bwd_data": 1}


def test_keras_convolutions_in_float32_run_on_onednn(counted):
    """conv1d/2d/3d, channels_first, depthwise, separable and transposed convolutions and their
    gradients, through K, against the naive float64 loops."""
    rng = np.random.default_rng(2)
    xv = rng.standard_normal((6, 12, 10, 4)).astype(np.float32)
    kv = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    x = K.placeholder((None, 12, 10, 4))
    k = K.variable(kv)
    y = K.conv2d(x, k, strides=(2, 1), padding="same", dilation_rate=(1, 1))
    yf = K.conv2d(K.permute_dimensions(x, (0, 3, 1, 2)), k, padding="valid",
                  data_format="channels_first", dilation_rate=(2, 1))
    loss = K.sum(K.square(y)) + K.sum(yf)
    gx, gk = K.gradients(loss, [x, k])
    f = K.function([x], [y, yf, gx, gk], device="cpu")
    got_y, got_yf, got_gx, got_gk = f([xv])
    x64, k64 = xv.astype(np.float64), kv.astype(np.float64)
    want_y = naive_conv(x64, k64, (2, 1), "same", "channels_last", (1, 1))
    want_yf = naive_conv(x64, k64, (1, 1), "valid", "channels_last", (2, 1))
    assert _rel(got_y, want_y) < 1e-5
    assert _rel(got_yf.transpose(0, 2, 3, 1), want_yf) < 1e-5
    # the gradients against finite-difference-free references: conv_impl in float64
    a_y = dict(strides=(2, 1), dilation=(1, 1), pads=(None, None), groups=1)
    a_f = dict(strides=(1, 1), dilation=(2, 1), pads=((0, 0), (0, 0)), groups=1)
    want_gx = (ci.conv_input_grad(2 * want_y, k64, (12, 10), **a_y)
               + ci.conv_input_grad(np.ones_like(want_yf), k64, (12, 10), **a_f))
    want_gk = (ci.conv_kernel_grad(x64, 2 * want_y, (3, 3), **a_y)
               + ci.conv_kernel_grad(x64, np.ones_like(want_yf), (3, 3), **a_f))
    assert _rel(got_gx, want_gx) < 1e-5
    assert _rel(got_gk, want_gk) < 1e-5
    assert counted.get("fwd", 0) >= 2 and counted.get("bwd_data", 0) >= 2
    assert counted.get("bwd_weights", 0) >= 2

    dk = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    pk = rng.standard_normal((1, 1, 8, 5)).astype(np.float32)
    dw = K.depthwise_conv2d(x, K.constant(dk), padding="same")
    sep = K.separable_conv2d(x, K.constant(dk), K.constant(pk), padding="valid")
    got_dw, got_sep = K.function([x], [dw, sep], device="cpu")([xv])
    want_dw = naive_conv(x64, dk.astype(np.float64).reshape(3, 3, 1, 8), (1, 1), "same",
                         "channels_last", (1, 1), groups=4)
    assert _rel(got_dw, want_dw) < 1e-5
    want_sep = naive_conv(naive_conv(x64, dk.astype(np.float64).reshape(3, 3, 1, 8), (1, 1),
                                     "valid", "channels_last", (1, 1), groups=4),
                          pk.astype(np.float64), (1, 1), "valid", "channels_last", (1, 1))
    assert _rel(got_sep, want_sep) < 1e-5

    x1 = K.placeholder((None, 20, 3))
    x3 = K.placeholder((None, 6, 7, 5, 2))
    k1 = rng.standard_normal((4, 3, 6)).astype(np.float32)
    k3 = rng.standard_normal((2, 3, 2, 2, 3)).astype(np.float32)
    x1v = rng.standard_normal((5, 20, 3)).astype(np.float32)
    x3v = rng.standard_normal((3, 6, 7, 5, 2)).astype(np.float32)
    c1 = K.conv1d(x1, K.constant(k1), strides=2, padding="causal")
    c3 = K.conv3d(x3, K.constant(k3), strides=(1, 2, 1), padding="same")
    got1 = K.function([x1], [c1], device="cpu")([x1v])[0]
    got3 = K.function([x3], [c3], device="cpu")([x3v])[0]
    a1 = dict(strides=(2,), dilation=(1,), pads=((3, 0),), groups=1)
    assert _rel(got1, ci.conv_forward(x1v.astype(np.float64), k1.astype(np.float64), **a1)) < 1e-5
    a3 = dict(strides=(1, 2, 1), dilation=(1, 1, 1), pads=(None,) * 3, groups=1)
    assert _rel(got3, ci.conv_forward(x3v.astype(np.float64), k3.astype(np.float64), **a3)) < 1e-5


def test_views_and_other_dtypes(counted):
    """A strided view is made dense for oneDNN; float64 and mixed inputs go to the numpy path."""
    rng = np.random.default_rng(3)
    a = dict(strides=(1, 1), dilation=(1, 1), pads=((1, 1), (1, 1)), groups=1)
    big = rng.standard_normal((4, 10, 16, 6)).astype(np.float32)
    x = big[:, :, ::2, 1:5]  # not contiguous
    w = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    plan = conv_cpu.conv_plan(_Node(**a))
    assert _rel(plan(x, w), ci.conv_forward(x.astype(np.float64), w.astype(np.float64), **a)) \
        < 1e-5
    assert counted == {"fwd": 1}
    y64 = plan(x.astype(np.float64), w)
    assert y64.dtype == np.float32 and counted == {"fwd": 1}
    assert _rel(y64, ci.conv_forward(x.astype(np.float64), w.astype(np.float64), **a)) < 1e-5


def test_threads_stay_symks(monkeypatch):
    """oneDNN runs each share on one thread: the OpenMP thread count of the calling thread is
    what it was, and the main W7 geometry gets a JIT (not a reference) implementation."""
    lib = onednn.library()
    before = lib.get_threads()
    x = np.ones((2, 28, 28, 32), np.float32)
    w = np.ones((3, 3, 32, 64), np.float32)
    y = np.empty((2, 26, 26, 64), np.float32)
    geom = ((1, 1), (1, 1), ((0, 0), (0, 0)), 1)
    assert onednn.run("fwd", x, w, y, geom)
    np.testing.assert_allclose(y, 288.0)
    assert lib.get_threads() == before
    for kind in ("fwd", "bwd_data", "bwd_weights"):
        name = onednn.impl_name(kind, x, w, y, geom)
        assert name and not name.startswith("ref"), (kind, name)


def test_switched_off(monkeypatch):
    monkeypatch.setenv("SYMK_ONEDNN", "0")
    assert not onednn.available() and onednn.why_unavailable() == "SYMK_ONEDNN=0"
    x = np.ones((1, 5, 5, 1), np.float32)
    y = np.empty((1, 3, 3, 1), np.float32)
    assert not onednn.run("fwd", x, np.ones((3, 3, 1, 1), np.float32), y,
                          ((1, 1), (1, 1), ((0, 0), (0, 0)), 1))
    a = dict(strides=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1)
    np.testing.assert_allclose(conv_cpu.conv_plan(_Node(**a))(x, np.ones((3, 3, 1, 1),
                                                                          np.float32)), 9.0)
