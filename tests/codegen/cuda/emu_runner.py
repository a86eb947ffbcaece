"""Subprocess entry point of the emulator tests: builds every case of ``emu_cases``, compiles
all their CUDA kernels with one g++ run, runs each case under the forward and reverse thread
schedules and writes one JSON line per case (``ok`` or the failure) to the given file.

    python -m tests.codegen.cuda.emu_runner OUT.jsonl [case ...]

Running in a subprocess keeps a kernel that indexes out of bounds from crashing pytest; a case
that crashes the runner is the last one started (each line is flushed before the next case).
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np

from tests.compare import assert_match
from tests.cuda_emulator.emu_plan import EmuSession

SCHEDULES = ("forward", "reverse")
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-10, 1e-12)}


def main(out_path: str, names: list[str]) -> None:
    from tests.codegen.cuda.emu_cases import all_cases

    cases = all_cases()
    names = names or list(cases)
    sess = EmuSession()
    built = {}
    t0 = time.perf_counter()
    with open(out_path, "w") as out:
        for n in names:
            try:
                b = cases[n]()
                fn = sess.function([x.node for x in b.inputs], [o.node for o in b.outputs])
                built[n] = (b, fn)
            except Exception:  # noqa: BLE001
                out.write(json.dumps({"case": n, "error": traceback.format_exc()}) + "\n")
        t1 = time.perf_counter()
        sess.compile()
        t2 = time.perf_counter()
        out.write(json.dumps({"stats": {"kernels": len(sess.kernels), "build_s": t1 - t0,
                                        "gxx_s": t2 - t1}}) + "\n")
        out.flush()
        for n, (b, fn) in built.items():
            out.write(json.dumps({"case": n, "started": True}) + "\n")
            out.flush()
            try:
                for feeds in b.feeds:
                    want = b.expect(*feeds)
                    for sched in SCHEDULES:
                        sess.schedule = sched
                        got = fn(feeds)
                        for k, (g, w) in enumerate(zip(got, want)):
                            w = np.asarray(w)
                            rtol, atol = TOL.get(w.dtype.name, (0, 0))
                            assert_match(g, w.astype(w.dtype), rtol=rtol, atol=atol,
                                         what=f"{n} output {k} fed {[np.shape(f) for f in feeds]}"
                                              f" schedule {sched} kernels {fn.kernel_names}")
                rec = {"case": n, "ok": True}
            except Exception:  # noqa: BLE001
                rec = {"case": n, "error": traceback.format_exc()[-4000:]}
            out.write(json.dumps(rec) + "\n")
            out.flush()
        out.write(json.dumps({"stats": {"launches": sess.launches,
                                        "run_s": time.perf_counter() - t2}}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
