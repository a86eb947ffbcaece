"""The emulator tests' subprocess runner, and ``drive``, which runs it from pytest.

    python -m tests.codegen.cuda.emu_runner OUT.jsonl SOURCE [--skip NAME,...] [NAME ...]

SOURCE is ``emu_cases`` (the hand-written cases of ``emu_cases``, named as there) or
``op_suite:DIR`` (the op suite's ``check_op`` cases saved by ``op_cases.save_cases`` in DIR,
named by index).  The runner builds every named case (all of them by default), compiles all
their CUDA kernels with one g++ run, runs each case not in ``--skip`` under the forward and
reverse thread schedules and writes JSON lines to OUT: per case ``ok``, ``error`` (naming the
case, the output, the schedule and the case's kernels) or ``excluded``, plus ``stats``.

Running in a subprocess keeps a kernel that indexes out of bounds from crashing pytest.  Each
case's ``started`` line is flushed before it runs, so ``drive`` knows which case crashed the
runner: it reports that case and restarts the runner on the others (the restarted runner builds
the same kernels, so g++ is skipped: its libraries are cached by source).  With
``$SYMK_EMU_CRASH_CASE`` set to a case name the runner aborts when it starts that case (the
test of that recovery).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tests.harness import OpCase

ROOT = Path(__file__).resolve().parents[3]
SCHEDULES = ("forward", "reverse")
#: tolerances of the hand-written cases by expected dtype (the op suite's come with each case)
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-10, 1e-12)}
#: environment variable naming a case at which the runner aborts (tests the crash recovery)
CRASH_ENV = "SYMK_EMU_CRASH_CASE"
Check = Callable[[str, np.ndarray, np.ndarray, tuple[float, float]], None]


def _emu_cases(names: list[str]) -> tuple[dict[str, OpCase | str], Check]:
    from tests.codegen.cuda.emu_cases import all_cases
    from tests.compare import assert_match

    builders = all_cases()
    out: dict[str, OpCase | str] = {}
    for n in names or list(builders):
        try:
            b = builders[n]()
            feeds = [(f, [np.asarray(w) for w in b.expect(*f)]) for f in b.feeds]
            out[n] = OpCase(n, [x.node for x in b.inputs], [o.node for o in b.outputs], feeds,
                            [TOL.get(w.dtype.name, (0, 0)) for w in feeds[0][1]])
        except Exception:  # noqa: BLE001
            out[n] = "error: " + traceback.format_exc()[-3000:]

    def check(what: str, got: np.ndarray, want: np.ndarray, tol: tuple[float, float]) -> None:
        assert_match(got, want, rtol=tol[0], atol=tol[1], what=what)
    return out, check


def _op_suite(directory: str, names: list[str]) -> tuple[dict[str, OpCase | str], Check]:
    from tests.codegen.cuda.op_cases import load_cases
    from tests.harness import assert_values

    cases = load_cases(Path(directory), [int(n) for n in names] if names else None)
    return {str(i): c for i, c in cases.items()}, assert_values


def _localize(sess: Any, fn: Any, c: OpCase) -> str:
    """The first emulated kernel of a failing case whose outputs differ from the reference
    executor's on the same inputs (and where), or '' when each kernel agrees on its own."""
    sess.localize = True
    try:
        for vals, _ in c.feeds:
            for sched in SCHEDULES:
                sess.schedule, sess.suspects = sched, []
                try:
                    fn(vals)
                except Exception:  # noqa: BLE001 - the failure itself is reported already
                    pass
                if sess.suspects:
                    return (f"kernel {sess.suspects[0]} differs from the reference executor "
                            f"(fed {[np.shape(v) for v in vals]}, schedule {sched})")
        return ""
    finally:
        sess.localize = False


