"""symk owns the threads of a call (``symk.runtime.threads``): numpy's BLAS thread count is the
same after a call (also one that raises) as before it, small products run on one BLAS thread
inside a call, large ones on the budget, SYMK_NUM_THREADS=1 keeps everything on one thread,
results match numpy, and a missing BLAS API is no error."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.errors import SymkError
from symk.runtime import threads


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMK_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "ENABLED", True)


@pytest.fixture
def blas():
    """numpy's BLAS (get, set), its count set to 2 for the test and restored after."""
    api = threads.blas_api()
    if api is None:
        pytest.skip("no BLAS thread API (neither OpenBLAS's nor threadpoolctl)")
    get, put = api
    old = get()
    put(2)
    yield get, put
    put(old)


@pytest.fixture
def trace(monkeypatch):
    sets: list[int] = []
    monkeypatch.setattr(threads, "trace", sets)
    return sets


def _fn(m: int, k: int, n: int):
    rng = np.random.default_rng(0)
    x = K.placeholder((None, k))
    wv = rng.standard_normal((k, n)).astype("f4")
    w = K.variable(wv)
    f = K.function([x], [K.tanh(K.dot(x, w))], device="cpu")
    xv = rng.standard_normal((m, k)).astype("f4")
    return f, xv, np.tanh(xv @ wv)


def test_numpy_count_restored_and_small_products_single(blas, trace):
    get, _ = blas
    f, xv, want = _fn(32, 64, 16)
    (got,) = f([xv])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert get() == 2
    assert trace == [1, 2]  # one thread for the product, numpy's 2 restored at the end
    trace.clear()
    f([xv])
    assert trace == [1, 2] and get() == 2


def test_numpy_count_untouched_when_it_is_one(blas, trace):
    get, put = blas
    put(1)
    f, xv, want = _fn(32, 64, 16)
    np.testing.assert_allclose(f([xv])[0], want, rtol=1e-5, atol=1e-5)
    assert get() == 1 and trace == []  # nothing to change: no set call at all


def test_count_restored_after_a_call_that_raises(blas):
    get, _ = blas
    x = K.placeholder((None, None))
    w = K.variable(np.ones((3, 2), "f4"))
    f = K.function([x], [K.dot(x, w)], device="cpu")
    with pytest.raises(SymkError):
        f([np.ones((4, 5), "f4")])  # the product fails inside the call
    assert get() == 2
    assert threads.cur[0] == 0 and threads._depth == 0  # noqa: SLF001
    assert f([np.ones((4, 3), "f4")])[0].shape == (4, 2)


