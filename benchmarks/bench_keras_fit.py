"""Seconds per epoch of ``model.fit`` on the digits data set: Keras 2.3.1 on symk beside
Keras 3 + JAX and Keras 3 + TensorFlow, each run in its own fresh process.

Engines (``--engines``, default all three):

* **symk**: the real Keras 2.3.1 on ``KERAS_BACKEND=symk.backend`` (with the Python 3.11 /
  numpy 2 / h5py 3 compatibility layer ``symk.keras_compat``), run by ``--symk-python``
  (default: the Python running this script).
* **keras3-jax**: the same model in Keras 3 with the JAX backend, run by ``--jax-python``
  (default ``$SYMK_BENCH_KERAS3_PYTHON``, else ``/tmp/k3jax/bin/python`` if it exists; e.g.
  ``python -m venv /tmp/k3jax && /tmp/k3jax/bin/pip install jax keras``).
* **keras3-tf**: the same in Keras 3 with the TensorFlow backend, run by ``--tf-python``
  (default ``/tmp/k3tf/bin/python`` if it exists; ``pip install tensorflow-cpu keras``).

Keras 3 and Keras 2.3.1 cannot share an environment, so every run is a child process: this
script itself with ``--child ENGINE`` under that engine's Python (symk too, so every engine
starts fresh: no warm caches, no threads left over from another engine).  An engine whose
Python is not given is reported as not measured.  The data (the 1347 training digits of the
fixed 75/25 split the Keras tests use) is made once by the parent and handed to the children
as an ``.npz`` file, so the peer environments need no scikit-learn.

Models (``--model``):

* ``mlp256`` (default; the model of the issue "A training step is one native call, and symk
  owns its threads"): Dense 256 relu, Dense 256 relu, Dense 10 softmax on the 64 pixels;
* ``bn-dropout`` (the earlier model of this benchmark): Dense 64 relu, BatchNormalization,
  Dropout 0.2, Dense 32 relu, Dense 10 softmax;
* ``cnn`` (issue "Convolutional and recurrent training at least as fast as the best peer"):
  Conv2D 32 3x3 relu, MaxPooling 2, Conv2D 64 3x3 relu, Flatten, Dense 10 softmax on the
  digits upscaled to 28x28x1 (nearest neighbour);
* ``lstm`` (same issue): LSTM(64), Dense 4 softmax on 2000 random sequences of 30 steps of 16
  features, labelled by which of the first four features has the largest sum (seed 0);
* ``lstm128``: the same with LSTM(128) on 2048 sequences of 30 steps of 32 features (a loop
  large enough to split its batch rows across the cores; try ``--batch-size 128``).

All with Adam (learning rate 0.005), sparse categorical cross-entropy and the accuracy metric,
at every batch size of ``--batch-size`` (default ``32,256``).

Each run: "build" is ``compile`` up to a ready train function (Keras 2.3.1 builds it in
``_make_train_function``; Keras 3 compiles lazily, so its JIT lands in the warm-up epoch);
then one warm-up epoch (``fit(epochs=1)``) and ``--epochs`` timed epochs, each its own
``fit(epochs=1)`` call; the run's figure is the median of the timed epochs.  The runs are
interleaved: ``for round: for load: for engine: for batch size: spawn``, so a change in the
machine's load hits every engine alike; the report gives, per load, engine and batch size, the
median over rounds (and the range of the per-run medians), ms per training step, CPU seconds
per wall second during the timed epochs (how many cores the engine kept busy),
``symk / best peer``, and the median time of ``model.predict`` on one sample after training
(30 calls; what a served model pays per request) with symk's ratio to the fastest peer.

``--contended on`` (or ``both``: quiet and contended runs interleaved, the order alternating
by round) starts a bounded busy process (``python -c "while time.time() < t: pass"``) before
every child, pinned to core 1 when this process may use it, and kills it after the child
ends; the report then gives each engine's contended / quiet ratio.  The load averages
(``os.getloadavg()``) at the start and end of every run, and the cores other processes kept
busy meanwhile (``/proc/stat`` minus this process tree), go into the JSON and the footer.

symk's disk cache (``SYMK_CACHE_DIR``) is a fresh empty directory per child unless
``--symk-cache default``, so symk's warm-up epoch includes its LLVM compiles like the peers'
warm-ups include their JIT.  The symk children import a copy of ``symk/`` taken when the
benchmark starts (``--symk-tree snapshot``, the default; ``live`` imports the working tree),
so edits made to the tree while it runs do not mix two versions of symk into one table.

Usage: ``python benchmarks/bench_keras_fit.py [--model mlp256] [--batch-size 32,256]
[--rounds 3] [--epochs 5] [--contended {off,on,both}] [--engines symk,keras3-jax,keras3-tf]
[--jax-python PATH] [--tf-python PATH] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINES = ("symk", "keras3-jax", "keras3-tf")
MODELS = ("mlp256", "bn-dropout", "cnn", "lstm", "lstm128")
RESULT_MARK = "BENCH_KERAS_FIT_RESULT "
LEARNING_RATE = 0.005
#: timed single-sample ``predict`` calls per run
PREDICT_CALLS = 30
SPIN_CORE = 1


# --------------------------------------------------------------------------------------------
# data and model (used in the children; importable without keras)


def digits() -> tuple[Any, Any]:
    """The training part of the same fixed 75/25 split the Keras tests use."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    xtr, _, ytr, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, ytr


