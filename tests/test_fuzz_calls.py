"""The hostile-caller fuzz test: 1,200 malformed and edge-case calls from a fixed seed
(``tests/fuzz_calls.py``), run in two subprocesses side by side.  Asserts no crash, no hang, no
raw (non-symk) exception, no silent acceptance of a bad call, that rejections name the K
function and the user's line (or the offending input / variable), and that the valid edge cases
give numpy's values."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED, N, SHARDS = 20261206, 1200, 2
TIMEOUT = 150


def test_fuzz_calls(tmp_path) -> None:
    outs = [tmp_path / f"shard{k}.jsonl" for k in range(SHARDS)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.fuzz_calls", str(o), str(SEED),
                               str(N), str(k), str(SHARDS)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, o in enumerate(outs)]
    problems: list[str] = []
    results: list[dict] = []
    for p, o in zip(procs, outs):
        try:
            _, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        recs = [json.loads(ln) for ln in o.read_text().splitlines()] if o.exists() else []
        results += [r for r in recs if "case" in r]
        started = [r["started"] for r in recs if "started" in r]
        finished = {r["case"] for r in recs if "case" in r}
        hung = [s for s in started if s not in finished]
        if p.returncode != 0 or hung:
            problems.append(f"worker exit {p.returncode} (negative: killed by a signal or the "
                            f"{TIMEOUT} s limit) during case {hung[:1]}:\n{err[-2000:]}")
    bad = [r for r in results if not r["ok"]]
    by_template = Counter(r["template"] for r in bad)
    problems += [f"case {r['case']} {r['template']} {r['params']}: {r['why']}" for r in bad[:12]]
    assert not problems, f"{len(bad)} bad of {len(results)} ({dict(by_template)}):\n" + \
        "\n".join(problems)
    assert len(results) == N, len(results)
    assert len({r["template"] for r in results}) >= 25
