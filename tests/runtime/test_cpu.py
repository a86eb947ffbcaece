"""The ``cpu`` device: native kernels split across the thread pool (identical results for any
thread count, small kernels inline), input layouts and dtypes the kernels receive, and the
debugging surface (``SYMK_DEBUG`` 2/4/5, ``SYMK_DUMP_DIR``, ``fn.kernels``, ``fn.profile()``).
Numbers are checked against numpy written here."""

from __future__ import annotations

import re

import numpy as np
import pytest

import symk.runtime.cpu_pool as cpu_pool
import symk.runtime.driver as driver
from symk import backend as K
from symk.errors import SymkError


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMK_CACHE_DIR", str(tmp_path_factory.mktemp("symk-cache")))
        yield


@pytest.fixture
def pool_spy(monkeypatch):
    """Records the [start, end) chunks submitted to the thread pool."""
    chunks: list[tuple[int, int]] = []
    real = cpu_pool.get_pool

    class Spy:
        def __init__(self, pool):
            self.pool = pool

        def submit(self, fn, *args):  # (..., lo, hi): the chunk is the last two
            chunks.append(tuple(args[-2:]))
            return self.pool.submit(fn, *args)

    monkeypatch.setattr(cpu_pool, "get_pool", lambda n: Spy(real(n)))
    return chunks


def _model(rows: int | None = None, cols: int = 1000):
    x = K.placeholder((rows, cols))
    b = K.placeholder((cols,))
    outs = [K.tanh(x * 1.7 + 0.3) * K.sigmoid(x) + K.exp(-x * x) * 0.5 + b,
            K.sum(x * x, axis=1), K.max(x, axis=1), K.argmax(x, axis=1),
            K.softmax(x, axis=-1), K.sum(x, axis=0)]
    return [x, b], outs


def _numpy_model(x, b):
    with np.errstate(all="ignore"):
        e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
        return [np.tanh(x * 1.7 + 0.3) / (1 + np.exp(-x)) + np.exp(-x * x) * 0.5 + b,
                (x.astype(np.float64) ** 2).sum(1), x.max(1), x.argmax(1),
                e / e.sum(1, keepdims=True), x.astype(np.float64).sum(0)]


