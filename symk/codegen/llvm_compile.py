"""LLVM IR text -> native object code with llvmlite (>= 0.45: no ``llvm.initialize()``).

Runs the new pass builder at O3 with loop and SLP vectorization for the host CPU and emits an
object file.  ``target_key()`` identifies everything that can change the generated code (triple,
CPU, features, LLVM and llvmlite versions), so callers can cache objects by content.
"""

from __future__ import annotations

import functools
import threading
import time

import llvmlite
import llvmlite.binding as llvm

from symk.codegen import llvmlite_fix  # noqa: F401  (makes llvmlite free its pass managers)
from symk.errors import SymkError

_lock = threading.Lock()
#: number of LLVM compilations done by this process (tests assert cache hits with it)
COMPILE_COUNT = 0


@functools.lru_cache(maxsize=1)
def target_machine() -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="pic", codemodel="default")


@functools.lru_cache(maxsize=1)
def target_key() -> str:
    return "|".join([llvm.get_process_triple(), llvm.get_host_cpu_name(),
                     llvm.get_host_cpu_features().flatten(),
                     ".".join(map(str, llvm.llvm_version_info)), llvmlite.__version__])


def _optimize(ir: str) -> llvm.ModuleRef:
    tm = target_machine()
    try:
        mod = llvm.parse_assembly(ir)
        mod.verify()
    except RuntimeError as e:
        raise SymkError(f"internal error: generated LLVM IR is invalid: {e}") from None
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


#: modules of more IR lines than this skip the loop vectorizer's vector epilogue (a third copy
#: of every loop body between the main vector loop and the scalar remainder): measured on a
#: 1000-op elementwise chain, LLVM time -25 %; small kernels (rows of 10) keep it
BIG_MODULE_LINES = 600


def _epilogue_vectorization(on: bool) -> None:
    # a process-wide LLVM option: only changed under _lock, around one compile
    llvm.set_option("", f"-enable-epilogue-vectorization={'true' if on else 'false'}")


def optimize_ir(ir: str, emit: bool = False) -> tuple[llvm.ModuleRef, bytes]:
    """The module after O3 and (with ``emit``) its object code; call with ``_lock`` held."""
    big = ir.count("\n") > BIG_MODULE_LINES
    if big:
        _epilogue_vectorization(False)
    try:
        mod = _optimize(ir)
        return mod, target_machine().emit_object(mod) if emit else b""
    finally:
        if big:
            _epilogue_vectorization(True)


def compile_object(ir: str) -> tuple[bytes, float]:
    """(object code, seconds spent) for a module's IR text."""
    global COMPILE_COUNT
    t0 = time.perf_counter()
    with _lock:
        _, obj = optimize_ir(ir, emit=True)
        COMPILE_COUNT += 1
    return obj, time.perf_counter() - t0


def optimized_ir_text(ir: str) -> str:
    """The IR after O3 (for dumps and vectorization tests)."""
    with _lock:
        return str(optimize_ir(ir)[0])