def test_large_products_use_the_budget(blas, trace, monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    monkeypatch.setattr(threads, "MT_MIN_FLOPS", 1000)
    get, put = blas
    put(1)
    f, xv, want = _fn(64, 128, 64)
    np.testing.assert_allclose(f([xv])[0], want, rtol=1e-4, atol=1e-4)
    if threads.budget(f.fn.plans[0].executor.nthreads) < 2:
        pytest.skip("one usable core")
    assert trace == [2, 1] and get() == 1


def test_num_threads_one_keeps_everything_on_one_thread(blas, trace, monkeypatch):
    monkeypatch.setenv("SYMK_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    monkeypatch.setattr(threads, "MT_MIN_FLOPS", 1000)
    f, xv, want = _fn(64, 128, 64)
    np.testing.assert_allclose(f([xv])[0], want, rtol=1e-4, atol=1e-4)
    assert set(trace[:-1]) == {1} and trace[-1] == 2  # only the restore uses 2
    assert threads.kernel_threads(f.fn.plans[0].executor.nthreads) == 1
    assert threads.budget(f.fn.plans[0].executor.nthreads) == 1


def test_results_unchanged_by_the_control(blas, monkeypatch):
    f, xv, want = _fn(256, 512, 512)  # above MT_MIN_FLOPS
    on = f([xv])[0]
    monkeypatch.setattr(threads, "ENABLED", False)
    off = f([xv])[0]
    np.testing.assert_allclose(on, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(off, want, rtol=1e-4, atol=1e-4)


def test_disabled_control_sets_nothing(blas, trace, monkeypatch):
    monkeypatch.setattr(threads, "ENABLED", False)
    f, xv, _ = _fn(32, 64, 16)
    f([xv])
    assert trace == [] and blas[0]() == 2


def test_missing_blas_api_is_no_error(monkeypatch):
    monkeypatch.setattr(threads, "_api", None)
    f, xv, want = _fn(32, 64, 16)
    np.testing.assert_allclose(f([xv])[0], want, rtol=1e-5, atol=1e-5)
    assert threads.cur[0] == 0 and threads._depth == 0  # noqa: SLF001
    assert threads.single(lambda: 7) == 7


def test_loop_restores_the_count(blas, trace):
    get, _ = blas
    rng = np.random.default_rng(1)
    wv = rng.standard_normal((4, 4)).astype("f4")
    w = K.variable(wv)

    def step(x, states):
        h = K.tanh(K.dot(x, w) + states[0])
        return h, [h]

    x = K.placeholder((2, 5, 4))
    _, outs, _ = K.rnn(step, x, [K.zeros((2, 4))])
    f = K.function([x], [outs], device="cpu")
    xv = rng.standard_normal((2, 5, 4)).astype("f4")
    got = f([xv])[0]
    h = np.zeros((2, 4), "f4")
    for t in range(5):
        h = np.tanh(xv[:, t] @ wv + h)
        np.testing.assert_allclose(got[:, t], h, rtol=1e-5, atol=1e-5)
    assert get() == 2 and trace[-1] == 2 and set(trace[:-1]) == {1}


def test_kernel_threads_follow_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda: 1)
    assert threads.kernel_threads(4) == 1
    monkeypatch.setenv("SYMK_NUM_THREADS", "3")  # an explicit count is used as given
    assert threads.kernel_threads(3) == 3
    monkeypatch.setattr(threads, "ENABLED", False)
    monkeypatch.delenv("SYMK_NUM_THREADS")
    assert threads.kernel_threads(4) == 4


def test_free_cores_is_sampled_with_hysteresis(monkeypatch):
    cores = threads.usable_cores()
    monkeypatch.setattr(threads, "_sampled", -1e9)
    monkeypatch.setattr(threads, "_others_taken", 0)
    load = [10.0**6]
    monkeypatch.setattr(threads, "_sample", lambda now, mask: (load[0], cores))
    assert threads.free_cores() == 1
    load[0] = 0.0
    assert threads.free_cores() == 1  # within SAMPLE_S: the old sample

    def sample(others: float) -> int:
        load[0] = others
        monkeypatch.setattr(threads, "_sampled", -1e9)
        return threads.free_cores()

    assert sample(0.0) == cores
    if cores < 2:
        return
    assert sample(0.4) == cores  # below half a core: still free
    assert sample(0.6) == cores - 1  # taken
    assert sample(0.3) == cores - 1  # hysteresis: given back only below a quarter
    assert sample(0.2) == cores
    assert sample(1.6) == max(1, cores - 2)


def test_taken_hysteresis():
    taken = threads._taken  # noqa: SLF001
    assert [taken(x, 0) for x in (0.0, 0.49, 0.5, 1.2, 1.5)] == [0, 0, 1, 1, 2]
    assert [taken(x, 1) for x in (0.0, 0.24, 0.25, 1.0, 1.49, 1.5)] == [0, 0, 1, 1, 1, 2]
    assert [taken(x, 2) for x in (1.3, 1.24, 0.1)] == [2, 1, 0]


_STAT = """cpu  {u} 0 {s} {i} 10 0 5 {st} 7 0
cpu0 {u0} 0 0 {i0} 0 0 0 0 0 0
cpu1 {u1} 0 0 {i1} 0 0 0 0 0 0
intr 1 2 3
ctxt 4
"""


def _stat_file(tmp_path, **kw) -> str:
    path = tmp_path / "stat"
    path.write_text(_STAT.format(**{"u": 0, "s": 0, "i": 0, "st": 0, "u0": 0, "i0": 0, "u1": 0,
                                    "i1": 0, **kw}))
    return str(path)


def test_busy_seconds_of_the_mask(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_TCK", 100.0)
    monkeypatch.setattr(threads, "_NCPU", 2)
    monkeypatch.setattr(threads, "_STAT", _stat_file(tmp_path, u=300, s=100, i=900, st=20,
                                                     u0=250, i0=50, u1=50, i1=850))
    assert threads._busy_seconds({0, 1}) == (4.25, 2)  # noqa: SLF001  user+system+softirq+steal
    assert threads._busy_seconds({1}) == (0.5, 1)  # noqa: SLF001  cpu1's line only
    assert threads._busy_seconds({5}) == (4.25, 2)  # noqa: SLF001  unknown ids: all CPUs
    monkeypatch.setattr(threads, "_STAT", str(tmp_path / "missing"))
    assert threads._busy_seconds({0, 1}) is None  # noqa: SLF001


def test_sample_subtracts_own_cpu_time(tmp_path, monkeypatch):
    """Other processes' load = the CPUs' busy time minus this process's (all its threads:
    JAX's, BLAS's), over the wall time since the previous sample."""
    import os
    import time

    monkeypatch.setattr(threads, "_TCK", 100.0)
    monkeypatch.setattr(threads, "_NCPU", 2)
    monkeypatch.setattr(threads, "_STAT", _stat_file(tmp_path, u=145))  # 1.5 s busy
    pid, now = os.getpid(), 100.0
    own = time.process_time()
    monkeypatch.setattr(threads, "_prev", (now - 1.0, 0.0, own - 1.5, pid))
    others, n = threads._sample(now, {0, 1})  # noqa: SLF001
    assert n == 2 and others < 0.01  # all of it was this process's
    monkeypatch.setattr(threads, "_prev", (now - 1.0, 0.0, own - 0.5, pid))
    others, _ = threads._sample(now, {0, 1})  # noqa: SLF001
    assert 0.95 < others <= 1.0  # one core's worth by others
    assert threads._prev[:2] == (now, 1.5)  # noqa: SLF001  the next baseline
    # no usable baseline (another process after a fork, or a stale one): /proc/loadavg's
    # runnable tasks minus the caller
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 3/120 999\n")
    monkeypatch.setattr(threads, "_LOADAVG", str(loadavg))
    monkeypatch.setattr(threads, "_prev", (now - 1.0, 0.0, own, pid + 1))
    assert threads._sample(now, {0, 1}) == (2.0, 2)  # noqa: SLF001
    monkeypatch.setattr(threads, "_prev", (now - threads._STALE_S - 1, 0.0, own, pid))  # noqa: SLF001
    assert threads._sample(now, {0, 1}) == (2.0, 2)  # noqa: SLF001


def test_free_cores_reads_no_per_thread_files(monkeypatch):
    """A sample opens /proc/stat only (not one file per thread of the process)."""
    import builtins
    import os

    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f))
                        or real_open(f, *a, **k))
    monkeypatch.setattr(os, "open", lambda f, *a, **k: opened.append(str(f))
                        or real_os_open(f, *a, **k))
    monkeypatch.setattr(threads, "_sampled", -1e9)
    threads.free_cores()
    assert all("/task/" not in f for f in opened) and len(opened) <= 2


