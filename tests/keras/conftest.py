"""Loads the real Keras 2.3.1 on the symk backend, once per test process.

Keras picks its backend when it is first imported and cannot switch afterwards, so this
conftest points ``KERAS_HOME`` at a temporary directory (Keras writes ``keras.json`` there on
first import), sets ``KERAS_BACKEND=symk.backend``, arms symk's shipped compatibility layer
(``symk.keras_compat.install()``: the variable is set in-process, after the ``.pth`` hook ran
at interpreter start) and imports Keras at collection time.  When Keras or its test
dependencies are missing, or Keras was already imported with another backend, the tests of this
directory are not collected (with a message saying why).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import pytest

from symk import keras_compat

collect_ignore_glob: list[str] = []


def _load_keras() -> str | None:
    """Import Keras on symk; the reason it cannot be used, or None."""
    missing = [m for m in ("keras", "h5py", "sklearn", "scipy")
               if importlib.util.find_spec(m) is None]
    if missing:
        return f"missing test dependencies: {', '.join(missing)} (pip install -e '.[keras]')"
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "symk.backend":
            return f"keras was already imported with backend {keras.backend.backend()!r}"
        keras_compat.install()  # the saving patches, if nothing applied them yet
        return None
    home = tempfile.mkdtemp(prefix="symk-keras-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["KERAS_HOME"] = home
    os.environ["KERAS_BACKEND"] = "symk.backend"
    keras_compat.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 2.3.1 imports raise many deprecation warnings
        import keras
    if keras.__version__ != keras_compat.KERAS_VERSION:
        return f"these tests need keras {keras_compat.KERAS_VERSION}, found {keras.__version__}"
    return None


_reason = _load_keras()
if _reason is not None:
    warnings.warn(f"tests/keras skipped: {_reason}", stacklevel=1)
    collect_ignore_glob.append("test_*.py")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global numpy seed (symk draws Keras's seeds from it)."""
    np.random.seed(1234)


@pytest.fixture(autouse=True, params=["cpu", "interp"])
def device(request: pytest.FixtureRequest):
    """Every Keras test runs on the default native device and on the reference executor."""
    from symk import config

    old = config.device()
    config.set_device(request.param)
    yield request.param
    config.set_device(old)
