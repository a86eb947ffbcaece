"""Keras 2.3.1's own backend tests (``tests/keras/backend/backend_test.py`` of its sdist, not
modified) pass on symk, sparse tests included, on each device.

The file is run by pytest in a subprocess with ``tests/keras/backend_suite_plugin.py`` (which
loads Keras on symk as this directory's conftest does and makes symk the file's ``KTF``, checked
against Keras's numpy reference backend).  The sdist comes from PyPI with ``pip download`` into
``$SYMK_TEST_DOWNLOADS`` (default ``~/.cache/symk-tests``), once; without it and without network
access the test is skipped, saying why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.keras

SDIST = "Keras-2.3.1.tar.gz"
SDIST_SHA256 = "321d43772006a25a1d58eea17401ef2a34d388b588c9f7646c34796151ebc8cc"
ROOT = "Keras-2.3.1"
#: the files of the sdist the run needs: the test file and Keras's test conftest
MEMBERS = (f"{ROOT}/tests/keras/backend/backend_test.py", f"{ROOT}/tests/conftest.py")
REPO = Path(__file__).resolve().parents[2]


def _downloads() -> Path:
    return Path(os.environ.get("SYMK_TEST_DOWNLOADS")
                or Path.home() / ".cache" / "symk-tests")


def _fetch_sdist(cache: Path) -> Path:
    """The extracted ``Keras-2.3.1`` directory (downloaded and extracted on first use)."""
    root = cache / ROOT
    if all((cache / m).is_file() for m in MEMBERS):
        return root
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / SDIST
    if not tarball.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "keras==2.3.1", "--no-deps",
               "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(cache)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("pip download of the keras 2.3.1 sdist timed out (no network?)")
        if r.returncode != 0 or not tarball.is_file():
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"cannot download the keras 2.3.1 sdist with pip (no network?): {last}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        tarball.unlink()
        pytest.fail(f"{tarball} has sha256 {digest}, expected {SDIST_SHA256} (deleted; rerun)")
    tmp = Path(tempfile.mkdtemp(dir=cache))
    try:
        with tarfile.open(tarball) as tar:
            for m in MEMBERS:
                tar.extract(tar.getmember(m), tmp, filter="data")
        for m in MEMBERS:
            (cache / m).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / m, cache / m)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@pytest.fixture(scope="module")
def sdist() -> Path:
    return _fetch_sdist(_downloads())


def _counts(junit: Path) -> tuple[dict[str, int], list[str]]:
    """(counts of passed/skipped/failed/errors, the ids of the tests that failed or errored)."""
    suite = ET.parse(junit).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "skipped", "failures", "errors")}
    counts["passed"] = (counts["tests"] - counts["skipped"] - counts["failures"]
                        - counts["errors"])
    bad = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
           if case.find("failure") is not None or case.find("error") is not None]
    return counts, bad


def test_keras_backend_test_file_passes(sdist: Path, device: str, tmp_path: Path) -> None:
    test_file = sdist / "tests" / "keras" / "backend" / "backend_test.py"
    junit = tmp_path / "junit.xml"
    ini = tmp_path / "pytest.ini"  # an empty configuration: none of symk's, none found above
    ini.write_text("[pytest]\n")
    env = dict(os.environ, SYMK_DEVICE=device, PYTHONPATH=str(REPO))
    env.pop("KERAS_BACKEND", None)  # the plugin sets it (and KERAS_HOME) as conftest does
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.keras.backend_suite_plugin",
           str(test_file), "--rootdir", str(sdist), "-c", str(ini),
           "-p", "no:cacheprovider", "-q", "-rfEs", "--tb=short", f"--junitxml={junit}"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert junit.is_file(), (f"backend_test.py did not run (exit {r.returncode}):\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    counts, bad = _counts(junit)
    summary = (f"Keras 2.3.1 backend_test.py on symk (device {device}): {counts['passed']} "
               f"passed, {counts['skipped']} skipped, {counts['failures']} failed, "
               f"{counts['errors']} errors")
    assert not bad and r.returncode == 0, (f"{summary}\nfailed: {bad}\n{r.stdout[-8000:]}\n"
                                           f"{r.stderr[-2000:]}")
    assert counts["passed"] >= 140, summary  # the file was collected in full
    print(summary)
