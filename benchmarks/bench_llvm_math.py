"""Speed of the inline LLVM math functions (symk/codegen/llvm_math.py) against numpy.

Compiles single-threaded loops ``out[i] = f(in[i])`` over float32 arrays at O3 for the host CPU
(the same way the tests do) and times them beside the numpy ufunc and a plain copy (the memory
bandwidth floor), reporting medians.

    python benchmarks/bench_llvm_math.py [--n 10000000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import llvmlite.binding as llvm  # noqa: E402

from symk.codegen.llvm_math import fn_name, math_module_ir  # noqa: E402

FUNCS = ("exp", "tanh", "log", "sigmoid", "log1p", "sin", "erf")


def _numpy(name: str, x: np.ndarray, out: np.ndarray) -> None:
    if name == "sigmoid":
        np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        np.reciprocal(out, out=out)
    elif name == "erf":
        import scipy.special
        scipy.special.erf(x, out=out)
    else:
        getattr(np, name)(x, out=out)


def _loop(name: str | None) -> str:
    call = (f"%y = call float @{fn_name(name, 'float')}(float %x)" if name else
            "%y = fadd float %x, 0.0")
    return f"""
define void @loop_{name or 'copy'}(ptr noalias %a, ptr noalias %o, i64 %n) {{
entry:
  %c = icmp sgt i64 %n, 0
  br i1 %c, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %pa = getelementptr inbounds float, ptr %a, i64 %i
  %x = load float, ptr %pa
  {call}
  %po = getelementptr inbounds float, ptr %o, i64 %i
  store float %y, ptr %po
  %i1 = add nuw nsw i64 %i, 1
  %d = icmp eq i64 %i1, %n
  br i1 %d, label %exit, label %loop
exit:
  ret void
}}
"""


def compile_loops():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    src = math_module_ir([(f, "float") for f in FUNCS]) + "".join(
        _loop(f) for f in (*FUNCS, None))
    t0 = time.perf_counter()
    mod = llvm.parse_assembly(src)
    tm = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    obj = tm.emit_object(mod)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    compile_s = time.perf_counter() - t0
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    fns = {f: proto(engine.get_function_address(f"loop_{f or 'copy'}")) for f in (*FUNCS, None)}
    return engine, fns, compile_s


def median_time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    engine, fns, compile_s = compile_loops()
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, args.n).astype(np.float32)
    xpos = np.abs(x) + np.float32(1e-3)
    out = np.empty_like(x)
    print(f"n = {args.n:,} float32, single thread, compile of all loops {compile_s:.2f} s")
    t_copy = median_time(lambda: np.copyto(out, x), args.repeats)
    t_loop_copy = median_time(lambda: fns[None](x.ctypes.data, out.ctypes.data, x.size),
                              args.repeats)
    print(f"{'np.copyto':>10}: {t_copy * 1e3:7.2f} ms   llvm copy loop {t_loop_copy * 1e3:7.2f} ms")
    print(f"{'function':>10}  {'symk ms':>8}  {'numpy ms':>8}  {'numpy/symk':>10}"
          f"  {'symk/copy':>9}")
    for f in FUNCS:
        a = xpos if f in ("log", "log1p") else x
        t_sym = median_time(lambda: fns[f](a.ctypes.data, out.ctypes.data, a.size), args.repeats)
        try:
            t_np = median_time(lambda: _numpy(f, a, out), args.repeats)
        except ImportError:
            t_np = float("nan")
        print(f"{f:>10}  {t_sym * 1e3:8.2f}  {t_np * 1e3:8.2f}  {t_np / t_sym:10.2f}"
              f"  {t_sym / t_copy:9.2f}")
    del engine


if __name__ == "__main__":
    main()
