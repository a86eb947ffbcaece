"""The Kernel-IR verifier (``kir_verify``): hand-built bad programs are rejected with an error
naming the kernel and the instruction; lowered kernels pass, with their buffer accesses proven
in bounds; and the test suite verifies every kernel it lowers (``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from symk import backend as K
from symk.codegen import kir_verify
from symk.codegen.kir import Ins, Program
from symk.codegen.kir_verify import KirVerifyError, verify, verify_lowered
from symk.codegen.lowering import lower_kernel
from symk.passes.pipeline import optimize

DIMS = {"in0": (8,), "out0": (8,)}


def _prog(body: Callable[[Program, dict[str, int]], None]) -> Program:
    """A kernel ``bad`` with params in0/out0 (float32) and d0, a constant 0 and a parallel
    loop %5 over [0, 8) around ``body``."""
    p = Program("bad")
    v = {"in": p.param("in0", "in", "float32"), "out": p.param("out0", "out", "float32"),
         "n": p.param("d0", "size", "int64"), "zero": p.const(0, "int64"),
         "eight": p.const(8, "int64")}
    v["r"] = p.emit("range", "int64", (v["zero"], v["eight"]), {"axis": 0, "parallel": True})
    body(p, v)
    p.emit("end", None, (v["r"],))
    return p


def _copy(p: Program, v: dict[str, int]) -> None:
    x = p.emit("load", "float32", (v["in"], v["r"]))
    p.emit("store", None, (v["out"], v["r"], x))


def _rejects(prog: Program, at: int, words: str, dims=DIMS) -> None:
    with pytest.raises(KirVerifyError) as e:
        verify(prog, dims)
    msg = str(e.value)
    assert "kernel 'bad'" in msg, msg
    assert f"instruction %{at} = {prog.ins[at].op}(" in msg, msg
    assert words in msg, msg


def test_a_well_formed_program_passes_with_its_accesses_proven():
    st = verify(_prog(_copy), DIMS)
    assert (st.proven, st.unchecked) == (2, 0)


def test_use_before_definition():
    p = _prog(_copy)
    p.ins[6] = Ins("load", "float32", (0, 7))  # the index is %7, defined after
    _rejects(p, 6, "uses %7 before its definition")


def test_double_definitions():
    p = _prog(_copy)
    p.params.append(p.params[0])
    _rejects(p, 0, "defined twice")
    p = _prog(_copy)
    p.ins[2] = Ins("param", "int64", (), ("in0", "size"))
    _rejects(p, 2, "param name 'in0' defined twice")


def test_dtype_mismatches():
    def add(p, v):
        x = p.emit("load", "float32", (v["in"], v["r"]))
        y = p.emit("cast", "float64", (x,), "float64")
        p.emit("store", None, (v["out"], v["r"], p.emit("alu", "float32", (x, y), "add")))
    _rejects(_prog(add), 8, "different dtypes ['float32', 'float64']")

    def store(p, v):
        x = p.emit("load", "float32", (v["in"], v["r"]))
        p.emit("store", None, (v["out"], v["r"], p.emit("cast", "float64", (x,), "float64")))
    _rejects(_prog(store), 8, "has dtype float64, expected float32")

    def load(p, v):
        p.emit("load", "float64", (v["in"], v["r"]))
    _rejects(_prog(load), 6, "a load of a float32 buffer")

    def index(p, v):
        p.emit("load", "float32", (v["in"], p.const(1.0, "float32")))
    _rejects(_prog(index), 7, "expected int64")

    def where(p, v):
        x = p.emit("load", "float32", (v["in"], v["r"]))
        p.emit("alu", "float32", (x, x, x), "where")
    _rejects(_prog(where), 7, "condition of 'where' is bool")


def test_out_of_bounds_constant_index():
    def body(p, v):
        x = p.emit("load", "float32", (v["in"], p.const(8, "int64")))
        p.emit("store", None, (v["out"], v["r"], x))
    _rejects(_prog(body), 7, "outside buffer 'in0' of 8 elements")


def test_out_of_bounds_loop_index():
    def body(p, v):  # out0[r + 1] for r in [0, 8)
        x = p.emit("load", "float32", (v["in"], v["r"]))
        i = p.emit("alu", "int64", (v["r"], p.const(1, "int64")), "add")
        p.emit("store", None, (v["out"], i, x))
    _rejects(_prog(body), 9, "index %8 ranges over [1, 8]")

    def negative(p, v):  # in0[7 - 2 r]
        i = p.emit("alu", "int64", (p.const(7, "int64"), p.emit(
            "alu", "int64", (v["r"], p.const(2, "int64")), "mul")), "sub")
        p.emit("load", "float32", (v["in"], i))
    _rejects(_prog(negative), 10, "ranges over [-7, 7]")


def test_out_of_bounds_with_run_time_sizes():
    def body(p, v):  # a loop over [0, d0 + 1) reading a buffer of d0 elements
        hi = p.emit("alu", "int64", (v["n"], p.const(1, "int64")), "add")
        r = p.emit("range", "int64", (v["zero"], hi), {"axis": 1, "parallel": False})
        p.emit("load", "float32", (v["in"], r))
        p.emit("end", None, (r,))
    _rejects(_prog(body), 9, "with sizes {'d0': 0}, outside buffer 'in0' of 0 elements",
             {"in0": ("d0",)})

    def rows(p, v):  # in0[8 * i + j] for j in [0, d0): in bounds of (8, d0) only if d0 <= 8
        r = p.emit("range", "int64", (v["zero"], v["n"]), {"axis": 1, "parallel": False})
        row = p.emit("alu", "int64", (v["r"], v["eight"]), "mul")
        p.emit("load", "float32", (v["in"], p.emit("alu", "int64", (row, r), "add")))
        p.emit("end", None, (r,))
    assert verify(_prog(rows), {"in0": (8, 8)}).unchecked == 1  # out of bounds iff d0 > 8
    _rejects(_prog(rows), 9, "with sizes {'d0': 1}, outside buffer 'in0' of 8 elements",
             {"in0": (1, 8)})
    # the d0-strided layout it should have used is proven for every d0
    p = _prog(rows)
    p.ins[7] = Ins("alu", "int64", (5, 2), "mul")
    assert verify(p, {"in0": (8, "d0")}).proven == 1


def test_scope_and_loop_structure():
    def outside(p, v):
        r = p.emit("range", "int64", (v["zero"], v["eight"]), {"axis": 1, "parallel": False})
        x = p.emit("load", "float32", (v["in"], r))
        p.emit("end", None, (r,))
        p.emit("store", None, (v["out"], v["r"], x))
    _rejects(_prog(outside), 9, "outside the loop %6 that defines it")

    def nested_parallel(p, v):
        r = p.emit("range", "int64", (v["zero"], v["eight"]), {"axis": 1, "parallel": True})
        p.emit("end", None, (r,))
    _rejects(_prog(nested_parallel), 6, "one outermost loop")

    p = _prog(_copy)
    p.ins.pop()  # the parallel loop is never closed
    _rejects(p, 5, "never closed")


def test_accumulator_rules():
    def read_first(p, v):
        a = p.emit("acc", "float32", (), "sum")
        p.emit("acc_read", "float32", (a,))
    _rejects(_prog(read_first), 7, "which no acc_update/argacc_update updated before")

    def read_inside(p, v):
        a = p.emit("acc", "float32", (), "sum")
        r = p.emit("range", "int64", (v["zero"], v["eight"]), {"axis": 1, "parallel": False})
        p.emit("acc_update", None, (a, p.emit("load", "float32", (v["in"], r))))
        p.emit("acc_read", "float32", (a,))
        p.emit("end", None, (r,))
    _rejects(_prog(read_inside), 10, "not at its own")

    def store_to_input(p, v):
        p.emit("store", None, (v["in"], v["r"], p.emit("load", "float32", (v["in"], v["r"]))))
    _rejects(_prog(store_to_input), 7, "not a buffer param of kind out or scratch")


def test_lowered_kernels_pass_with_proven_bounds():
    x = K.placeholder((None, 5, 7))
    roots = [K.softmax(x, axis=2), K.sum(x * 2.0, axis=1), K.argmax(x, axis=2),
             K.permute_dimensions(x, (0, 2, 1)) + 1.0, x[:, 1:4, ::2] * 3.0]
    for k in optimize([r.node for r in roots]).schedule.kernels:
        st = verify_lowered(lower_kernel(k))
        assert st.proven > 0 and st.unchecked == 0, k.name


def test_guarded_slice_gradient_indices_are_left_unchecked():
    x = K.placeholder((10,))
    g = K.placeholder((3,))
    (gx,) = K.gradients(K.sum(x[2:5] * g), [x])
    (k,) = [k for k in optimize([gx.node]).schedule.kernels
            if any(n.op.name == "slice_grad" for n in k.nodes)]
    st = verify_lowered(lower_kernel(k))
    assert st.unchecked >= 1  # in0[where(0 <= i - 2 < 3, i - 2, 0)]: not affine
    fn = K.function([x, g], [gx], device="cpu")
    gv = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(fn([np.ones(10, np.float32), gv])[0],
                                  np.r_[0, 0, gv, 0, 0, 0, 0, 0].astype(np.float32))


def test_the_suite_verifies_every_kernel_it_lowers(monkeypatch):
    assert kir_verify.ENABLED  # switched on by tests/conftest.py
    seen = []
    monkeypatch.setattr(kir_verify, "verify_lowered", lambda lk: seen.append(lk.program.name))
    x = K.placeholder((None, 4))
    (k,) = optimize([K.exp(x).node]).schedule.kernels
    lower_kernel(k)
    assert seen == [k.name]