def _tune(tuner: threads.Tuner, key: tuple, seconds) -> list[int]:
    """Drive ``tuner`` through calls whose time is ``seconds(n)`` for ``n`` threads; returns
    the counts it gave, one per call, until it has chosen."""
    st = tuner.states.get(key)
    counts = []
    while st is None or not st.choice:
        s, n = tuner.pick(key)
        counts.append(n)
        if s is not None:
            tuner.record(s, n, seconds(n))
        st = tuner.states[key]
        assert len(counts) < 100
    return counts


def test_tuner_measures_blocks_then_keeps_the_faster():
    t = threads.Tuner()
    w, s = t.WARM, t.SAMPLES
    counts = _tune(t, ("a", 2), lambda n: 1.0 if n == 2 else 2.0)
    # warm-up, then a block with the budget and a block with one thread (each after one
    # unrecorded call)
    assert counts == [2] * w + [2] * (s + 1) + [1] * (s + 1)
    assert t.states[("a", 2)].choice == 2 and threads.stats["tuned"] == 2
    assert t.pick(("a", 2))[1] == 2
    _tune(t, ("b", 2), lambda n: 1.0 if n == 1 else 2.0)
    assert t.states[("b", 2)].choice == 1 and t.pick(("b", 2))[1] == 1
    # within MARGIN the budget does not win: fewer threads are kinder to a shared machine
    _tune(t, ("c", 2), lambda n: 1.0 if n == 1 else 0.99)
    assert t.states[("c", 2)].choice == 1


