"""The shared renderer base (``symk/codegen/renderer.py``): both targets' rule tables cover every
scalar primitive and Kernel IR op, unknown ones fail with the same error, accumulation
identities are numpy's identity elements, and literals are spelled per target."""

from __future__ import annotations

import numpy as np
import pytest

from symk.codegen import cuda_math as cm
from symk.codegen.cuda_render import CudaRenderer, render_cuda
from symk.codegen.kir import Program
from symk.codegen.llvm_render import LLVMRenderer, render_kernel
from symk.codegen.renderer import Renderer, identity_value, is_float, is_uint, is_unsigned
from symk.errors import SymkError
from symk.graph.scalar import PRIMITIVES

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool"]
KINDS = ["sum", "prod", "max", "min", "any", "all"]
KIR_OPS = ["param", "const", "range", "end", "load", "store", "store_reduce", "alu", "cast",
           "acc", "acc_update", "acc_read", "acc_scan", "argacc", "argacc_update"]


def _unary(prim: str, dt: str = "float32") -> Program:
    p = Program(f"k_{prim}")
    a = p.param("in0", "in", dt)
    o = p.param("out0", "out", dt)
    n = p.param("d0", "size", "int64")
    r = p.emit("range", "int64", (p.const(0, "int64"), n), {"axis": 0, "parallel": True})
    x = p.emit("load", dt, (a, r))
    p.emit("store", None, (o, r, p.emit("alu", dt, (x,), prim)))
    p.emit("end", None, (r,))
    return p


@pytest.mark.parametrize("cls", [LLVMRenderer, CudaRenderer])
def test_every_primitive_and_op_has_a_rule(cls):
    assert issubclass(cls, Renderer)
    assert set(PRIMITIVES) - {"const", "cast"} == set(cls.code_for_op)
    # the CUDA renderer walks loops itself: range/end never reach its instruction rules
    ops = set(KIR_OPS) - ({"range", "end"} if cls is CudaRenderer else set())
    assert ops == set(cls.code_for_ins)


@pytest.mark.parametrize(("render", "target"), [(render_kernel, "LLVM"),
                                                (render_cuda, "CUDA")])
def test_unknown_primitive_and_op(render, target):
    with pytest.raises(SymkError, match=f"the {target} renderer has no rule for primitive 'gamma'"):
        render(_unary("gamma"))
    p = _unary("neg")
    p.ins[5] = type(p.ins[5])("frobnicate", "float32", (4,))
    with pytest.raises(SymkError,
                       match=f"the {target} renderer has no rule for Kernel IR 'frobnicate'"):
        render(p)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_identity_values_are_the_reductions_identities(kind, dt):
    """The one identity (``graph.ops.reduce.identity``, used by lowering, the interpreter and
    both renderers) is each combination's identity element in numpy."""
    got = identity_value(kind, dt)
    ufunc = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum,
             "any": np.logical_or, "all": np.logical_and}[kind]
    info = np.finfo(dt) if is_float(dt) else (np.iinfo(dt) if dt != "bool" else None)
    extremes = [False, True] if info is None else [info.min, info.max, 0]
    for v in np.array(extremes, dt):
        want = bool(v) if kind in ("any", "all") else v  # (logical: any value is its truth)
        assert ufunc(np.array(got).astype(dt), v) == want, (kind, dt, got, v)
    # argmax/argmin start from the max/min identity
    if kind in ("max", "min"):
        assert identity_value("arg" + kind, dt) == got


@pytest.mark.parametrize("renderer, kind, dtype, literal", [
    (LLVMRenderer, "sum", "float32", "0.0"),
    (LLVMRenderer, "prod", "float64", "1.0"),
    (LLVMRenderer, "max", "float32", "0xFFF0000000000000"),
    (LLVMRenderer, "min", "float16", "0xH7C00"),
    (LLVMRenderer, "max", "int8", "-128"),
    (LLVMRenderer, "all", "bool", "true"),
    (CudaRenderer, "sum", "float32", "0x0.0p+0f"),
    (CudaRenderer, "max", "float32", "__int_as_float(0xff800000)"),
    (CudaRenderer, "argmin", "float64", "__longlong_as_double(0x7ff0000000000000LL)"),
    (CudaRenderer, "max", "int64", "(-9223372036854775807LL - 1)"),
    (CudaRenderer, "min", "uint32", "4294967295u"),
    (CudaRenderer, "any", "bool", "false"),
])
def test_identity_literals(renderer, kind, dtype, literal):
    assert renderer(_unary("neg")).identity(kind, dtype) == literal


def test_literals():
    llvm = LLVMRenderer(_unary("neg"))
    cuda = CudaRenderer(_unary("neg"))
    for r in (llvm, cuda):
        assert r.literal(True, "bool") == "true" and r.literal(0, "bool") == "false"
    assert llvm.literal(1.5, "float32") == "0x3FF8000000000000"
    assert llvm.literal(-7, "int16") == "-7"
    assert cuda.literal(1.5, "float32") == "0x1.8000000000000p+0f"
    assert cuda.literal(float("nan"), "float64") == "__longlong_as_double(0x7ff8000000000000LL)"
    assert cuda.literal(-7, "int16") == "((short)-7)"
    assert cuda.literal(3, "uint64") == "3ULL"


def test_cuda_checks_the_c_type_before_the_rule():
    with pytest.raises(SymkError, match="does not support dtype float16"):
        CudaRenderer(_unary("neg", "float16")).primitive("add", "float16", ["a", "b"])
    assert cm.CudaC.code_for_op is CudaRenderer.code_for_op


def test_dtype_predicates():
    assert [d for d in DTYPES if is_float(d)] == ["float16", "float32", "float64"]
    assert [d for d in DTYPES if is_uint(d)] == ["uint8", "uint16", "uint32", "uint64"]
    assert [d for d in DTYPES if is_unsigned(d)] == ["uint8", "uint16", "uint32", "uint64",
                                                     "bool"]
