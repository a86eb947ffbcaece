"""The demo trains (loss goes down, good accuracy, graph dump printed), the README's example
runs as written and its two commands match what CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from symk import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_trains_and_prints_the_graph(capsys):
    assert demo.main(["--steps", "40"]) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"^step\s+\d+\s+loss ([0-9.]+)$", out, re.M)]
    assert len(losses) >= 4
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))
    acc = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert acc > 0.8
    assert "softmax{axis=1} float32[?,3]" in out  # the debugprint of the predictions
    assert "placeholder 'x' float32[?,4]" in out


def test_demo_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "symk.demo", "--steps", "3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_example_runs(capsys):
    code = re.findall(r"```python\n(.*?)```", _readme(), re.S)[0]
    assert 8 <= len(code.strip().splitlines()) <= 16
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
    out = capsys.readouterr().out
    # variable names are unique per process: W may have become W_1 after other tests
    assert re.search(r"softmax\(einsum\('ab,bd->ad', x, W(_\d+)?\) \+ 1\.0, axis=1\)", out)
    assert re.search(r"^W(_\d+)? <- sub float32\[3,2\]$", out, re.M)


def test_readme_cuda_example_runs_without_a_gpu(capsys):
    """The CUDA section's snippet renders CUDA C on any machine (build=False)."""
    code = re.findall(r"```python\n(.*?)```", _readme(), re.S)[1]
    assert "build=False" in code
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_cuda"})  # noqa: S102
    out = capsys.readouterr().out
    assert 'extern "C" __global__' in out


DEMO_CMD = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
            ".venv/bin/python -m symk.demo")
TEST_CMD = ("python3 -m venv .venv && .venv/bin/pip install -e '.[test,keras,cuda,distributed]' && "
            ".venv/bin/python -m pytest tests")


def test_readme_commands_and_ci_agree():
    text = _readme()
    assert DEMO_CMD in text and TEST_CMD in text
    assert "## Using symk as a Keras backend" in text and "KERAS_BACKEND=symk.backend" in text
    ci = os.path.join(ROOT, ".ci", "run")
    assert os.access(ci, os.X_OK)
    with open(ci) as f:
        script = f.read()
    assert "set -euo pipefail" in script
    assert "pip install --quiet -e '.[test,keras,cuda,distributed]'" in script
    assert ".venv/bin/python -m pytest tests" in script
    assert ".venv/bin/ruff check ." in script