def test_tuner_measures_again_when_the_choice_turns_slow():
    t = threads.Tuner()
    key = ("a", 2)
    _tune(t, key, lambda n: 1.0 if n == 2 else 2.0)
    for _ in range(t.SLOW_CALLS - 1):  # a few slow calls are noise
        st, n = t.pick(key)
        t.record(st, n, 5.0)
    st, n = t.pick(key)
    t.record(st, n, 1.0)
    assert t.states[key].choice == 2 and t.states[key].slow == 0
    for _ in range(t.SLOW_CALLS):  # a run of them means the choice no longer holds
        st, n = t.pick(key)
        t.record(st, n, 5.0)
    assert t.states[key].choice == 0
    counts = _tune(t, key, lambda n: 5.0 if n == 2 else 2.0)
    assert counts[-1] == 1 and t.states[key].choice == 1


def test_tuner_measures_again_after_keep_calls_and_bounds_its_keys(monkeypatch):
    monkeypatch.setattr(threads.Tuner, "KEEP", 20)
    monkeypatch.setattr(threads.Tuner, "MAX_KEYS", 2)
    t = threads.Tuner()
    _tune(t, ("a", 2), lambda n: 1.0 if n == 2 else 2.0)
    for _ in range(19):
        st, n = t.pick(("a", 2))
        t.record(st, n, 1.0)
    assert t.states[("a", 2)].choice == 2
    t.pick(("a", 2))
    assert t.states[("a", 2)].choice == 0  # measuring again (warm: no warm-up calls)
    _tune(t, ("b", 2), lambda n: 1.0)
    assert t.pick(("c", 2)) == (None, 1)  # a third signature is not tuned: one thread
    assert ("c", 2) not in t.states


