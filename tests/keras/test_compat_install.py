"""The shipped Keras compatibility layer: its install hook and its h5py 3 saving fixes.

* The ``.pth`` hook (``_symk_keras_hook``, installed into site-packages with symk): checked in
  subprocesses of this interpreter, which start with or without ``KERAS_BACKEND`` exactly as a
  user's ``KERAS_BACKEND=symk.backend python script.py`` does.  It must patch nothing unless
  Keras is imported on symk, and leave Keras's files on disk untouched.
* Saving and loading through h5py 3 file objects, groups and binary streams: ports of Keras
  2.3.1's ``tests/test_model_saving.py`` (``test_model_saving_to_pre_created_h5py_file``,
  ``test_model_saving_to_binary_stream``, ``test_model_loading_from_binary_stream``,
  ``test_model_save_load_binary_in_memory``), with the h5py 2 default file mode ``'a'``
  written out where the original relied on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
from keras.models import load_model, save_model
from numpy.testing import assert_allclose

import _symk_keras_hook as hook
from symk import keras_compat

pytestmark = pytest.mark.keras

# prints what the hook did in a fresh interpreter; argv[1] says whether to import keras, and
# "theano" first switches KERAS_BACKEND away from symk inside the program
_PROBE = r"""
import collections, json, os, sys
action = sys.argv[1]
hook = sys.modules.get("_symk_keras_hook")
out = {"hook_imported": hook is not None,
       "hook_waiting": bool(hook is not None and hook.installed())}
if action == "theano":
    os.environ["KERAS_BACKEND"] = "theano"
if action in ("keras", "theano"):
    import warnings
    warnings.simplefilter("ignore")
    try:
        import keras
        out["backend"] = keras.backend.backend()
        out["loader"] = type(keras.__loader__).__name__
    except ImportError as e:
        out["import_error"] = str(e)
    out["hook_waiting_after"] = bool(hook is not None and hook.installed())
out["symk_imported"] = "symk" in sys.modules
out["numpy_imported"] = "numpy" in sys.modules
out["collections_iterable"] = hasattr(collections, "Iterable")
compat = sys.modules.get("symk.keras_compat")
out["saving_patched"] = bool(compat is not None and compat.status()["saving"])
print("PROBE " + json.dumps(out))
"""


def _keras_sources() -> dict[str, str]:
    root = Path(keras.__file__).parent
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (root / "__init__.py", root / "utils" / "io_utils.py",
                      root / "engine" / "saving.py")}


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One subprocess per scenario (run once for the module, whatever the device)."""
    home = tmp_path_factory.mktemp("keras-home")
    before = _keras_sources()
    results = {}
    for name, backend, action in (("no_env", None, "keras-free"),
                                  ("other_backend", "theano", "keras-free"),
                                  ("symk_no_keras", "symk.backend", "keras-free"),
                                  ("symk_keras", "symk.backend", "keras"),
                                  ("switched_away", "symk.backend", "theano")):
        env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
        env["KERAS_HOME"] = str(home)
        if backend is not None:
            env["KERAS_BACKEND"] = backend
        proc = subprocess.run([sys.executable, "-c", _PROBE, action], env=env, cwd=str(home),
                              capture_output=True, text=True, timeout=300)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
        assert proc.returncode == 0 and lines, (name, proc.stdout, proc.stderr[-3000:])
        results[name] = json.loads(lines[-1][len("PROBE "):])
    results["sources_unchanged"] = {"ok": _keras_sources() == before}
    return results


def test_pth_is_installed() -> None:
    """The installed symk put the hook's line into site-packages (reinstall with
    ``pip install -e '.[keras]'`` if this fails on an environment made before the hook)."""
    pth = Path(sysconfig.get_paths()["purelib"]) / hook.PTH_NAME
    assert pth.is_file(), f"{pth} missing: reinstall symk (pip install -e '.[keras]')"
    assert pth.read_text().strip() == hook.PTH_LINE