def main(argv: list[str]) -> None:
    from tests.cuda_emulator.emu_plan import EmuSession

    out_path, source, *names = argv
    skip: set[str] = set()
    if names[:1] == ["--skip"]:
        skip = set(filter(None, names[1].split(",")))
        names = names[2:]
    t0 = time.perf_counter()
    cases, check = (_emu_cases(names) if source == "emu_cases"
                    else _op_suite(source.removeprefix("op_suite:"), names))
    sess = EmuSession()
    with open(out_path, "w") as out:
        def emit(rec: dict[str, Any]) -> None:
            out.write(json.dumps(rec) + "\n")
            out.flush()
        built = {}
        for n, c in cases.items():
            if isinstance(c, str):
                if n not in skip:
                    emit({"case": n, "excluded" if not c.startswith("error:") else "error": c})
                continue
            try:
                built[n] = (c, sess.function(c.inputs, c.outputs))
            except Exception:  # noqa: BLE001
                if n not in skip:
                    emit({"case": n, "where": c.where, "error": traceback.format_exc()[-3000:]})
        t1 = time.perf_counter()
        sess.compile()
        t2 = time.perf_counter()
        emit({"stats": {"kernels": sorted(sess.kernels), "host_kernels": sorted(sess.host_kernels),
                        "build_s": t1 - t0, "gxx_s": t2 - t1}})
        ran = 0
        for n, (c, fn) in built.items():
            if n in skip:
                continue
            emit({"case": n, "started": True, "where": c.where, "kernels": fn.kernel_names})
            if os.environ.get(CRASH_ENV) == n:
                os.abort()
            try:
                for vals, want in c.feeds:
                    for sched in SCHEDULES:
                        sess.schedule = sched
                        got = fn(vals)
                        for k, (g, w, tol) in enumerate(zip(got, want, c.tols)):
                            check(f"{c.where} output {k} fed {[np.shape(v) for v in vals]} "
                                  f"schedule {sched} kernels {fn.kernel_names}", g, w, tol)
                rec = {"case": n, "ok": True}
            except Exception:  # noqa: BLE001
                rec = {"case": n, "where": c.where, "kernels": fn.kernel_names,
                       "error": traceback.format_exc()[-4000:], "suspect": _localize(sess, fn, c)}
            emit(rec)
            ran += 1
        emit({"stats": {"cases": ran, "launches": sess.launches,
                        "run_s": time.perf_counter() - t2}})


def _read(path: Path) -> tuple[dict[str, dict], dict | None, list[dict]]:
    """(case records, the last started case without a record, stats lines) of a runner output."""
    recs: dict[str, dict] = {}
    started: dict | None = None
    stats: list[dict] = []
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "stats" in rec:
                stats.append(rec["stats"])
            elif rec.get("started"):
                started = rec
            else:
                recs[rec["case"]] = rec
    if started is not None and started["case"] in recs:
        started = None
    return recs, started, stats


def _drive_shard(source: str, names: list[str], out: Path, timeout: float
                 ) -> tuple[dict[str, dict], list[dict], int]:
    """Runs the runner on ``names`` until every case has a record (restarting after a crash);
    returns the records, the stats lines and the number of runner starts."""
    recs: dict[str, dict] = {}
    stats: list[dict] = []
    starts = 0
    while True:
        starts += 1
        cmd = [sys.executable, "-m", "tests.codegen.cuda.emu_runner", str(out), source,
               "--skip", ",".join(recs), *names]
        try:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            rc, err = r.returncode, r.stderr[-3000:]
        except subprocess.TimeoutExpired as e:
            rc, err = "timeout", str(e.stderr or "")[-3000:]
        new, started, st = _read(out)
        recs.update(new)
        stats.extend(st)
        if rc == 0:
            return recs, stats, starts
        if started is None:  # died before running any case: report every case left
            for n in names:
                recs.setdefault(n, {"case": n, "error": f"the emulator runner exited with {rc} "
                                                        f"before running this case\n{err}"})
            return recs, stats, starts
        recs[started["case"]] = {**started, "started": False,
                                 "error": f"the case crashed the emulator runner ({rc})\n{err}"}
        if all(n in recs for n in names):
            return recs, stats, starts


def drive(source: str, names: list[str], out_dir: Path, shards: int = 1,
          timeout: float = 900) -> dict[str, Any]:
    """Run the cases ``names`` of ``source`` in ``shards`` runners side by side (contiguous
    slices).  Returns {"cases": name -> record, "stats": the runners' stats (numbers summed,
    name lists merged: "kernels" emulated, "host_kernels" on the reference executor),
    "starts": runner starts}."""
    size = -(-len(names) // shards)
    slices = [names[i:i + size] for i in range(0, len(names), size)]
    with ThreadPoolExecutor(len(slices)) as pool:
        parts = list(pool.map(lambda k: _drive_shard(source, slices[k],
                                                     out_dir / f"shard{k}.jsonl", timeout),
                              range(len(slices))))
    cases: dict[str, dict] = {}
    stats: dict[str, Any] = {}
    for recs, st, _ in parts:
        cases.update(recs)
        for s in st:
            for k, v in s.items():
                stats[k] = (sorted(set(stats.get(k, [])) | set(v)) if isinstance(v, list)
                            else stats.get(k, 0) + v)
    return {"cases": cases, "stats": stats, "starts": sum(p[2] for p in parts)}


if __name__ == "__main__":
    main(sys.argv[1:])
