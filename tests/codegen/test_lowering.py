"""Lowering of fused kernels to Kernel IR, checked without LLVM: every Kernel of a schedule is
executed by the Kernel-IR interpreter (the definition of its semantics) on the reference
executor's inputs and must reproduce the reference executor's values; whole schedules whose
kernels all run through the interpreter must reproduce numpy written in the tests.  Also the
structure of the IR: kernel names, the parallel loop, immediates, size params, the listing."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from symk import backend as K
from symk.codegen.kir_interp import run_program
from symk.codegen.lowering import kernel_sizes, lower_kernel, outer_extent, output_shapes
from symk.passes.pipeline import optimize
from symk.passes.schedule import Kernel
from symk.runtime.interp import InterpPlan
from tests.codegen.cases import CASES
from tests.codegen.kircheck import assert_match, check_kernels, run_lowered
from tests.passes.fuzzgen import random_case

# the reference executor's numpy mean warns on the empty_batch case
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")

N_FUZZ = int(os.environ.get("SYMK_FUZZ_CASES", "300"))
GROUPS = 6


# ---------------------------------------------------------------- kernels vs the reference


@pytest.mark.parametrize("group", range(GROUPS))
def test_fuzz_kernels_match_reference(group):
    checked = 0
    for seed in range(group, N_FUZZ, GROUPS):
        case = random_case(seed)
        checked += check_kernels(case.roots, case.feeds, what=case.describe())
    assert checked > 0


@pytest.mark.parametrize("name", list(CASES))
def test_case_kernels_match_reference(name):
    b = CASES[name]()
    roots = [o.node for o in b.outputs]
    for feeds in b.feeds:
        assert check_kernels(roots, dict(zip([x.node for x in b.inputs], feeds)),
                             what=name) > 0


class KirPlan(InterpPlan):
    """A plan whose fused kernels run through the Kernel-IR interpreter."""

    def kernel_step(self, k: Kernel):
        lk = lower_kernel(k)
        ins = [self.slot[id(x)] for x in lk.inputs]
        outs = [self.slot[id(o)] for o in lk.outputs]

        def run(vals):
            for s, v in zip(outs, run_lowered(lk, [vals[j] for j in ins])):
                vals[s] = v
        return run


def _run_kir(inputs, outputs, feeds):
    opt = optimize([o.node for o in outputs])
    plan = KirPlan(opt.schedule, [x.node for x in inputs])
    vals = plan.run([np.asarray(v) for v in feeds])
    return [np.asarray(vals[plan.slot[id(r)]]) for r in opt.roots]


@pytest.mark.parametrize("name", [n for n, f in CASES.items() if f().expect is not None])
def test_case_through_kernel_ir_matches_numpy(name):
    b = CASES[name]()
    for feeds in b.feeds:
        got = _run_kir(b.inputs, b.outputs, feeds)
        with np.errstate(all="ignore"):
            want = b.expect(*feeds)
        for k, (g, e) in enumerate(zip(got, want)):
            assert_match(g, np.asarray(e), rtol=2e-6, atol=1e-6, what=f"{name} output {k}")


# ---------------------------------------------------------------- interpreter semantics


def _one_kernel(outputs) -> Kernel:
    ks = optimize([o.node for o in outputs]).schedule.kernels
    assert len(ks) == 1, [k.name for k in ks]
    return ks[0]


@pytest.mark.parametrize("build", [
    lambda x: [K.exp(x) * 2.0 + x],
    lambda x: [K.sum(x * x, axis=1)],
    lambda x: [K.softmax(x, axis=1)],
    lambda x: [K.argmax(x, axis=1)],
], ids=["elementwise", "row-sum", "softmax", "argmax"])
def test_parallel_range_split_in_chunks_gives_the_same_result(build):
    """The runtime splits the parallel loop in [start, end) chunks across threads: running the
    chunks one after another must produce exactly the result of one call."""
    x = K.placeholder((None, 6))
    lk = lower_kernel(_one_kernel(build(x)))
    v = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
    whole = run_lowered(lk, [v])
    sizes = kernel_sizes(lk, [v])
    n = outer_extent(lk, sizes)
    assert n == 7
    outs = [np.full(s, np.nan, np.dtype(o.dtype)) if np.dtype(o.dtype).kind == "f"
            else np.zeros(s, o.dtype) for s, o in zip(output_shapes(lk, sizes), lk.outputs)]
    for lo, hi in [(0, 2), (2, 3), (3, 7)]:
        run_program(lk.program, [v, *outs], sizes, lo, hi)
    for a, b in zip(outs, whole):
        np.testing.assert_array_equal(a, b)
    # one chunk writes only its own rows
    part = [np.zeros_like(o) for o in outs]
    run_program(lk.program, [v, *part], sizes, 2, 4)
    flat = part[0].reshape(7, -1)
    assert not flat[:2].any() and not flat[4:].any()
    np.testing.assert_array_equal(flat[2:4], whole[0].reshape(7, -1)[2:4])


# ---------------------------------------------------------------- IR structure

NAME = re.compile(r"^(E|R)_([0-9n]+(_[0-9n]+)*|s)_[0-9a-f]{10}$")


def test_kernel_names_come_from_kind_shape_and_content():
    x = K.placeholder((None, 4))
    y = K.placeholder((3, 5, 2))
    ke = _one_kernel([K.tanh(x) + 1.0])
    kr = _one_kernel([K.sum(K.exp(x), axis=1)])
    k3 = _one_kernel([K.max(y * 2.0, axis=[0, 2])])
    for k in (ke, kr, k3):
        assert NAME.match(k.name), k.name
        assert lower_kernel(k).program.name == k.name
    assert ke.name.startswith("E_n_4_")
    assert kr.name.startswith("R_n_4_")
    assert k3.name.startswith("R_3_5_2_")
    s = K.placeholder(())
    assert _one_kernel([K.exp(s) * s]).name.startswith("E_s_")


def test_kernel_names_ignore_names_and_identity_but_not_content():
    def build(c: float) -> Kernel:
        x = K.placeholder((None, 4), name=f"x{c}")
        v = K.variable(np.ones(4, np.float32))
        return _one_kernel([K.exp(x) * v + c])
    a, b = build(1.0), build(1.0)
    assert a.name == b.name
    assert lower_kernel(a).program.text() == lower_kernel(b).program.text()
    assert lower_kernel(a).program.digest() == lower_kernel(b).program.digest()
    assert build(2.0).name != a.name
    x = K.placeholder((None, 5))
    assert _one_kernel([K.exp(x) * K.variable(np.ones(5)) + 1.0]).name != a.name


def _ranges(prog):
    depth, out = 0, []
    for ins in prog.ins:
        if ins.op == "range":
            out.append((depth, ins.arg["parallel"]))
            depth += 1
        elif ins.op == "end":
            depth -= 1
    assert depth == 0
    return out


@pytest.mark.parametrize("build", [
    lambda x: [x * 2.0 - 1.0],
    lambda x: [K.sum(x, axis=0)],
    lambda x: [K.sum(x, axis=[1, 2], keepdims=True)],
    lambda x: [K.max(x)],
    lambda x: [K.softmax(x, axis=1)],
    lambda x: [K.logsumexp(x, axis=2)],
    lambda x: [K.argmin(x, axis=1)],
], ids=["elementwise", "sum0", "sum12", "max-all", "softmax1", "logsumexp2", "argmin1"])
def test_only_the_outermost_loop_is_parallel(build):
    x = K.placeholder((3, 4, 5))
    prog = lower_kernel(_one_kernel(build(x))).program
    ranges = _ranges(prog)
    assert ranges[0] == (0, True)
    assert all(not par for _, par in ranges[1:])
    assert sum(1 for d, _ in ranges if d == 0) == 1


def test_scalar_constants_are_immediates():
    x = K.placeholder((None, 4))
    lk = lower_kernel(_one_kernel([x * 2.5 + 0.125]))
    kinds = [lk.program.ins[p].arg[1] for p in lk.program.params]
    assert kinds == ["in", "out", "size"]
    assert len(lk.inputs) == 1 and lk.inputs[0] is x.node
    consts = [(ins.arg, ins.dtype) for ins in lk.program.ins if ins.op == "const"]
    assert (2.5, "float32") in consts and (0.125, "float32") in consts


def test_none_dims_become_size_params_read_from_inputs():
    x = K.placeholder((None, None))
    v = K.placeholder((None,))
    k = _one_kernel([K.sum(x * v, axis=0)])
    lk = lower_kernel(k)
    kinds = [lk.program.ins[p].arg[1] for p in lk.program.params]
    assert kinds.count("size") == 2 and kinds[-2:] == ["size", "size"]
    xv, vv = np.ones((3, 7), np.float32), np.arange(7, dtype=np.float32)
    ins = [xv if i is x.node else vv for i in lk.inputs]
    sizes = kernel_sizes(lk, ins)
    assert sorted(sizes) == [3, 7]
    assert output_shapes(lk, sizes) == [(7,)]
    # the only kept axis is innermost: a column reduction, accumulated in one outer pass
    assert outer_extent(lk, sizes) == 1
    np.testing.assert_array_equal(run_lowered(lk, ins)[0], 3 * vv)


def test_float32_sums_accumulate_in_float64():
    x = K.placeholder((4, 5))
    prog = lower_kernel(_one_kernel([K.sum(x, axis=1)])).program
    accs = [ins for ins in prog.ins if ins.op == "acc"]
    assert [(a.arg, a.dtype) for a in accs] == [("sum", "float64")]
    prog = lower_kernel(_one_kernel([K.max(x, axis=1)])).program
    assert [(a.arg, a.dtype) for a in prog.ins if a.op == "acc"] == [("max", "float32")]


def test_text_listing():
    x = K.placeholder((None, 3))
    prog = lower_kernel(_one_kernel([K.sum(K.exp(x), axis=1)])).program
    lines = prog.text().splitlines()
    assert lines[0] == f"kernel {prog.name}"
    assert len(lines) == len(prog.ins) + 1
    for i, (line, ins) in enumerate(zip(lines[1:], prog.ins)):
        assert line.strip().startswith(f"%{i} = {ins.op}("), line
        if ins.dtype:
            assert line.endswith(f": {ins.dtype}")
    indent = [len(line) - len(line.lstrip()) for line in lines[1:]]
    depth = 0
    for ins, ind in zip(prog.ins, indent):
        if ins.op == "end":
            depth -= 1
        assert ind == 2 * (depth + 1)
        if ins.op == "range":
            depth += 1
    assert any("[exp]" in line for line in lines) and any("[sum]" in line for line in lines)
    assert "parallel': True" in prog.text()


def test_reduction_of_booleans_and_counts():
    x = K.placeholder((None, 4), dtype="int32")
    outs = [K.any(K.greater(x, 2), axis=1), K.all(K.greater(x, -1), axis=0),
            K.sum(x, axis=1), K.prod(x, axis=0)]
    v = np.array([[1, 2, 3, 4], [0, -1, 2, 2], [5, 5, 5, 5]], np.int32)
    got = _run_kir([x], outs, [v])
    want = [(v > 2).any(1), (v > -1).all(0), v.sum(1, dtype=np.int32), v.prod(0, dtype=np.int32)]
    for g, e in zip(got, want):
        assert_match(g, e)


@pytest.mark.parametrize("kind", ["sum", "mean", "max", "prod"])
def test_column_reduction_with_an_epilogue_walks_memory_by_rows(kind):
    # sum(x, 0) feeding an elementwise epilogue (an SGD-style update of a bias): the
    # accumulation is one pass over the rows into an output-shaped buffer, then the epilogue
    x = K.placeholder((None, 6))
    b = K.placeholder((6,))
    red = getattr(K, kind)(K.relu(x), axis=0)
    out = b - 0.5 * red
    k = _one_kernel([out])
    assert k.reduction is not None and k.reduction.op.name == kind
    lk = lower_kernel(k)
    prog = lk.program
    assert not [ins for ins in prog.ins if ins.op == "acc"]  # no per-column accumulator
    assert [ins.arg for ins in prog.ins if ins.op == "store_reduce"] == [
        "sum" if kind == "mean" else kind]
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((9, 6)).astype(np.float32)
    bv = rng.standard_normal(6).astype(np.float32)
    ref = getattr(np, kind)(np.maximum(xv, 0), axis=0)
    assert_match(_run_kir([x, b], [out], [xv, bv])[0], bv - 0.5 * ref, rtol=2e-6, atol=1e-6)
    fn = K.function([x, b], [out, red])
    got_out, got_red = fn([xv, bv])
    assert_match(got_red, ref, rtol=2e-6, atol=1e-6)
    assert_match(got_out, bv - 0.5 * ref, rtol=2e-6, atol=1e-6)


def test_column_reduction_keepdims_epilogue_and_integer_sum():
    x = K.placeholder((None, 3, 4), dtype="int32")
    s = K.sum(x, axis=(0, 1), keepdims=True)
    out = s * 2 + 1
    lk = lower_kernel(_one_kernel([out]))
    assert not [ins for ins in lk.program.ins if ins.op == "acc"]
    v = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    want = v.sum((0, 1), keepdims=True, dtype=np.int32) * 2 + 1
    assert_match(_run_kir([x], [out], [v])[0], want)
    assert_match(K.function([x], [out])([v])[0], want)
