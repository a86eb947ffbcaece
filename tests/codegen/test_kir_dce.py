"""Dead-code elimination over Kernel IR (``kir_dce``): lowering's unused index arithmetic is
gone from every kernel, values are renumbered consistently, effects (stores, accumulations,
loops, params) always stay, and kernels compute exactly what they computed without it."""

from __future__ import annotations

import numpy as np
import pytest

from symk import backend as K
from symk.codegen import lowering
from symk.codegen.kir import Program
from symk.codegen.kir_dce import eliminate_dead_code, live_instructions
from symk.codegen.kir_interp import run_program
from symk.codegen.kir_verify import verify
from symk.codegen.lowering import lower_kernel
from symk.passes.pipeline import optimize
from symk.passes.schedule import Kernel
from tests.codegen.kircheck import reference_values, run_lowered
from tests.passes.fuzzgen import random_case

RNG = np.random.default_rng(7)


def _kernels(outputs) -> list[Kernel]:
    return optimize([o.node for o in outputs]).schedule.kernels


def _softmax_kernel() -> tuple[object, Kernel]:
    x = K.placeholder((None, 32))
    (k,) = _kernels([K.softmax(x, axis=1)])
    return x, k


def _size_products(prog: Program) -> list[int]:
    """``const * size`` products: the stride after the last axis that lowering computes and
    no index uses (``v11 = 32 * d0`` in the CUDA source of softmax before DCE)."""
    return [i for i, ins in enumerate(prog.ins) if ins.op == "alu" and ins.arg == "mul" and
            sorted(prog.ins[a].op for a in ins.args) == ["const", "param"]]


def test_softmax_kernel_loses_its_dead_index_products(monkeypatch):
    x, k = _softmax_kernel()
    prog = lower_kernel(k).program
    assert _size_products(prog) == []
    assert all(live_instructions(prog))
    with monkeypatch.context() as m:
        m.setattr(lowering, "eliminate_dead_code", lambda p: 0)
        raw = lower_kernel(k).program
    assert len(_size_products(raw)) == 4  # one per pass over the row, one for the store
    assert len(prog.ins) == len(raw.ins) - 4
    assert eliminate_dead_code(raw) == 4
    assert raw.text() == prog.text()
    assert eliminate_dead_code(prog) == 0  # a fixed point


def test_softmax_results_match_numpy_after_dce():
    x, k = _softmax_kernel()
    v = RNG.standard_normal((5, 32)).astype(np.float32)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    (got,) = run_lowered(lower_kernel(k), [v])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    fn = K.function([x], [K.softmax(x, axis=1)], device="cpu")
    np.testing.assert_allclose(fn([v])[0], want, rtol=1e-6, atol=1e-7)
    assert len(fn.fn.schedule.kernels) == 1


def _prog_with_effects() -> Program:
    """Every effect with an unused value, a dead chain, and an unused loop index."""
    p = Program("effects")
    inp = p.param("in0", "in", "float32")
    out = p.param("out0", "out", "float32")
    acc_out = p.param("out1", "out", "float32")
    n = p.param("d0", "size", "int64")
    zero = p.const(0, "int64")
    r = p.emit("range", "int64", (zero, n), {"axis": 0, "parallel": True})
    dead = p.emit("alu", "int64", (r, n), "mul")  # dead chain: mul -> add -> cast
    dead = p.emit("alu", "int64", (dead, p.const(3, "int64")), "add")
    p.emit("cast", "float64", (dead,), "float64")
    x = p.emit("load", "float32", (inp, r))
    p.emit("load", "float32", (inp, zero))  # a dead load
    p.emit("store", None, (out, r, x))
    p.emit("store_reduce", None, (acc_out, zero, x), "sum")
    a = p.emit("acc", "float32", (), "max")  # never read: still kept
    r2 = p.emit("range", "int64", (zero, p.const(2, "int64")), {"axis": 1, "parallel": False})
    p.emit("acc_update", None, (a, x))
    p.emit("end", None, (r2,))
    g = p.emit("argacc", "int64", (), "argmax")
    r3 = p.emit("range", "int64", (zero, p.const(2, "int64")), {"axis": 1, "parallel": False})
    p.emit("argacc_update", None, (g, x, r3))
    p.emit("end", None, (r3,))
    p.emit("acc_read", "int64", (g,))  # a dead read
    s = p.emit("acc", "float32", (), "sum")
    r4 = p.emit("range", "int64", (zero, p.const(2, "int64")), {"axis": 1, "parallel": False})
    p.emit("acc_scan", "float32", (s, x))  # its value unused, its accumulation kept
    p.emit("end", None, (r4,))
    p.emit("end", None, (r,))
    return p


def test_dce_never_removes_effects():
    p = _prog_with_effects()
    before = [ins.op for ins in p.ins]
    verify(p)
    assert eliminate_dead_code(p) == 6  # the chain of 3 and its const, a load, an acc_read
    verify(p)
    after = [ins.op for ins in p.ins]
    for op in ("param", "range", "end", "store", "store_reduce", "acc", "acc_update",
               "argacc", "argacc_update", "acc_scan"):
        assert after.count(op) == before.count(op), op
    assert after.count("load") == 1 and "acc_read" not in after and "cast" not in after
    assert [p.ins[i].arg[0] for i in p.params] == ["in0", "out0", "out1", "d0"]
    # renumbered operands still name the right instructions: the program runs the same
    v = np.arange(4, dtype=np.float32)
    out, red = np.zeros(4, np.float32), np.zeros(1, np.float32)
    run_program(p, [v, out, red], [4], 0, 4)
    np.testing.assert_array_equal(out, v)
    assert red[0] == v.sum()


def test_dce_of_an_unused_loop_keeps_the_loop():
    p = Program("loop")
    zero = p.const(0, "int64")
    r = p.emit("range", "int64", (zero, p.const(4, "int64")), {"axis": 0, "parallel": True})
    p.emit("alu", "int64", (r, r), "mul")
    p.emit("end", None, (r,))
    assert eliminate_dead_code(p) == 1
    assert [ins.op for ins in p.ins] == ["const", "const", "range", "end"]
    assert p.ins[3].args == (2,)


@pytest.mark.parametrize("group", range(3))
def test_kernels_compute_the_same_bits_with_and_without_dce(group, monkeypatch):
    """Random graphs: every kernel, lowered with and without DCE, gives identical outputs on
    the reference executor's inputs, and DCE removed something somewhere."""
    removed = 0
    for seed in range(group, 45, 3):
        case = random_case(seed)
        opt = optimize(list(case.roots))
        plan, vals = reference_values(opt.schedule, list(case.feeds), list(case.feeds.values()))
        for k in opt.schedule.kernels:
            lk = lower_kernel(k)
            with monkeypatch.context() as m:
                m.setattr(lowering, "eliminate_dead_code", lambda p: 0)
                raw = lower_kernel(k)
            removed += len(raw.program.ins) - len(lk.program.ins)
            ins = [vals[plan.slot[id(x)]] for x in lk.inputs]
            for a, b in zip(run_lowered(lk, ins), run_lowered(raw, ins)):
                np.testing.assert_array_equal(a, b, err_msg=f"{case.describe()} {k.name}")
    assert removed > 0