def make_data(model: str) -> tuple[Any, Any]:
    """The training data of ``model``: the digits as 64 pixels (the MLPs), upscaled to
    28x28x1 images by nearest neighbour (``cnn``), or 2000 random sequences of 30 steps of
    16 features whose class (of 4) is the feature among the first four with the largest sum
    over time (``lstm``, a fixed seed)."""
    import numpy as np

    if model in ("lstm", "lstm128"):
        rng = np.random.default_rng(0)
        n, f = (2000, 16) if model == "lstm" else (2048, 32)
        x = rng.standard_normal((n, 30, f)).astype("float32")
        return x, x[:, :, :4].sum(axis=1).argmax(axis=1).astype("int64")
    x, y = digits()
    if model == "cnn":
        idx = np.arange(28) * 8 // 28
        x = x.reshape(-1, 8, 8)[:, idx][:, :, idx][..., None].copy()
    return x, y


def load_data(path: str | None, model: str = "mlp256") -> tuple[Any, Any]:
    """The training data from the parent's ``.npz`` file, or made here without one."""
    if not path:
        return make_data(model)
    import numpy as np

    with np.load(path) as f:
        return f["x"], f["y"]


def build_model(keras: Any, three: bool, model: str = "bn-dropout") -> Any:
    """``model`` for Keras 3 (``three``) or Keras 2.3.1."""
    L = keras.layers
    if model in ("cnn", "lstm", "lstm128"):
        shape = {"cnn": (28, 28, 1), "lstm": (30, 16), "lstm128": (30, 32)}[model]
        if model == "cnn":
            body = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                    L.Conv2D(64, 3, activation="relu"), L.Flatten(),
                    L.Dense(10, activation="softmax")]
        else:
            body = [L.LSTM(64 if model == "lstm" else 128), L.Dense(4, activation="softmax")]
        if three:
            return keras.Sequential([L.Input(shape)] + body)
        first = type(body[0])(**{**body[0].get_config(), "input_shape": shape})
        return keras.Sequential([first] + body[1:])
    if model == "mlp256":
        width = 256
        middle = [L.Dense(256, activation="relu")]
    elif model == "bn-dropout":
        width = 64
        middle = [L.BatchNormalization(), L.Dropout(0.2), L.Dense(32, activation="relu")]
    else:
        raise ValueError(f"unknown model {model!r} (one of {', '.join(MODELS)})")
    first = [L.Input((64,)), L.Dense(width, activation="relu")] if three else \
        [L.Dense(width, activation="relu", input_shape=(64,))]
    return keras.Sequential(first + middle + [L.Dense(10, activation="softmax")])


def time_epochs(model: Any, x: Any, y: Any, epochs: int, batch_size: int) -> tuple[float, list]:
    """(warm-up epoch seconds, timed epoch seconds)."""
    warm, times, _ = _time_epochs(model, x, y, epochs, batch_size)
    return warm, times


