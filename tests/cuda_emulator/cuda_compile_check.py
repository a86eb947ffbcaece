"""Compile-check CUDA C sources without a GPU: NVRTC through CuPy's low-level
``cupy.cuda.nvrtc`` binding (needs the NVRTC library, not a driver or a device) for sm_80 and
sm_90, and the PTX verified by ``ptxas`` when it is on PATH.  Successful checks are remembered
by source hash in ``$SYMK_NVRTC_CHECK_CACHE`` (default: a directory under the temp dir).

Facts this relies on (adapted from the shared tool): ``compile_using_nvrtc`` needs a device,
the raw binding does not; NVRTC must match the ptxas major.minor (NVRTC 13.5 emits PTX 9.5 that
ptxas 13.0 rejects).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ARCHS = ("sm_80", "sm_90")
CACHE = Path(os.environ.get("SYMK_NVRTC_CHECK_CACHE",
                            Path(tempfile.gettempdir()) / "symk-nvrtc-check"))


class CudaCompileError(RuntimeError):
    pass


def nvrtc_missing() -> str | None:
    """Why NVRTC cannot be used here (None when it can)."""
    try:
        from cupy.cuda import nvrtc
    except Exception as e:  # noqa: BLE001
        return f"cupy is not installed ({type(e).__name__}: {e})"
    try:
        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001
        return f"the NVRTC library is missing ({type(e).__name__}: {e})"
    return None


def nvrtc_version() -> tuple[int, int]:
    from cupy.cuda import nvrtc

    return tuple(nvrtc.getVersion())  # type: ignore[return-value]


def nvrtc_compile(source: str, arch: str = "sm_80", options=()) -> tuple[bytes, str]:
    """(cubin for ``sm_XX`` or PTX for ``compute_XX``, log)."""
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(source, "symk_kernels.cu", (), ())
    try:
        opts = (f"--gpu-architecture={arch}", "--std=c++17", *options)
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as e:
            raise CudaCompileError(
                f"NVRTC ({arch}) failed: {e}\n{nvrtc.getProgramLog(prog)}") from None
        log = nvrtc.getProgramLog(prog)
        if arch.startswith("sm_"):
            return nvrtc.getCUBIN(prog), log
        return nvrtc.getPTX(prog).rstrip(b"\0"), log
    finally:
        nvrtc.destroyProgram(prog)


def ptxas_verify(ptx: bytes, arch: str = "sm_80", ptxas: str = "ptxas") -> str:
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "k.ptx"
        p.write_bytes(ptx)
        r = subprocess.run([ptxas, f"-arch={arch}", str(p), "-o", str(Path(td) / "k.cubin")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise CudaCompileError(f"ptxas ({arch}) rejected the PTX:\n{r.stderr[-3000:]}")
        return r.stderr


def check_source(source: str, archs=ARCHS) -> list[str]:
    """NVRTC-compile ``source`` to PTX for each arch and verify it with ptxas when present
    (cached by source hash).  Returns what was done, e.g. ``["sm_80: nvrtc+ptxas"]``."""
    ptxas = shutil.which("ptxas")
    key = hashlib.sha256("\0".join([source, str(nvrtc_version()), str(bool(ptxas))])
                         .encode()).hexdigest()[:32]
    done = []
    for arch in archs:
        mark = CACHE / f"{key}_{arch}.ok"
        if mark.exists():
            done.append(f"{arch}: cached")
            continue
        ptx, _ = nvrtc_compile(source, arch.replace("sm_", "compute_"))
        if ptxas:
            ptxas_verify(ptx, arch, ptxas)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = mark.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("ok\n")
        os.replace(tmp, mark)
        done.append(f"{arch}: nvrtc{'+ptxas' if ptxas else ''}")
    return done