def test_thread_count_does_not_change_results(monkeypatch, pool_spy):
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(1000, 1000)).astype(np.float32)
    bv = rng.normal(size=1000).astype(np.float32)
    results = {}
    for n in (1, 2):
        monkeypatch.setenv("SYMK_NUM_THREADS", str(n))
        inputs, outs = _model()
        f = K.function(inputs, outs, device="cpu")
        assert f.fn.plans[0].executor.nthreads == n
        before = len(pool_spy)
        results[n] = f([xv, bv])
        used = pool_spy[before:]
        if n == 1:
            assert used == []
        else:
            # each large kernel with a splittable outer loop sent its second half to the pool
            assert len(used) >= 4 and all(lo > 0 and hi <= 1000 for lo, hi in used), used
    for a, b in zip(results[1], results[2]):
        np.testing.assert_array_equal(a, b)
    for got, want in zip(results[2], _numpy_model(xv, bv)):
        # float32 sums (rows and columns) accumulate in float64
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_small_kernels_run_inline(monkeypatch, pool_spy):
    monkeypatch.setenv("SYMK_NUM_THREADS", "2")
    inputs, outs = _model(cols=8)
    f = K.function(inputs, outs, device="cpu")
    xv = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    bv = np.ones(8, np.float32)
    for got, want in zip(f([xv, bv]), _numpy_model(xv, bv)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert pool_spy == []


@pytest.mark.parametrize("rows", [2, 3, 5, 7])
def test_uneven_splits_cover_every_row(monkeypatch, pool_spy, rows):
    monkeypatch.setenv("SYMK_NUM_THREADS", "3")
    monkeypatch.setattr(driver, "PARALLEL_MIN_ELEMENTS", 1)
    inputs, outs = _model(cols=5)
    f = K.function(inputs, outs[:-1], device="cpu")  # every kernel's outer loop runs over rows
    xv = np.random.default_rng(rows).normal(size=(rows, 5)).astype(np.float32)
    bv = np.arange(5, dtype=np.float32)
    for got, want in zip(f([xv, bv]), _numpy_model(xv, bv)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert pool_spy and all(0 < lo < hi <= rows for lo, hi in pool_spy)
    # the calling thread runs the first chunk, the pool the rest: together they tile [0, rows)
    per_call = min(3, rows) - 1
    for start in range(0, len(pool_spy), per_call):
        part = pool_spy[start:start + per_call]
        assert part[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(part, part[1:]))


def test_full_reductions_are_never_split(monkeypatch, pool_spy):
    monkeypatch.setenv("SYMK_NUM_THREADS", "2")
    x = K.placeholder((None,))
    f = K.function([x], [K.sum(x), K.max(x)], device="cpu")
    v = np.random.default_rng(2).random(200_000).astype(np.float32)
    s, m = f([v])
    np.testing.assert_allclose(s, v.astype(np.float64).sum(), rtol=1e-6)
    assert m == v.max() and pool_spy == []


def test_bad_thread_count_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SYMK_NUM_THREADS", "many")
    x = K.placeholder((3,))
    with pytest.raises(SymkError, match="SYMK_NUM_THREADS"):
        K.function([x], [K.exp(x) + 2.0], device="cpu")


def test_non_contiguous_and_other_dtype_inputs():
    x = K.placeholder((None, 3))
    i = K.placeholder((None,), dtype="int32")
    f = K.function([x, i], [x * 2.0 + 1.0, K.cast(i, "float32") * K.sum(x, axis=1)],
                   device="cpu")
    base = np.arange(24, dtype=np.float64).reshape(6, 4)
    xv = base[::2, 1:]  # float64 strided view fed to a float32 placeholder
    iv = np.array([3, -1, 2], np.int64)
    a, b = f([xv, iv])
    np.testing.assert_array_equal(a, (xv * 2 + 1).astype(np.float32))
    np.testing.assert_array_equal(b, (iv * xv.sum(1)).astype(np.float32))
    xt = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    a, b = f([xt, np.ones(4, np.int32)])
    np.testing.assert_array_equal(a, xt * 2 + 1)
    np.testing.assert_array_equal(b, xt.sum(1))


def test_kernels_mix_with_extern_calls_and_views():
    x = K.placeholder((None, 4))
    w = K.variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    h = K.relu(K.dot(x, w) + 0.5)
    out = K.sum(K.reshape(h, (-1,)) * 2.0)
    f = K.function([x], [h, out], device="cpu")
    xv = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    hw = np.maximum(xv @ K.get_value(w) + 0.5, 0)
    got_h, got_o = f([xv])
    np.testing.assert_allclose(got_h, hw, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_o, 2 * hw.sum(), rtol=1e-5)


def test_updates_on_cpu():
    v = K.variable(np.zeros(3, np.float32))
    x = K.placeholder((3,))
    f = K.function([x], [v * 1.0], updates=[(v, v * 0.5 + x)], device="cpu")
    xv = np.array([1.0, 2.0, 4.0], np.float32)
    out1 = f([xv])[0]
    out2 = f([xv])[0]
    np.testing.assert_array_equal(out1, 0.0)
    np.testing.assert_array_equal(out2, xv)
    np.testing.assert_array_equal(K.get_value(v), xv * 0.5 + xv)


# ---------------------------------------------------------------- debugging surface


def _debug_model(tag: float):
    x = K.placeholder((None, 6))
    return x, [K.tanh(x) * tag + 1.0, K.sum(K.exp(x) + tag, axis=1)]


def test_debug_2_prints_one_line_per_kernel_run(monkeypatch, capfd):
    x, outs = _debug_model(2.0)
    f = K.function([x], outs, device="cpu")
    capfd.readouterr()
    monkeypatch.setenv("SYMK_DEBUG", "2")
    f([np.ones((3, 6), np.float32)])
    err = capfd.readouterr().err
    names = [k["name"] for k in f.kernels]
    assert len(names) == 2
    for name in names:
        lines = [ln for ln in err.splitlines() if name in ln]
        assert len(lines) == 1, err
        assert re.search(rf"{name}: [0-9.]+ us, [0-9.]+ GB/s", lines[0]), lines[0]


def test_debug_4_prints_llvm_ir_and_5_kernel_ir(monkeypatch, capfd):
    monkeypatch.setenv("SYMK_DEBUG", "4")
    x, outs = _debug_model(3.0)
    f = K.function([x], outs, device="cpu")
    err = capfd.readouterr().err
    names = [k["name"] for k in f.kernels]
    assert "LLVM IR of" in err and all(f"define void @{n}(" in err for n in names)
    assert "Kernel IR of" not in err
    monkeypatch.setenv("SYMK_DEBUG", "5")
    x, outs = _debug_model(4.0)
    f = K.function([x], outs, device="cpu")
    err = capfd.readouterr().err
    names = [k["name"] for k in f.kernels]
    assert all(f"kernel {n}\n" in err for n in names) and "Kernel IR of" in err
    assert all(f"define void @{n}(" in err for n in names)


def test_dump_dir_gets_kir_and_module_ll(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMK_DUMP_DIR", str(tmp_path))
    x, outs = _debug_model(5.0)
    f = K.function([x], outs, name="dump me/please", device="cpu")
    names = {k["name"] for k in f.kernels}
    kir = list(tmp_path.rglob("*.kir"))
    assert {p.stem for p in kir} >= names
    for p in kir:
        if p.stem in names:
            assert p.read_text().startswith(f"kernel {p.stem}\n")
    lls = [p for p in tmp_path.rglob("module.ll") if p.parent == kir[0].parent]
    assert lls and all(f"define void @{n}(" in lls[0].read_text() for n in names)


def test_kernels_listing():
    x, outs = _debug_model(6.0)
    f = K.function([x], outs, device="cpu")
    ks = f.kernels
    assert [k["ops"] for k in ks] == [["tanh", "mul", "add"], ["exp", "add", "sum"]]
    for k in ks:
        assert re.match(r"^[ER]_n_6_[0-9a-f]{10}$", k["name"])
        assert k["kir"].startswith(f"kernel {k['name']}")
        assert f"define void @{k['name']}(" in k["llvm_ir"]
    fi = K.function([x], outs, device="interp")
    assert [k["name"] for k in fi.kernels] == [k["name"] for k in ks]
    assert all("llvm_ir" not in k for k in fi.kernels)


def test_profile_table_names_each_kernel():
    x, outs = _debug_model(7.0)
    f = K.function([x], outs, device="cpu")
    f.profile()
    for _ in range(3):
        f([np.ones((4, 6), np.float32)])
    table = f.profile(False)
    lines = table.splitlines()
    assert lines[0].split() == ["step", "calls", "total", "ms", "us/call", "GB/s"]
    for k in f.kernels:
        row = [ln for ln in lines if ln.startswith(k["name"])]
        assert len(row) == 1 and row[0].split()[1] == "3", table
    f([np.ones((4, 6), np.float32)])  # profiling off: nothing more recorded
    assert f.profile(False) == table


def test_llvm_rejection_falls_back_to_the_reference_executor(monkeypatch):
    """A module LLVM refuses does not cost the caller a result: a warning, reference numbers."""
    import symk.runtime.native as native
    from symk.errors import SymkError

    def refuse(progs, label, rendered=None, drivers=()):
        raise SymkError("internal error: generated LLVM IR is invalid: (simulated)")

    monkeypatch.setattr(native, "build_native", refuse)
    x = K.placeholder((None, 3))
    with pytest.warns(RuntimeWarning, match="reference executor"):
        f = K.function([x], [K.exp(x) * 2.0 + K.sum(x, axis=1, keepdims=True)], device="cpu")
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    (out,) = f([xv])
    np.testing.assert_allclose(out, np.exp(xv) * 2 + xv.sum(1, keepdims=True), rtol=1e-6)


def test_small_input_addresses_are_remembered_but_bounded():
    """Small inputs (variables, fed arrays) keep their address in the plan: values changed in
    place are seen, ever-new arrays never grow the memo past its bound, large ones skip it."""
    from symk.runtime import driver

    x = K.placeholder((None, 4))
    b = K.variable(np.arange(4, dtype=np.float32))
    f = K.function([x], [K.exp(x) * 2.0 + b], device="cpu")
    plan = f.fn.plans[0].executor
    xv = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(f([xv])[0], np.exp(xv) * 2 + np.arange(4), rtol=1e-6)
    assert id(b.value) in plan.small
    b.value[:] = 10.0  # the same array, changed in place
    np.testing.assert_allclose(f([xv])[0], np.exp(xv) * 2 + 10.0, rtol=1e-6)
    for k in range(2 * driver.SMALL_INPUTS_KEPT):
        v = np.full((2, 4), k % 7, np.float32)
        np.testing.assert_allclose(f([v])[0], np.exp(v) * 2 + 10.0, rtol=1e-6)
    assert len(plan.small) <= driver.SMALL_INPUTS_KEPT
    big = np.zeros((driver.SMALL_INPUT_BYTES // 16 + 1, 4), np.float32)
    f([big])
    assert id(big) not in plan.small
