"""The Keras examples of ``examples/`` run as the README says, for one epoch each.

Each runs in a subprocess with ``KERAS_BACKEND=symk.backend`` and no compatibility code of
its own, so a pass also shows that the installed symk's ``.pth`` hook applies
``symk.keras_compat`` by itself.  The subprocess picks its device as a user's script does, so
these tests do not take the ``cpu``/``interp`` parameter of ``conftest.device``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.keras

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("keras_mlp.py", "keras_cnn.py", "keras_lstm.py")
_RESULT = re.compile(r"^test loss (\S+) accuracy (\S+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def device() -> None:
    """Overrides the parametrized ``conftest.device``: one run per example."""


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_one_epoch(script: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "SYMK_"))}
    env["KERAS_BACKEND"] = "symk.backend"
    env["KERAS_HOME"] = str(tmp_path)
    env.pop("PYTHONPATH", None)  # symk comes from the installed package
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--epochs", "1"],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    match = _RESULT.search(proc.stdout)
    assert match is not None, proc.stdout[-2000:]
    loss, accuracy = float(match.group(1)), float(match.group(2))
    assert math.isfinite(loss) and loss >= 0, proc.stdout
    assert 0.0 <= accuracy <= 1.0
    assert "Epoch 1/1" in proc.stdout
