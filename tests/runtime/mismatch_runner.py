"""Replays the op suite's graphs with run-time sizes that disagree (the subprocess side of
``test_runtime_shapes.py``).

    python -m tests.runtime.mismatch_runner OUT.jsonl CASES_DIR DEVICE[,DEVICE...]

For every saved ``check_op`` case (``tests/codegen/cuda/op_cases.py``) with a fed input that has
a ``None`` dimension, each such dimension in turn is fed a different size than in the recorded
feed (1 and one more than recorded) while every other input keeps its recorded shape.  The
``interp`` device is the oracle: when it raises a ``SymkError`` every device must raise one too,
and when it accepts the feed (ops such as ``concatenate`` accept different sizes) every device
must return the same values.  Each variant's ``started`` line is flushed before it runs, so a
crash names the variant.  Writes one JSON line per variant (``ok``/``error``) and a last
``done`` line with counts.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np


def _resized(v: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``v`` with ``axis`` cut or cyclically extended to ``size``."""
    idx = np.arange(size) % max(v.shape[axis], 1)
    return np.take(v, idx, axis=axis) if v.shape[axis] else np.zeros(
        v.shape[:axis] + (size,) + v.shape[axis + 1:], v.dtype)


def variants(case: Any) -> list[tuple[str, list[np.ndarray]]]:
    vals = case.feeds[0][0]
    out = []
    for k, x in enumerate(case.inputs):
        for ax, d in enumerate(x.shape):
            if d is not None or len(case.inputs) < 2:
                continue
            n = vals[k].shape[ax]
            for size in sorted({1, n + 1} - {n}):
                fed = list(vals)
                fed[k] = _resized(vals[k], ax, size)
                out.append((f"input {k} axis {ax}: {n} -> {size}", fed))
    return out


def _run(f: Any, fed: list[np.ndarray]) -> tuple[str, Any]:
    from symk.errors import SymkError

    try:
        return "ok", [np.asarray(o) for o in f(fed)]
    except SymkError as e:
        return "symk", f"{type(e).__name__}: {str(e)[:300]}"
    except Exception as e:  # noqa: BLE001 - a raw exception is the failure we look for
        return "raw", f"{type(e).__name__}: {e}"


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and (
            np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True) if x.dtype.kind == "f"
            else np.array_equal(x, y)) for x, y in zip(a, b))


def main(out_path: str, cases_dir: str, devices: str) -> None:
    from symk.runtime.function import CompiledFunction
    from tests.codegen.cuda.op_cases import load_cases

    counts = {"variants": 0, "rejected": 0, "accepted": 0, "errors": 0}
    with open(out_path, "w") as out:
        def emit(rec: dict) -> None:
            out.write(json.dumps(rec) + "\n")
            out.flush()

        for i, case in load_cases(Path(cases_dir)).items():
            if isinstance(case, str):
                continue
            vs = variants(case)
            if not vs:
                continue
            fns = {d: CompiledFunction(case.inputs, case.outputs, [], device=d)
                   for d in ["interp", *devices.split(",")]}
            for label, fed in vs:
                name = f"case {i} ({case.where}) {label}"
                emit({"started": name})
                counts["variants"] += 1
                try:
                    want = _run(fns["interp"], fed)
                    bad = []
                    if want[0] == "raw":
                        bad.append(f"interp: raw {want[1]}")
                    for dev, f in fns.items():
                        if dev == "interp":
                            continue
                        got = _run(f, fed)
                        if got[0] == "raw":
                            bad.append(f"{dev}: raw {got[1]}")
                        elif got[0] != want[0]:
                            bad.append(f"{dev}: {got[0]} {str(got[1])[:300]}, interp: "
                                       f"{want[0]} {str(want[1])[:300]}")
                        elif got[0] == "ok" and not _same(got[1], want[1]):
                            bad.append(f"{dev}: values differ from interp's")
                    counts["rejected" if want[0] == "symk" else "accepted"] += 1
                except Exception:  # noqa: BLE001
                    bad = [traceback.format_exc()[-1500:]]
                if bad:
                    counts["errors"] += 1
                    emit({"error": name, "why": bad})
        emit({"done": counts})


if __name__ == "__main__":
    main(*sys.argv[1:4])
