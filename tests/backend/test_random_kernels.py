"""Counter-based random ops (Philox, symk.graph.philox) inside generated kernels: dropout's mask
fuses with its multiply, every device gives the same bits, calls draw fresh values, and the
stream depends only on the seed (also in a new process)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from symk import backend as K
from symk.graph import philox
from symk.graph.scalar import NUMPY

DEVICES = ("interp", "cpu")


def _calls(make, n_calls: int = 3) -> dict[str, list[list[np.ndarray]]]:
    out = {}
    for d in DEVICES:
        ins, outs, vals = make()
        f = K.function(ins, outs, device=d)
        out[d] = [f(vals) for _ in range(n_calls)]
    return out


def _dropout_graph():
    x = K.placeholder((None, 64))
    xv = np.random.default_rng(0).standard_normal((33, 64)).astype(np.float32)
    return [x], [K.dropout(x, 0.3, seed=3)], [xv]


def test_cpu_equals_interp_bit_exactly():
    def make():
        x = K.placeholder((None, 16))
        outs = [K.dropout(x, 0.5, seed=1), K.random_uniform((300, 40), -1.0, 2.0, seed=5),
                K.random_uniform((7, 9), dtype="float64", seed=6),
                K.random_binomial((5, 11), p=0.2, seed=11),
                K.random_normal((64,), seed=12)]
        return [x], outs, [np.ones((9, 16), np.float32)]
    res = _calls(make)
    for a, b in zip(res["interp"], res["cpu"]):
        for u, v in zip(a, b):
            assert u.dtype == v.dtype
            np.testing.assert_array_equal(u, v)


def test_dropout_mask_fuses_with_its_multiply():
    ins, outs, _ = _dropout_graph()
    ks = K.function(ins, outs, device="cpu").fn.kernels()
    assert len(ks) == 1 and "random_binomial" in ks[0]["ops"] and "mul" in ks[0]["ops"]
    assert "c0" in ks[0]["kir"]  # the call number is a kernel param


def test_mask_used_twice_is_one_draw():
    def make():
        x = K.placeholder((None, 8))
        m = K.random_binomial(K.shape(x), p=0.5, seed=4)
        return [x], [x * m, K.exp(x) * m, K.sum(x * m)], [np.ones((5, 8), np.float32)]
    for calls in _calls(make).values():
        for a, b, s in calls:
            np.testing.assert_array_equal(a != 0, b != 0)
            assert s == a.sum()


def test_calls_draw_fresh_values_and_plans_restart():
    res = _calls(_dropout_graph)
    for calls in res.values():
        masks = [c[0] != 0 for c in calls]
        assert not np.array_equal(masks[0], masks[1])
        assert not np.array_equal(masks[1], masks[2])
        for m in masks:
            assert abs(m.mean() - 0.7) < 0.06
    # a new function (a new plan) starts the stream again
    ins, outs, vals = _dropout_graph()
    again = K.function(ins, outs, device="cpu")(vals)
    np.testing.assert_array_equal(again[0], res["cpu"][0][0])


def test_values_are_the_philox_stream():
    f = K.function([], [K.random_uniform((2, 3), seed=77)], device="cpu")
    for c in range(3):
        with np.errstate(over="ignore"):
            want = philox.uniform(NUMPY, np.arange(6, dtype=np.int64), np.asarray(c, np.int64),
                                  77, "float32")
        np.testing.assert_array_equal(f([])[0], np.asarray(want).reshape(2, 3))


_SCRIPT = """
import numpy as np
from symk import backend as K
f = K.function([], [K.random_uniform((4,), seed=2024)], device="{d}")
print([float(v) for _ in range(3) for v in f([])[0]])
"""


def test_same_seed_same_sequence_in_a_new_process():
    runs = {subprocess.run([sys.executable, "-c", _SCRIPT.format(d=d)], capture_output=True,
                           text=True, check=True).stdout for d in DEVICES}
    assert len(runs) == 1
    vals = eval(runs.pop())  # noqa: S307  (our own printout)
    f = K.function([], [K.random_uniform((4,), seed=2024)], device="cpu")
    assert vals == [float(v) for _ in range(3) for v in f([])[0]]


def test_large_draw_statistics_on_cpu():
    f = K.function([], [K.random_uniform((1000, 1000), seed=9)], device="cpu")
    u = f([])[0].astype(np.float64)
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 1e-3
    h = np.bincount((u.ravel() * 100).astype(np.int64), minlength=100)
    e = u.size / 100
    assert float(((h - e) ** 2 / e).sum()) < 180


def test_cuda_emulator_draws_the_same_bits():
    """The CUDA rendering of a fused dropout kernel (call counters passed after the sizes), run
    by the CPU emulator, gives interp's bits over several calls."""
    import os
    import shutil

    import pytest

    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("the CUDA emulator needs g++ (C++17)")
    from tests.cuda_emulator.emu_plan import EmuSession

    (x,), (y,), (xv,) = _dropout_graph()
    sess = EmuSession()
    emu = sess.function([x.node], [y.node])
    sess.compile()
    assert emu.kernel_names, "the dropout should be an emulated kernel"
    ref = K.function([x], [y], device="interp")
    for _ in range(3):
        np.testing.assert_array_equal(emu([xv])[0], ref([xv])[0])
