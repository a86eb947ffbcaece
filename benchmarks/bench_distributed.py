"""symk.distributed on this machine: Keras ``fit`` samples per second at 1 and 2 ranks, and
the time of an allreduce of 1-64 MB against raw mpi4py ``Allreduce`` on the same buffers.

* **fit**: the MLP 64-256-256-10 of ``bench_keras_fit.py`` (Adam, batch 32 per rank) on the
  digits, each rank on its shard, with ``DistributedOptimizer`` and one thread per rank
  (``SYMK_NUM_THREADS=1``): samples per second over all ranks, median of ``--epochs`` timed
  epochs after a warm-up epoch, ``--rounds`` fresh jobs per rank count, interleaved.
* **allreduce**: a float32 buffer summed over 2 ranks, by symk (``hvd.allreduce`` in a
  ``K.function``: the input copied into the collective's buffer, the ranks' header check, one
  ``MPI_Allreduce``) and by mpi4py's ``Allreduce(MPI.IN_PLACE, buf)`` alone, taking turns;
  medians of ``--repeats`` calls.  Target: symk within 10 % of mpi4py.

    python benchmarks/bench_distributed.py [--epochs 5] [--rounds 2] [--repeats 15]
        [--sizes-mb 1,4,16,64] [--markdown]

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


def _child_fit(epochs: int) -> None:
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
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=cb)  # warm-up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        times.append(time.perf_counter() - t0)
    slowest = hvd.allreduce(np.array(times), average=False) / hvd.size()  # mean over ranks
    total = int(hvd.allreduce(np.array(len(x)), average=False))
    if hvd.rank() == 0:
        print("RESULT " + json.dumps({"ranks": hvd.size(), "samples": total,
                                      "epoch_s": [float(t) for t in slowest]}), flush=True)


def _child_allreduce(sizes_mb: list[float], repeats: int) -> None:
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
        f = K.function([x], [hvd.allreduce(x, average=False)])
        raw_buf = a.copy()
        got = f([a])[0]
        assert float(got[0]) == 3.0 and float(got[-1]) == 3.0
        sym, raw = [], []
        for _ in range(2 + repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            f([a])
            sym.append(time.perf_counter() - t0)
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, raw_buf, op=MPI.SUM)
            raw.append(time.perf_counter() - t0)
        out[str(mb)] = {"symk": statistics.median(sym[2:]), "mpi4py": statistics.median(raw[2:])}
    if hvd.rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--sizes-mb", default="1,4,16,64")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    if args.child:
        if args.child[0] == "fit":
            _child_fit(args.epochs)
        else:
            _child_allreduce(sizes, args.repeats)
        return

    fits: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for ranks in (1, 2):
            r = _job(ranks, ["fit", "--epochs", str(args.epochs)])
            fits[ranks].append(r["samples"] / statistics.median(r["epoch_s"]))
    red = _job(2, ["allreduce", "--sizes-mb", args.sizes_mb, "--repeats", str(args.repeats)])
    print(f"bench_distributed.py (started {time.strftime('%Y-%m-%d %H:%M:%S')}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f})\n")
    print("| ranks | fit samples/s (median over rounds; range) | vs 1 rank |")
    print("| ---: | ---: | ---: |")
    one = statistics.median(fits[1])
    for ranks in (1, 2):
        med = statistics.median(fits[ranks])
        print(f"| {ranks} | {med:.0f} ({min(fits[ranks]):.0f}-{max(fits[ranks]):.0f}) | "
              f"{med / one:.2f}x |")
    print("\n| buffer | symk allreduce ms | mpi4py Allreduce ms | symk / mpi4py | within 10 % |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for mb in sizes:
        r = red[str(mb)]
        ratio = r["symk"] / r["mpi4py"]
        print(f"| {mb:g} MB | {r['symk'] * 1e3:.2f} | {r['mpi4py'] * 1e3:.2f} | {ratio:.2f}x | "
              f"{'yes' if ratio <= 1.10 else 'NO'} |")


if __name__ == "__main__":
    main()