def _time_epochs(model: Any, x: Any, y: Any, epochs: int,
                 batch_size: int) -> tuple[float, list[float], dict]:
    """(warm-up epoch s, timed epoch s, extras: CPU s per wall s over the timed epochs and
    the loss and accuracy of the last epoch)."""
    hist: dict = {}

    def one() -> float:
        t0 = time.perf_counter()
        h = model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
        dt = time.perf_counter() - t0
        hist.update(h.history)
        return dt

    warm = one()
    c0, w0 = time.process_time(), time.perf_counter()
    times = [one() for _ in range(epochs)]
    cpu = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
    acc = hist.get("accuracy", hist.get("acc", [None]))[-1]
    return warm, times, {"cpu_per_wall": cpu, "loss": float(hist["loss"][-1]),
                         "accuracy": None if acc is None else float(acc),
                         "predict1_s": time_predict_one(model, x)}


def time_predict_one(model: Any, x: Any, calls: int = PREDICT_CALLS) -> float:
    """Median seconds of ``model.predict`` on one sample (after 3 untimed calls): what a
    served model pays per request."""
    one = x[:1]
    for _ in range(3):
        model.predict(one, verbose=0)
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        model.predict(one, verbose=0)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _process_info() -> dict:
    info: dict[str, Any] = {"pid": os.getpid(), "cores_allowed": len(os.sched_getaffinity(0))}
    try:
        info["threads"] = len(os.listdir("/proc/self/task"))
    except OSError:
        pass
    try:
        import resource

        info["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        pass
    return info


def run_symk(epochs: int, batch_size: int, model: str = "bn-dropout",
             data: str | None = None) -> dict:
    """Keras 2.3.1 on symk in this process (``bench_threads.py`` calls this directly)."""
    sys.path.insert(0, os.environ.get("SYMK_BENCH_SRC", ROOT))  # the parent's snapshot
    from symk import keras_compat

    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="symk-bench-keras-home-"))
    os.environ["KERAS_BACKEND"] = "symk.backend"
    keras_compat.install()  # a no-op when the .pth hook already installed it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import keras
    import numpy as np

    import symk
    from symk import config

    np.random.seed(0)
    x, y = load_data(data, model)
    net = build_model(keras, three=False, model=model)
    t0 = time.perf_counter()
    net.compile(keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                "sparse_categorical_crossentropy", metrics=["accuracy"])
    net._make_train_function()  # Keras 2.3 builds the train function lazily in fit
    build = time.perf_counter() - t0
    warm, times, extra = _time_epochs(net, x, y, epochs, batch_size)
    versions = {"keras": keras.__version__, "symk": symk.__version__, "numpy": np.__version__,
                "symk_device": config.device(), "python": sys.version.split()[0],
                "symk_path": os.path.dirname(os.path.abspath(symk.__file__))}
    return {"engine": "symk", "model": model, "batch_size": batch_size,
            "version": f"keras {keras.__version__}, symk {symk.__version__} device "
            f"{config.device()}", "versions": versions, "build_s": build,
            "warmup_epoch_s": warm, "epoch_s": times, **extra, **_process_info()}