def test_plan_tunes_its_big_products(blas, trace, monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    monkeypatch.setattr(threads, "MT_MIN_FLOPS", 1000)
    f, xv, want = _fn(64, 128, 64)
    for _ in range(threads.Tuner.WARM + 2 * (threads.Tuner.SAMPLES + 1)):
        np.testing.assert_allclose(f([xv])[0], want, rtol=1e-4, atol=1e-4)
    plan = f.fn.plans[0].executor
    if threads.budget(plan.nthreads) < 2:
        pytest.skip("one usable core")
    (st,) = plan.tuner.states.values()
    assert st.choice in (1, 2) and len(st.many) == len(st.one) == threads.Tuner.SAMPLES
    trace.clear()
    f([xv])
    # numpy's count is 2: the budget's choice sets nothing; one thread is set, then restored
    assert trace == ([] if st.choice == 2 else [1, 2])


def test_no_tuner_when_the_thread_count_is_fixed(monkeypatch):
    monkeypatch.setenv("SYMK_NUM_THREADS", "2")
    f, xv, _ = _fn(64, 128, 64)
    f([xv])
    assert f.fn.plans[0].executor.tuner is None


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_in_shares_match_numpy(ta, tb, axis, dtype):
    """``gemm_shares``: C = alpha op(A) op(B) + beta C as 3 uneven shares of C's rows or
    columns on symk's threads, for every transpose flag, against numpy."""
    from symk.runtime.blas import NO_TRANS, TRANS, gemm_fn
    from symk.runtime.externs import gemm_shares

    call = gemm_fn(np.dtype(dtype))
    if call is None:
        pytest.skip("no CBLAS")
    rng = np.random.default_rng(0)
    m, n, k = 11, 7, 5
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    want = 0.5 * (a.T if ta else a) @ (b.T if tb else b) + 2.0 * c
    gemm_shares(call, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 0.5,
                a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 2.0, c.ctypes.data, n,
                c.itemsize, 3, axis)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def _loop_and_product(m: int, k: int, n: int):
    """A function with a loop that splits by rows and a big product after it."""
    rng = np.random.default_rng(0)
    x = K.placeholder((None, 3, k))
    wv = rng.standard_normal((k, n)).astype("f4")
    w = K.variable(wv)

    def step(xt, states):
        return xt * 0.5 + states[0], [xt * 0.5 + states[0]]
    last, _, _ = K.rnn(step, x, [K.zeros_like(x[:, 0])])
    f = K.function([x], [K.tanh(K.dot(last, w))], device="cpu")
    xv = rng.standard_normal((m, 3, k)).astype("f4")
    h = np.zeros((m, k), "f4")
    for t in range(3):
        h = xv[:, t] * 0.5 + h
    return f, xv, np.tanh(h @ wv)


def test_big_products_run_in_symk_shares(blas, trace, monkeypatch):
    """With a budget of 2 threads, big products of tall or wide operands in a function with a
    loop that splits by rows (from the first call where it does) run as row or column shares
    on symk's threads with one BLAS thread each: BLAS is never asked for 2 threads (its
    worker threads would spin on a core after the product, beside the loop's shares), and
    the numbers match.  Elsewhere a driver's big product keeps BLAS's threads (no return to
    Python per product)."""
    from symk.runtime import externs, scan_cpu

    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    monkeypatch.setattr(threads, "MT_MIN_FLOPS", 1000)
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_WORK", 0)  # the small loops split too
    monkeypatch.setattr(scan_cpu, "ROW_SPLIT_MIN_ROWS", 1)
    get, put = blas
    put(1)
    if threads.budget(threads.usable_cores()) < 2:
        pytest.skip("one usable core")
    shares = []
    gemm_shares = externs.gemm_shares

    def spy(*a):
        shares.append(a[-2:])
        return gemm_shares(*a)
    monkeypatch.setattr(externs, "gemm_shares", spy)
    import symk.runtime.driver as driver
    monkeypatch.setattr(driver, "gemm_shares", spy)
    for (m, k, n), axis in (((600, 32, 16), 0), ((8, 32, 300), 1)):
        shares.clear()
        trace.clear()
        f, xv, want = _loop_and_product(m, k, n)
        np.testing.assert_allclose(f([xv])[0], want, rtol=1e-4, atol=1e-4)
        assert shares and all(s == (2, axis) for s in shares)
        assert 2 not in trace and get() == 1
    shares.clear()
    trace.clear()
    f, xv, want = _fn(600, 32, 16)  # no loop: BLAS's threads
    np.testing.assert_allclose(f([xv])[0], want, rtol=1e-4, atol=1e-4)
    assert not shares and 2 in trace
    assert externs.own_split(10**9, 8, 8) == (1, 0)  # neither tall nor wide: BLAS's own


def test_a_big_product_of_disagreeing_sizes_raises(blas, monkeypatch):
    """Operands whose contracted sizes disagree (known only at run time) get symk's error,
    never a product in shares that would read past the smaller operand."""
    from symk.runtime import externs

    monkeypatch.setattr(threads, "free_cores", lambda: 2)
    monkeypatch.setattr(threads, "MT_MIN_FLOPS", 1000)
    monkeypatch.setattr(threads, "big", [2])
    x, y = np.ones((600, 40), "f4"), np.ones((30, 16), "f4")
    assert externs.own_matmul(x, y) is None
    np.testing.assert_allclose(externs.own_matmul(x, np.ones((40, 16), "f4")), 40.0)
    a, b = K.placeholder((None, None)), K.placeholder((None, None))
    f = K.function([a, b], [K.dot(a, b)], device="cpu")
    with pytest.raises(SymkError):
        f([x, y])
