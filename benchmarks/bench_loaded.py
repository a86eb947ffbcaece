"""symk's Keras fit on a machine loaded further: two busy processes (one per core) beside it,
symk's default thread control against ``SYMK_NUM_THREADS=1``, in interleaved fresh processes
(issue 16: "symk never gets slower than with one thread when the machine is loaded further").

    python benchmarks/bench_loaded.py [--rounds 3]

Each child is ``bench_keras_fit.run_symk`` (the MLP 64-256-256-10, 5 timed epochs, its median
epoch is reported); the busy processes start 0.5 s before it and are killed after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = ("import sys, json; sys.path.insert(0, '%s/benchmarks'); import bench_keras_fit as B; "
         "r = B.run_symk(5, %d, 'mlp256'); "
         "print('RES', json.dumps({'epoch': sorted(r['epoch_s'])[2]}))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    res: dict[tuple[str, int], list[float]] = {}
    for rnd in range(args.rounds):
        for mode in ("default", "one"):
            for bs in (32, 256):
                e = run_one(mode, bs)
                res.setdefault((mode, bs), []).append(e)
                print(rnd, mode, bs, f"{e:.4f}", f"loadavg {os.getloadavg()[0]:.2f}", flush=True)
    for k, v in sorted(res.items()):
        print(k, "median", f"{statistics.median(v):.4f}", [f"{x:.4f}" for x in v])


def run_one(mode: str, bs: int) -> float:
    """Median epoch seconds of one symk child with two busy processes beside it."""
    busy = "import time\nt = time.time() + 120\nwhile time.time() < t: pass"
    spin = [subprocess.Popen([sys.executable, "-c", busy]) for _ in range(2)]
    try:
        time.sleep(0.5)
        env = dict(os.environ)
        if mode == "one":
            env["SYMK_NUM_THREADS"] = "1"
        out = subprocess.run([sys.executable, "-c", CHILD % (ROOT, bs)], env=env,
                             capture_output=True, text=True, timeout=300).stdout
    finally:
        for s in spin:
            s.kill()
    line = [ln for ln in out.splitlines() if ln.startswith("RES")][0]
    return json.loads(line[4:])["epoch"]


if __name__ == "__main__":
    main()