def run_keras3(epochs: int, batch_size: int, backend: str = "jax", model: str = "bn-dropout",
               data: str | None = None) -> dict:
    """Keras 3 on ``backend`` (``jax`` or ``tensorflow``) in this process."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    versions = {"keras": keras.__version__, "numpy": np.__version__,
                "python": sys.version.split()[0]}
    if backend == "jax":
        import jax
        import jaxlib

        versions.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                        jax_devices=",".join(d.platform for d in jax.devices()))
    else:
        import tensorflow as tf

        versions.update(tensorflow=tf.__version__)
    keras.utils.set_random_seed(0)
    x, y = load_data(data, model)
    net = build_model(keras, three=True, model=model)
    t0 = time.perf_counter()
    net.compile(keras.optimizers.Adam(learning_rate=LEARNING_RATE),
                "sparse_categorical_crossentropy", metrics=["accuracy"])
    build = time.perf_counter() - t0
    warm, times, extra = _time_epochs(net, np.asarray(x), np.asarray(y), epochs, batch_size)
    engine = "keras3-jax" if backend == "jax" else "keras3-tf"
    other = "jax " + versions["jax"] if backend == "jax" else "tensorflow " + \
        versions["tensorflow"]
    return {"engine": engine, "model": model, "batch_size": batch_size,
            "version": f"keras {keras.__version__}, {other}", "versions": versions,
            "build_s": build, "warmup_epoch_s": warm, "epoch_s": times, **extra,
            **_process_info()}


def child_main(args: argparse.Namespace) -> None:
    batch = int(args.batch_size)
    if args.child == "symk":
        out = run_symk(args.epochs, batch, args.model, args.data)
    else:
        backend = "jax" if args.child == "keras3-jax" else "tensorflow"
        out = run_keras3(args.epochs, batch, backend, args.model, args.data)
    sys.stdout.write(RESULT_MARK + json.dumps(out) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# the parent: spawning, the busy process, load


def _default_jax_python() -> str:
    env = os.environ.get("SYMK_BENCH_KERAS3_PYTHON", "")
    if env:
        return env
    return "/tmp/k3jax/bin/python" if os.path.exists("/tmp/k3jax/bin/python") else ""


def _default_tf_python() -> str:
    return "/tmp/k3tf/bin/python" if os.path.exists("/tmp/k3tf/bin/python") else ""


def start_spinner(seconds: float) -> tuple[subprocess.Popen, int | None]:
    """A process spinning for at most ``seconds``, pinned to core 1 when that is allowed;
    returns it and the core it is pinned to (None: not pinned)."""
    code = f"import time\nt = time.time() + {seconds:.0f}\nwhile time.time() < t:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    core: int | None = None
    try:
        allowed = os.sched_getaffinity(0)
        if SPIN_CORE in allowed and len(allowed) > 1:
            os.sched_setaffinity(proc.pid, {SPIN_CORE})
            core = SPIN_CORE
    except (AttributeError, OSError):
        core = None
    return proc, core


def stop_spinner(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def child_env(engine: str, symk_cache: str, tmp: str, src: str) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("KERAS_BACKEND", "PYTHONPATH"):
        env.pop(k, None)
    if engine == "symk":
        env["KERAS_BACKEND"] = "symk.backend"  # the .pth hook installs symk.keras_compat
        env["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras-home-", dir=tmp)
        env["PYTHONPATH"] = env["SYMK_BENCH_SRC"] = src
        if symk_cache == "fresh":
            env["SYMK_CACHE_DIR"] = tempfile.mkdtemp(prefix="symk-cache-", dir=tmp)
    else:
        env["KERAS_BACKEND"] = "jax" if engine == "keras3-jax" else "tensorflow"
        env["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras-home-", dir=tmp)
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def spawn(python: str, engine: str, batch: int, contended: bool, args: argparse.Namespace,
          data: str, tmp: str, src: str) -> dict:
    """One child run, with the load around it; a dict with ``error`` when it failed."""
    sys.path.insert(0, ROOT)
    from benchmarks.common import LoadMeter

    cmd = [python, os.path.abspath(__file__), "--child", engine, "--model", args.model,
           "--batch-size", str(batch), "--epochs", str(args.epochs), "--data", data]
    rec: dict[str, Any] = {"engine": engine, "batch_size": batch,
                           "load": "contended" if contended else "quiet",
                           "loadavg_start": list(os.getloadavg())}
    meter = LoadMeter()
    spinner, core = start_spinner(args.timeout + 60) if contended else (None, None)
    if spinner is not None:
        rec["spinner_core"] = core
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                              env=child_env(engine, args.symk_cache, tmp, src), cwd=ROOT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        proc = None
        rec["error"] = f"{type(e).__name__}: {e}"
    rec["wall_s"] = time.perf_counter() - t0
    rec["loadavg_end"] = list(os.getloadavg())
    if spinner is not None:
        stop_spinner(spinner)
    rec["others_cores"] = meter.others()  # busy cores outside this process tree
    if proc is not None:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
        if proc.returncode == 0 and lines:
            rec.update(json.loads(lines[-1][len(RESULT_MARK):]))
            rec["load"] = "contended" if contended else "quiet"
        else:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-3:]
            rec["error"] = f"exit {proc.returncode}: " + " | ".join(tail)
    return rec


def tree_hash(path: str) -> str:
    """A hash of the ``.py`` files under ``path`` (to notice a tree edited during the run)."""
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                full = os.path.join(dirpath, name)
                h.update(os.path.relpath(full, path).encode())
                with open(full, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:12]


def git_state() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "symk"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    n = len([ln for ln in dirty.splitlines() if ln.strip()])
    return f"{rev or 'unknown'}" + (f" + {n} uncommitted file(s) under symk/" if n else "")


# --------------------------------------------------------------------------------------------
# the report


def _med(v: list[float]) -> float:
    return statistics.median(v)


def summarize(runs: list[dict], engines: list[str], batches: list[int], loads: list[str],
              n_samples: int) -> list[dict]:
    """One row per load, batch size and engine with medians over rounds and the ratios."""
    rows = []
    for load in loads:
        for batch in batches:
            for engine in engines:
                ok = [r for r in runs if r["load"] == load and r["batch_size"] == batch
                      and r["engine"] == engine and "error" not in r]
                failed = [r for r in runs if r["load"] == load and r["batch_size"] == batch
                          and r["engine"] == engine and "error" in r]
                row: dict[str, Any] = {"load": load, "batch_size": batch, "engine": engine,
                                       "runs": len(ok), "failed": len(failed)}
                if ok:
                    per_run = [_med(r["epoch_s"]) for r in ok]
                    med = _med(per_run)
                    steps = math.ceil(n_samples / batch)
                    row.update(build_s=_med([r["build_s"] for r in ok]),
                               warmup_epoch_s=_med([r["warmup_epoch_s"] for r in ok]),
                               epoch_s=med, epoch_s_min=min(per_run),
                               epoch_s_max=max(per_run), per_run_epoch_s=per_run,
                               ms_per_step=med / steps * 1e3, steps_per_epoch=steps,
                               cpu_per_wall=_med([r["cpu_per_wall"] for r in ok]),
                               accuracy=_med([r["accuracy"] for r in ok
                                              if r.get("accuracy") is not None] or [0.0]),
                               predict1_ms=_med([r.get("predict1_s", math.nan)
                                                 for r in ok]) * 1e3)
                elif failed:
                    row["error"] = failed[-1]["error"]
                rows.append(row)
    by = {(r["load"], r["batch_size"], r["engine"]): r for r in rows}
    for r in rows:
        if r["engine"] == "symk" and "epoch_s" in r:
            peers = [p for p in rows if p["load"] == r["load"] and p["batch_size"] ==
                     r["batch_size"] and p["engine"] != "symk" and "epoch_s" in p]
            if peers:
                best = min(peers, key=lambda p: p["epoch_s"])
                r["symk_over_best_peer"] = r["epoch_s"] / best["epoch_s"]
                r["best_peer"] = best["engine"]
                fastest = min(p["predict1_ms"] for p in peers)
                r["predict_over_best_peer"] = r["predict1_ms"] / fastest
        quiet = by.get(("quiet", r["batch_size"], r["engine"]))
        if r["load"] == "contended" and quiet and "epoch_s" in r and "epoch_s" in quiet:
            r["contended_over_quiet"] = r["epoch_s"] / quiet["epoch_s"]
    return rows


def _range(xs: list[float]) -> str:
    return f"{min(xs):.2f}–{max(xs):.2f}"


def report(rows: list[dict], runs: list[dict], meta: dict, notes: list[str]) -> str:
    title = {"mlp256": "MLP 64-256-256-10 on digits",
             "bn-dropout": "MLP 64-64-BN-Dropout-32-10 on digits",
             "cnn": "CNN (Conv2D 32 3x3, MaxPool 2, Conv2D 64 3x3, Flatten, Dense 10) on digits "
                    "upscaled to 28x28x1",
             "lstm": "LSTM(64) + Dense 4 on 2000 random sequences of 30x16",
             "lstm128": "LSTM(128) + Dense 4 on 2048 random sequences of 30x32"}
    head = ["load", "batch", "engine", "build s", "warm-up epoch s", "median s/epoch (range)",
            "ms/step", "CPU s/wall s", "symk / best peer", "contended / quiet",
            "predict(1 sample) ms"]
    lines = [f"{title[meta['model']]} ({meta['samples']} samples), Adam, "
             f"{meta['epochs']} timed epochs per process, {meta['rounds']} round(s); medians "
             "over rounds (range: the per-run medians)", "",
             "| " + " | ".join(head) + " |",
             "| " + " | ".join("---" if i < 3 else "---:" for i in range(len(head))) + " |"]
    for r in rows:
        name = r["engine"]
        if "epoch_s" not in r:
            why = r.get("error", "not measured")
            lines.append(f"| {r['load']} | {r['batch_size']} | {name} | - | - | failed "
                         f"({r['failed']}x): {why[:80]} | - | - | - | - | - |")
            continue
        rng = f"{r['epoch_s_min']:.4f}–{r['epoch_s_max']:.4f}"
        ratio = f"{r['symk_over_best_peer']:.2f}× (vs {r['best_peer']})" \
            if "symk_over_best_peer" in r else "-"
        cq = f"{r['contended_over_quiet']:.2f}×" if "contended_over_quiet" in r else "-"
        pr = f"{r['predict1_ms']:.3f}" + (f" ({r['predict_over_best_peer']:.2f}×)"
                                          if "predict_over_best_peer" in r else "")
        lines.append(f"| {r['load']} | {r['batch_size']} | {name} | {r['build_s']:.3f} | "
                     f"{r['warmup_epoch_s']:.3f} | {r['epoch_s']:.4f} ({rng}) | "
                     f"{r['ms_per_step']:.3f} | {r['cpu_per_wall']:.2f} | {ratio} | {cq} | "
                     f"{pr} |")
    lines.append("")
    for load in meta["loads"]:
        rs = [r for r in runs if r["load"] == load]
        if not rs:
            continue
        s = [r["loadavg_start"][0] for r in rs]
        e = [r["loadavg_end"][0] for r in rs]
        oth = [r["others_cores"] for r in rs if r.get("others_cores") is not None]
        line = (f"- {load}: 1-min load average {_range(s)} at the start of a run, {_range(e)} "
                f"at its end (median {_med(s):.2f} / {_med(e):.2f}); other processes kept "
                f"{_med(oth):.2f} cores busy (median; range {_range(oth)})"
                if oth else f"- {load}: 1-min load average {_range(s)} / {_range(e)}")
        if load == "contended":
            cores = {r.get("spinner_core") for r in rs}
            pin = ", ".join("unpinned" if c is None else f"core {c}" for c in sorted(
                cores, key=lambda c: -1 if c is None else c))
            line += f" (besides the busy process, pinned to {pin})"
        lines.append(line)
    vers: dict[str, str] = {}
    for r in runs:
        if "version" in r:
            vers.setdefault(r["engine"], r["version"] + (
                f", numpy {r['versions']['numpy']}" if "versions" in r else ""))
    for engine, v in vers.items():
        lines.append(f"- {engine}: {v} ({meta['pythons'][engine]})")
    lines.append(f"- machine: {meta['machine']}; symk tree {meta['git']}")
    acc = [f"{r['engine']} b{r['batch_size']} {r['accuracy']:.3f}" for r in rows
           if r["load"] == meta["loads"][0] and "accuracy" in r]
    if acc:
        lines.append("- training accuracy after the last epoch (sanity): " + ", ".join(acc))
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="mlp256")
    ap.add_argument("--batch-size", default="32,256", help="comma-separated batch sizes")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per process (after "
                    "one warm-up epoch)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per engine, load "
                    "and batch size, interleaved")
    ap.add_argument("--contended", nargs="?", const="on", default="off",
                    choices=["off", "on", "both"],
                    help="a busy process on core 1 during every run (both: quiet and "
                    "contended runs interleaved)")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help=f"comma-separated subset of {','.join(ENGINES)}")
    ap.add_argument("--symk-python", default=sys.executable,
                    help="Python with Keras 2.3.1 and symk (default: this one)")
    ap.add_argument("--jax-python", "--keras3-python", dest="jax_python",
                    default=_default_jax_python(),
                    help="Python with Keras 3 + JAX (default $SYMK_BENCH_KERAS3_PYTHON, else "
                    "/tmp/k3jax/bin/python if it exists)")
    ap.add_argument("--tf-python", default=_default_tf_python(),
                    help="Python with Keras 3 + TensorFlow (default /tmp/k3tf/bin/python if "
                    "it exists)")
    ap.add_argument("--symk-cache", choices=["fresh", "default"], default="fresh",
                    help="symk's disk cache in the children: a fresh empty directory per "
                    "run (default) or SYMK_CACHE_DIR as set")
    ap.add_argument("--symk-tree", choices=["snapshot", "live"], default="snapshot",
                    help="symk for the children: a copy of symk/ taken at the start (default; "
                    "the tree may be edited while the benchmark runs) or the live tree")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per child")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    sys.path.insert(0, ROOT)
    import numpy as np

    from benchmarks.common import machine_note

    batches = [int(b) for b in str(args.batch_size).split(",") if b.strip()]
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in wanted if e not in ENGINES]
    if bad:
        raise SystemExit(f"unknown engine(s) {bad}; choose from {', '.join(ENGINES)}")
    pythons = {"symk": args.symk_python, "keras3-jax": args.jax_python,
               "keras3-tf": args.tf_python}
    hints = {"keras3-jax": "--jax-python PATH or $SYMK_BENCH_KERAS3_PYTHON (pip install jax "
                           "keras)",
             "keras3-tf": "--tf-python PATH (pip install tensorflow-cpu keras)"}
    notes = []
    engines = []
    for e in wanted:
        if pythons[e] and os.path.exists(pythons[e]):
            engines.append(e)
        else:
            notes.append(f"{e}: not measured (give {hints.get(e, '--symk-python PATH')})")
    loads = {"off": ["quiet"], "on": ["contended"], "both": ["quiet", "contended"]}[
        args.contended]
    tmp = tempfile.mkdtemp(prefix="symk-bench-keras-fit-")
    x, y = make_data(args.model)
    data = os.path.join(tmp, f"{args.model}.npz")
    np.savez(data, x=x, y=y)
    symk_tree = os.path.join(ROOT, "symk")
    src = ROOT
    if args.symk_tree == "snapshot":
        src = os.path.join(tmp, "src")
        shutil.copytree(symk_tree, os.path.join(src, "symk"),
                        ignore=shutil.ignore_patterns("__pycache__"))
    meta: dict[str, Any] = {
        "model": args.model, "batch_sizes": batches, "epochs": args.epochs,
        "rounds": args.rounds, "loads": loads, "engines": engines, "samples": len(x),
        "pythons": pythons, "symk_cache": args.symk_cache, "machine": machine_note(),
        "git": git_state(), "symk_tree_hash_start": tree_hash(symk_tree),
        "symk_tree": args.symk_tree, "symk_src": src,
        "symk_measured_hash": tree_hash(os.path.join(src, "symk")),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": list(os.getloadavg())}
    runs: list[dict] = []
    t_all = time.perf_counter()
    total = args.rounds * len(loads) * len(engines) * len(batches)
    for rnd in range(args.rounds):
        order = loads if rnd % 2 == 0 else loads[::-1]
        for load in order:
            for engine in engines:
                for batch in batches:
                    rec = spawn(pythons[engine], engine, batch, load == "contended", args, data,
                                tmp, src)
                    rec["round"] = rnd
                    runs.append(rec)
                    what = rec.get("error") or (
                        f"build {rec['build_s']:.3f} s, warm-up {rec['warmup_epoch_s']:.3f} s, "
                        f"median {_med(rec['epoch_s']):.4f} s/epoch, CPU/wall "
                        f"{rec['cpu_per_wall']:.2f}")
                    print(f"[{len(runs)}/{total}] round {rnd} {load:<9} {engine:<10} "
                          f"batch {batch:<4} {what} (loadavg {rec['loadavg_start'][0]:.2f}->"
                          f"{rec['loadavg_end'][0]:.2f}, wall {rec['wall_s']:.1f} s)",
                          file=sys.stderr, flush=True)
    meta.update(total_wall_s=time.perf_counter() - t_all, loadavg_end=list(os.getloadavg()),
                symk_tree_hash_end=tree_hash(symk_tree))
    if args.symk_tree == "snapshot":
        notes.append(f"symk measured from a snapshot of symk/ taken at the start (tree hash "
                     f"{meta['symk_measured_hash']})" + (
                         f"; the live tree changed meanwhile (now {meta['symk_tree_hash_end']})"
                         if meta["symk_tree_hash_end"] != meta["symk_tree_hash_start"] else ""))
    elif meta["symk_tree_hash_end"] != meta["symk_tree_hash_start"]:
        notes.append(f"symk/ changed during the run (tree hash {meta['symk_tree_hash_start']} "
                     f"-> {meta['symk_tree_hash_end']}): runs may have measured different code")
    shutil.rmtree(tmp, ignore_errors=True)  # the data, the symk snapshot, the children's caches
    rows = summarize(runs, engines, batches, loads, len(x))
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=2))
    print(f"\n{meta['command']}  (started {meta['started']}, {meta['total_wall_s']:.0f} s; "
          f"load average at start {', '.join(f'{v:.2f}' for v in meta['loadavg_start'])}, "
          f"at end {', '.join(f'{v:.2f}' for v in meta['loadavg_end'])})\n")
    print(report(rows, runs, meta, notes))


if __name__ == "__main__":
    main()
