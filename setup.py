"""Build hook: ships ``symk_keras_compat.pth`` into site-packages (all metadata is in
pyproject.toml).

The ``.pth`` makes ``KERAS_BACKEND=symk.backend python script.py`` apply
``symk.keras_compat`` with no code in the script (see ``_symk_keras_hook.py``, which owns its
one line).  A ``.pth`` must sit at the root of site-packages, which neither package data nor
``data-files`` (relative to the prefix, so Python-version dependent) can express, hence this
``build_py``:

* regular wheels (``pip install .``): the file is written to the root of ``build_lib``, which
  becomes the root of the wheel;
* editable wheels (``pip install -e .``): setuptools does not put ``build_lib`` into the wheel,
  but it points the ``install`` command's ``install_lib`` at the unpacked editable wheel
  (setuptools >= 64, ``editable_wheel._configure_build``), so the file is written there.
"""

from __future__ import annotations

import importlib.util
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _hook() -> object:
    """``_symk_keras_hook`` loaded from the source tree (standard library only)."""
    spec = importlib.util.spec_from_file_location(
        "_symk_keras_hook", os.path.join(HERE, "_symk_keras_hook.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithPth(build_py):
    """``build_py`` that also writes ``symk_keras_compat.pth`` at the wheel's root."""

    def run(self) -> None:
        super().run()
        hook = _hook()
        root = self.build_lib
        if getattr(self, "editable_mode", False):
            root = self.get_finalized_command("install").install_lib
        os.makedirs(root, exist_ok=True)
        target = os.path.join(root, hook.PTH_NAME)
        with open(target, "w", encoding="utf-8") as f:
            f.write(hook.PTH_LINE + "\n")
        self._pth_output = target

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        target = getattr(self, "_pth_output", None)
        if target is not None and not getattr(self, "editable_mode", False):
            outputs.append(target)
        return outputs


setup(cmdclass={"build_py": BuildPyWithPth})
