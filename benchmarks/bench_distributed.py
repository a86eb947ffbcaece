"""symk.distributed on this machine: Keras ``fit`` samples per second at 1 and 2 ranks, and
the time of an allreduce of 1-64 MB against raw mpi4py ``Allreduce`` on the same buffers.

* **fit**: the MLP 64-256-256-10 of ``bench_keras_fit.py`` (Adam, ``--batch-size`` per rank,
  default 32 and 256) on the digits, each rank on its shard, with ``DistributedOptimizer``
  and one thread per rank (``SYMK_NUM_THREADS=1``): samples per second over all ranks, median
  of ``--epochs`` timed epochs after a warm-up epoch, ``--rounds`` fresh jobs per rank count,
  interleaved.
* **allreduce**: a float32 buffer summed over 2 ranks.  symk's ``hvd.allreduce`` in a
  ``K.function`` of a *fed* tensor (the input is kept: copied into the result buffer, the
  ranks' header check, one in-place ``MPI_Allreduce``) against mpi4py into another buffer
  (``Allreduce(src, dst)``, which keeps its input too), a copy then in place (symk's steps
  without symk) and in place (``Allreduce(MPI.IN_PLACE, buf)``, which overwrites its input);
  and of a *computed* tensor (``x + 1``: its kernel writes into a buffer the collective sums
  in place) against numpy's add then mpi4py in place.  Each way runs blocks of ``--repeats``
  calls, in a rotating order over ``2 * --rounds`` (at least 3) rounds: the median of the
  blocks' medians.  Target: symk within 10 % of mpi4py doing the same work.

    python benchmarks/bench_distributed.py [--epochs 5] [--rounds 2] [--repeats 15]
        [--batch-size 32,256] [--sizes-mb 1,4,16,64]

Each job runs ``mpiexec -n N python -m mpi4py benchmarks/bench_distributed.py --child ...``
(the mpiexec beside this Python, from the ``mpich`` wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def _mpiexec() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        sys.exit("bench_distributed: no mpiexec (pip install -e '.[distributed]')")
    return found


def _job(ranks: int, child_args: list[str], timeout: float = 900.0) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               SYMK_NUM_THREADS="1", KERAS_BACKEND="symk.backend",
               KERAS_HOME=tempfile.mkdtemp(prefix="symk-bench-keras-"),
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py",
           os.path.abspath(__file__), "--child", *child_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"job failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _child_fit(epochs: int, batch: int) -> None:
    from symk import keras_compat

    keras_compat.install()
    import warnings

    warnings.simplefilter("ignore")
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    import symk.distributed as hvd

    hvd.init()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x, y = x[hvd.rank()::hvd.size()], y[hvd.rank()::hvd.size()]
    model = keras.models.Sequential([
        keras.layers.Dense(256, activation="relu", input_shape=(64,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(hvd.DistributedOptimizer(keras.optimizers.Adam(0.001)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    cb = [hvd.BroadcastGlobalVariablesCallback(0)]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=cb)  # warm-up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        times.append(time.perf_counter() - t0)
    slowest = hvd.allreduce(np.array(times), average=False) / hvd.size()  # mean over ranks
    total = int(hvd.allreduce(np.array(len(x)), average=False))
    if hvd.rank() == 0:
        print("RESULT " + json.dumps({"ranks": hvd.size(), "samples": total,
                                      "epoch_s": [float(t) for t in slowest]}), flush=True)


def _child_allreduce(sizes_mb: list[float], repeats: int, rounds: int) -> None:
    import numpy as np
    from mpi4py import MPI

    import symk.distributed as hvd
    from symk import backend as K

    hvd.init()
    comm = MPI.COMM_WORLD
    out = {}
    for mb in sizes_mb:
        n = int(mb * (1 << 20)) // 4
        a = np.full(n, hvd.rank() + 1.0, np.float32)
        x = K.placeholder((n,))
        fed = K.function([x], [hvd.allreduce(x, average=False)])
        computed = K.function([x], [hvd.allreduce(x + 1.0, average=False)])
        raw_buf, dst, copy, added = a.copy(), np.empty_like(a), np.empty_like(a), a + 1

        def copy_in_place() -> None:
            np.copyto(copy, a)
            comm.Allreduce(MPI.IN_PLACE, copy, op=MPI.SUM)

        def add_in_place() -> None:
            np.add(a, 1.0, out=added)
            comm.Allreduce(MPI.IN_PLACE, added, op=MPI.SUM)

        assert float(fed([a])[0][-1]) == 3.0 and float(computed([a])[0][-1]) == 5.0
        runs = {
            "symk": lambda: fed([a]),
            "mpi4py": lambda: comm.Allreduce(MPI.IN_PLACE, raw_buf, op=MPI.SUM),
            "mpi4py_src_dst": lambda: comm.Allreduce(a, dst, op=MPI.SUM),
            "mpi4py_copy": copy_in_place,
            "symk_computed": lambda: computed([a]),
            "mpi4py_add": add_in_place,
        }
        blocks: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        for r in range(rounds):  # a block of calls each, in a rotating order
            for k in names[r % len(names):] + names[:r % len(names)]:
                times = []
                for _ in range(2 + repeats):
                    comm.Barrier()
                    t0 = time.perf_counter()
                    runs[k]()
                    times.append(time.perf_counter() - t0)
                blocks[k].append(statistics.median(times[2:]))
        out[str(mb)] = {k: statistics.median(v) for k, v in blocks.items()}
    if hvd.rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--sizes-mb", default="1,4,16,64")
    ap.add_argument("--batch-size", default="32,256", help="per rank, comma-separated")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    if args.child:
        if args.child[0] == "fit":
            _child_fit(args.epochs, int(args.batch_size))
        else:
            _child_allreduce(sizes, args.repeats, args.rounds)
        return

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load = os.getloadavg()[0]
    batches = [int(b) for b in args.batch_size.split(",")]
    fits: dict[tuple[int, int], list[float]] = {(b, r): [] for b in batches for r in (1, 2)}
    for _ in range(args.rounds):
        for b in batches:
            for ranks in (1, 2):
                r = _job(ranks, ["fit", "--epochs", str(args.epochs), "--batch-size", str(b)])
                fits[b, ranks].append(r["samples"] / statistics.median(r["epoch_s"]))
    red = _job(2, ["allreduce", "--sizes-mb", args.sizes_mb, "--repeats", str(args.repeats),
                   "--rounds", str(max(3, 2 * args.rounds))])
    print(f"bench_distributed.py (started {started}; {os.cpu_count()} cores, load average "
          f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)\n")
    print("| batch per rank | ranks | fit samples/s (median over rounds; range) | vs 1 rank |")
    print("| ---: | ---: | ---: | ---: |")
    for b in batches:
        one = statistics.median(fits[b, 1])
        for ranks in (1, 2):
            got = fits[b, ranks]
            med = statistics.median(got)
            print(f"| {b} | {ranks} | {med:.0f} ({min(got):.0f}-{max(got):.0f}) | "
                  f"{med / one:.2f}x |")
    print("\n| buffer | symk, fed | mpi4py src->dst | copy + in place | mpi4py in place | "
          "symk / src->dst | symk / copy + in place | symk / in place | symk, computed "
          "(in place) | numpy add + mpi4py in place | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def ratio(x: float) -> str:
        return f"{x:.2f}x{'' if x <= 1.1 else ' (over 10 %)'}"

    for mb in sizes:
        r = red[str(mb)]
        ms = {k: f"{v * 1e3:.2f}" for k, v in r.items()}
        print(f"| {mb:g} MB | {ms['symk']} | {ms['mpi4py_src_dst']} | {ms['mpi4py_copy']} | "
              f"{ms['mpi4py']} | {ratio(r['symk'] / r['mpi4py_src_dst'])} | "
              f"{ratio(r['symk'] / r['mpi4py_copy'])} | {ratio(r['symk'] / r['mpi4py'])} | "
              f"{ms['symk_computed']} | {ms['mpi4py_add']} | "
              f"{ratio(r['symk_computed'] / r['mpi4py_add'])} |")


if __name__ == "__main__":
    main()