@pytest.mark.parametrize("value, expected", [
    ("symk.backend", True), ("symk", True), ("symk.other", True), ("", False), (None, False),
    ("tensorflow", False), ("theano", False), ("symkx.backend", False), ("my.symk", False),
])
def test_pth_line_and_hook_agree_on_the_backend(value: str | None, expected: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline check of the ``.pth`` line is :func:`names_symk`."""
    assert hook.names_symk(value) is expected
    if value is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("KERAS_BACKEND", value)
    calls: list[int] = []
    line = hook.PTH_LINE.replace("__import__('_symk_keras_hook').install()", "calls.append(1)")
    assert line != hook.PTH_LINE
    exec(line, {"calls": calls})
    assert bool(calls) is expected


def test_hook_does_nothing_without_symk(probes: dict[str, dict[str, Any]]) -> None:
    for name in ("no_env", "other_backend"):
        p = probes[name]
        assert not p["hook_imported"] and not p["hook_waiting"], name
        assert not p["symk_imported"] and not p["collections_iterable"], name


def test_hook_waits_for_keras_and_costs_no_import(probes: dict[str, dict[str, Any]]) -> None:
    p = probes["symk_no_keras"]
    assert p["hook_imported"] and p["hook_waiting"]
    assert not p["symk_imported"] and not p["numpy_imported"]
    assert not p["collections_iterable"] and not p["saving_patched"]


def test_hook_applies_the_layer_when_keras_is_imported(
        probes: dict[str, dict[str, Any]]) -> None:
    p = probes["symk_keras"]
    assert p.get("import_error") is None, p
    assert p["backend"] == "symk.backend"
    assert p["collections_iterable"] and p["saving_patched"]
    assert not p["hook_waiting_after"]
    assert p["loader"] != "_FinishingLoader"  # Keras keeps its own loader
    assert probes["sources_unchanged"]["ok"]


def test_hook_patches_nothing_when_the_program_switches_backend(
        probes: dict[str, dict[str, Any]]) -> None:
    p = probes["switched_away"]
    assert "backend" not in p  # Keras on theano cannot import here
    assert not p["hook_waiting_after"]
    assert not p["collections_iterable"] and not p["saving_patched"]


def test_this_process_has_the_layer() -> None:
    assert keras_compat.status()["aliases"] and keras_compat.status()["saving"]


# --- ports of Keras 2.3.1's tests/test_model_saving.py -------------------------------------

def _get_sample_model_and_input() -> tuple[Any, np.ndarray]:
    model = keras.models.Sequential()
    model.add(keras.layers.Dense(2, input_shape=(3,)))
    model.add(keras.layers.RepeatVector(3))
    model.add(keras.layers.TimeDistributed(keras.layers.Dense(3)))
    model.compile(loss=keras.losses.MSE, optimizer=keras.optimizers.RMSprop(lr=0.0001),
                  metrics=[keras.metrics.categorical_accuracy], sample_weight_mode="temporal")
    x = np.random.random((1, 3))
    y = np.random.random((1, 3, 3))
    model.train_on_batch(x, y)
    return model, x


def test_model_saving_to_pre_created_h5py_file(tmp_path: Path) -> None:
    model, x = _get_sample_model_and_input()
    out = model.predict(x)
    fname = str(tmp_path / "model.h5")
    with h5py.File(fname, mode="a") as h5file:
        save_model(model, h5file)
        loaded_model = load_model(h5file)
        out2 = loaded_model.predict(x)
    assert_allclose(out, out2, atol=1e-05)

    # non-default options in h5py
    with h5py.File("does not matter", mode="a", driver="core", backing_store=False) as h5file:
        save_model(model, h5file)
        loaded_model = load_model(h5file)
        out2 = loaded_model.predict(x)
    assert_allclose(out, out2, atol=1e-05)

    with h5py.File(fname, mode="r+") as h5file:
        g = h5file.create_group("model")
        save_model(model, g)
        loaded_model = load_model(g)
        out2 = loaded_model.predict(x)
    assert_allclose(out, out2, atol=1e-05)


def test_model_saving_to_binary_stream(tmp_path: Path) -> None:
    model, x = _get_sample_model_and_input()
    out = model.predict(x)
    fname = tmp_path / "model.h5"
    with open(fname, "wb") as raw_file:  # save directly to a binary file
        save_model(model, raw_file)
    with h5py.File(fname, mode="r") as h5file:  # load it the usual way
        loaded_model = load_model(h5file)
    assert_allclose(out, loaded_model.predict(x), atol=1e-05)


def test_model_loading_from_binary_stream(tmp_path: Path) -> None:
    model, x = _get_sample_model_and_input()
    out = model.predict(x)
    fname = tmp_path / "model.h5"
    with h5py.File(fname, mode="w") as h5file:  # save the usual way
        save_model(model, h5file)
    with open(fname, "rb") as raw_file:  # load from a binary file
        loaded_model = load_model(raw_file)
    assert_allclose(out, loaded_model.predict(x), atol=1e-05)


def test_model_save_load_binary_in_memory() -> None:
    model, x = _get_sample_model_and_input()
    out = model.predict(x)
    stream = io.BytesIO()
    save_model(model, stream)
    stream.seek(0)
    loaded_model = load_model(stream)
    assert_allclose(out, loaded_model.predict(x), atol=1e-05)
