"""Shared helpers of the benchmark scripts: timing, the OpenBLAS environment, result tables.

* :func:`maybe_unset_openblas` re-executes the process without ``OPENBLAS_CORETYPE`` and
  ``OPENBLAS_L2_SIZE`` (for every engine alike, since all take turns in one process); call it
  before importing numpy or any engine.
* :func:`measure` times a callable: warm-up calls, then timed samples (each of ``number``
  calls, calibrated so a sample lasts long enough to be read reliably), median and minimum.
  With ``cooldown`` it sleeps between samples, untimed: after a BLAS call OpenBLAS threads keep
  spinning for a while and would steal a core from whatever runs next.
* :func:`measure_interleaved` / :func:`measure_rows` do the same for several engines taking
  turns, one sample each per round, so load changes on a shared machine hit them alike.
* :class:`Row` and :func:`print_table` print one workload's results with ratios.
* :func:`isolated_rows` runs each engine alone in fresh processes (``--child``), rounds
  interleaved: no engine's threads (a spinning BLAS or XLA pool) run beside another's.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: seconds to wait after a BLAS call before the next timed call (see the module docstring)
BLAS_COOLDOWN = 0.15
_UNSET_MARK = "SYMK_BENCH_UNSET_OPENBLAS"


def maybe_unset_openblas(enabled: bool) -> None:
    """With ``enabled``, restart this process with both OpenBLAS variables removed (a no-op
    when neither is set).  Remembers what was removed for :func:`openblas_note`."""
    if not enabled:
        return
    present = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    if not present:
        return
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env[_UNSET_MARK] = ",".join(f"{k}={v}" for k, v in present.items())
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def openblas_note() -> str:
    removed = os.environ.get(_UNSET_MARK)
    if removed:
        return f"unset for this run (were {removed})"
    now = [f"{k}={os.environ[k]}" for k in OPENBLAS_VARS if k in os.environ]
    return ", ".join(now) + " (as set)" if now else "neither OPENBLAS_CORETYPE nor " \
        "OPENBLAS_L2_SIZE set"


def machine_note() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"load average {load}; OpenBLAS: {openblas_note()}")


class LoadMeter:
    """How many cores other processes kept busy while a workload ran: busy time of the whole
    machine (``/proc/stat``) minus this process's own CPU time (and its waited-for children),
    per wall-clock second.  Ratios measured while this is high are less trustworthy (with a
    core taken, OpenBLAS's threads wait on each other and small GEMMs slow down many times)."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others(self) -> float | None:
        b = self._busy()
        if b is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(0.0, (b - self.busy0) - (self._own() - self.own0)) / max(wall, 1e-9)


def wait_for_quiet(max_wait: float, threshold: float = 0.3, window: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes keep fewer than ``threshold`` cores
    busy over a ``window``-second interval; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        m = LoadMeter()
        time.sleep(window)
        others = m.others()
        if others is None or others < threshold:
            break
    return time.perf_counter() - t0


@dataclass
class Timing:
    """Seconds per call: median and minimum over ``samples`` samples of ``number`` calls."""

    median: float
    min: float
    samples: int
    number: int
    all: list[float] = field(default_factory=list, repr=False)


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7, budget: float = 3.0,
            cooldown: float = 0.0, min_sample: float = 2e-3, max_number: int = 1000) -> Timing:
    """Median and minimum time per call of ``fn()`` after ``warmup`` calls.

    Takes ``repeats`` samples (fewer when ``budget`` seconds of timed work would be exceeded,
    but at least 3).  Without ``cooldown`` a sample repeats ``fn`` ``number`` times, ``number``
    chosen so a sample lasts about ``min_sample`` s; with ``cooldown`` every sample is one call
    followed by an untimed sleep of ``cooldown`` s.
    """
    return measure_interleaved([fn], warmup=warmup, repeats=repeats, budget=budget,
                               cooldown=cooldown, min_sample=min_sample,
                               max_number=max_number)[0]


def measure_interleaved(fns: Sequence[Callable[[], Any]], *, warmup: int = 2, repeats: int = 7,
                        budget: float = 3.0, cooldown: float = 0.0, min_sample: float = 2e-3,
                        max_number: int = 1000) -> list[Timing]:
    """Like :func:`measure` for several engines taking turns: every round takes one sample of
    each (in a rotated order), so a change in the machine's load hits them all alike.  Stops
    after ``repeats`` rounds, or earlier (but after 3) once ``budget`` s per engine are spent."""
    numbers = []
    for fn in fns:
        for _ in range(warmup):
            fn()
            if cooldown:
                time.sleep(cooldown)
        number = 1
        if not cooldown:
            t0 = time.perf_counter()
            fn()
            one = time.perf_counter() - t0
            if one < min_sample:
                number = min(max_number, max(1, int(min_sample / max(one, 1e-7))))
        numbers.append(number)
    samples: list[list[float]] = [[] for _ in fns]
    spent = 0.0
    r = 0
    while r < repeats and (r < 3 or spent < budget * len(fns)):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            fn, number = fns[i], numbers[i]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            dt = time.perf_counter() - t0
            spent += dt
            samples[i].append(dt / number)
            if cooldown:
                time.sleep(cooldown)
        r += 1
    return [Timing(statistics.median(v), min(v), len(v), n, v) for v, n in zip(samples, numbers)]


def isolated_rows(script: str, engines: Sequence[str], rounds: int, child_args: Sequence[str],
                  timeout: float = 600.0, pythons: dict[str, str] | None = None,
                  ) -> dict[str, list[dict]]:
    """Run ``script --child ENGINE *child_args`` in a fresh process per engine and round
    (engines in a rotated order each round, so load changes hit them alike), each measuring
    its engine alone, with no other engine's threads in its process, under this Python or
    ``pythons[ENGINE]`` (a peer's own environment); returns the JSON line each child printed
    last, per engine (a failed child is left out, its error on stderr)."""
    import json
    import subprocess

    got: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(rounds):
        for k in range(len(engines)):
            e = engines[(k + r) % len(engines)]
            cmd = [(pythons or {}).get(e, sys.executable), script, "--child", e, *child_args]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"({e}: timed out after {timeout:.0f} s)", file=sys.stderr)
                continue
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode != 0 or not lines:
                print(f"({e}: exit {p.returncode})\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            got[e].append(json.loads(lines[-1]))
    return got


def isolated_row(name: str, runs: list[dict], key: str, device: str, note: str) -> Row | None:
    """A table row from :func:`isolated_rows` results (workload ``key``): the median of the
    processes' medians, the minimum of their minima, the median compile time and the worst
    error; None when no process measured it."""
    runs = [r[key] for r in runs if key in r]
    if not runs:
        return None
    med = statistics.median(r["median"] for r in runs)
    t = Timing(med, min(r["min"] for r in runs), sum(r["samples"] for r in runs), 1,
               [r["median"] for r in runs])
    compiles = [r["compile"] for r in runs if r["compile"] is not None]
    return Row(name, t, device, statistics.median(compiles) if compiles else None,
               max(r["error"] for r in runs), note)


def report_isolated(title: str, got: dict[str, list[dict]], key: str,
                    notes: dict[str, tuple[str, str]], goals: Sequence[tuple[str, float]],
                    processes: int, markdown: bool = False) -> None:
    """Print workload ``key`` of :func:`isolated_rows` results as a table (``notes``: engine
    -> (device, note)), then a target line per (peer, goal): symk's median at most ``goal``
    times the peer's."""
    rows = [r for r in (isolated_row(e, runs, key, *notes[e]) for e, runs in got.items()) if r]
    if not rows:
        return
    print_table(f"{title} (each engine alone in {processes} fresh process(es), calls back to "
                "back)", rows, symk_row=rows[0] if rows[0].engine == "symk" else None,
                markdown=markdown)
    by = {r.engine: r.timing.median for r in rows if r.timing}
    for peer, goal in goals:
        if "symk" in by and peer in by:
            s, j = by["symk"], by[peer]
            print(target_line(f"{key.upper()} <= {goal}x {peer}", s <= goal * j,
                              f"symk {s * 1e3:.2f} ms vs {peer} {j * 1e3:.2f} ms "
                              f"({s / j:.2f}x)"))


def child_result(**rows: Row) -> str:
    """The JSON line a ``--child`` process prints for :func:`isolated_rows`: each measured
    row under its key (a workload)."""
    import json

    out = {}
    for key, row in rows.items():
        t = row.timing
        if t is not None:
            out[key] = {"median": t.median, "min": t.min, "samples": t.samples,
                        "compile": row.compile_s, "error": row.error}
    return json.dumps(out)


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@dataclass
class Row:
    """One engine's result in a workload table."""

    engine: str
    timing: Timing | None
    symk_device: str = "-"
    compile_s: float | None = None  # compile (or build) plus the first call, seconds
    error: float | None = None  # max abs error against the float64 reference
    note: str = ""
    fn: Callable[[], Any] | None = field(default=None, repr=False)  # the call to time
    obj: Any = field(default=None, repr=False)  # the compiled function, for profiling


def measure_rows(rows: Sequence[Row], **kw: Any) -> None:
    """Fill the ``timing`` of every row that has a ``fn``, engines taking turns."""
    todo = [r for r in rows if r.fn is not None and r.timing is None]
    for r, t in zip(todo, measure_interleaved([r.fn for r in todo], **kw)):
        r.timing = t


def _fmt_ms(t: float | None) -> str:
    if t is None:
        return "-"
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _fmt_s(t: float | None) -> str:
    return "-" if t is None else f"{t:.3f}"


def print_table(title: str, rows: Sequence[Row], *, symk_row: Row | None = None,
                floor: Row | None = None, markdown: bool = False) -> None:
    """Print ``rows``: median/min ms per call, compile+first s, error, and the ratios
    ``symk/this`` (the symk cpu median over this engine's; > 1 means this engine is faster)
    and, with ``floor``, ``this/floor``."""
    ref = symk_row.timing.median if symk_row and symk_row.timing else None
    head = ["engine", "symk device", "median ms", "min ms", "n", "compile+1st s", "max err",
            "symk/this"]
    if floor is not None:
        head.append(f"this/{floor.engine}")
    head.append("note")
    lines = []
    for r in rows:
        med = r.timing.median if r.timing else None
        cells = [r.engine, r.symk_device, _fmt_ms(med), _fmt_ms(r.timing.min if r.timing else None),
                 f"{r.timing.samples}x{r.timing.number}" if r.timing else "-",
                 _fmt_s(r.compile_s), "-" if r.error is None else f"{r.error:.1e}",
                 f"{ref / med:.2f}" if ref and med else "-"]
        if floor is not None:
            fl = floor.timing.median if floor.timing else None
            cells.append(f"{med / fl:.2f}" if med and fl else "-")
        cells.append(r.note)
        lines.append(cells)
    print(f"\n## {title}")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" if i in (0, 1, len(head) - 1) else "---:"
                                for i in range(len(head))) + " |")
        for c in lines:
            print("| " + " | ".join(c) + " |")
        return
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) if i in (0, 1, len(head) - 1) else h.rjust(w)
                    for i, (h, w) in enumerate(zip(head, widths))).rstrip())
    for c in lines:
        print("  ".join(v.ljust(w) if i in (0, 1, len(head) - 1) else v.rjust(w)
                        for i, (v, w) in enumerate(zip(c, widths))).rstrip())


def optional(module: str) -> Any | None:
    """Import ``module`` if it is installed, else None."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def target_line(name: str, met: bool | None, detail: str) -> str:
    status = "n/a" if met is None else "MET" if met else "MISSED"
    return f"target {name}: {status} ({detail})"


def standard_arguments(description: str) -> Any:
    """An ``argparse.ArgumentParser`` with the options the engine-comparison benchmarks share:
    ``--repeats``, ``--markdown``, ``--unset-openblas`` and ``--wait-quiet``."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeats", type=int, default=15, help="timed samples per engine")
    ap.add_argument("--markdown", action="store_true", help="print tables as markdown")
    ap.add_argument("--unset-openblas", action="store_true",
                    help="re-exec without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (all engines)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="wait up to S s for the machine to be quiet first")
    return ap

