"""symk's compatibility layer for the real Keras 2.3.1 on Python 3.11, numpy 2 and h5py 3.

This package owns everything symk does to Keras; the rest of symk never imports or patches
Keras, and no Keras file on disk is ever modified.  The fixes (all applied in memory, all
idempotent):

* :mod:`symk.keras_compat.aliases` adds the ``collections`` ABC names and numpy 1 aliases
  Keras looks up (``collections.Iterable``, ``np.string_``, ...) -- before Keras's
  ``__init__`` runs, since Keras uses them at import time;
* :mod:`symk.keras_compat.h5` patches Keras's h5py readers and binary-stream save/load for
  h5py 3 -- right after ``import keras`` (the modules it patches must exist).

How it is applied:

* Automatically: installing symk puts ``symk_keras_compat.pth`` into site-packages, whose hook
  (the top-level module ``_symk_keras_hook``) waits for the first ``import keras`` when
  ``KERAS_BACKEND`` names symk at interpreter start and then calls :func:`prepare_keras_spec`.
  So ``KERAS_BACKEND=symk.backend python script.py`` needs no code in the script.
* Explicitly: :func:`install` before ``import keras`` (or after it: then only the saving
  patches can still be applied), e.g. when symk is selected through ``keras.json`` only or
  ``KERAS_BACKEND`` is set inside the program (``tests/keras/conftest.py`` does this).

The saving patches are applied only when the imported Keras is 2.3.1 and its backend is symk.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from symk.keras_compat import aliases, h5

__all__ = ["KERAS_VERSION", "install", "prepare_keras_spec", "finish", "status"]

#: the Keras release this layer adapts
KERAS_VERSION = "2.3.1"


def _uses_symk(keras: ModuleType) -> bool:
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    name = backend() if callable(backend) else ""
    return name.partition(".")[0] == "symk"


def finish(keras: ModuleType) -> bool:
    """After ``import keras``: patch its saving for h5py 3 if it is 2.3.1 on symk.

    Returns whether the patches are (now) applied.
    """
    if getattr(keras, "__version__", None) != KERAS_VERSION or not _uses_symk(keras):
        return False
    h5.patch()
    return True


class _FinishingLoader(importlib.abc.Loader):
    """Wraps Keras's own loader: runs it, restores it on the module, then :func:`finish`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        finally:  # leave no trace of the wrapper on the module
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader
        finish(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def prepare_keras_spec(spec: importlib.machinery.ModuleSpec) -> importlib.machinery.ModuleSpec:
    """Called with the spec of ``keras`` when it is about to be imported: applies the aliases
    and returns the spec whose loader runs :func:`finish` once Keras's ``__init__`` is done."""
    aliases.apply()
    if spec.loader is not None and not isinstance(spec.loader, _FinishingLoader):
        spec.loader = _FinishingLoader(spec.loader)
    return spec


def install() -> None:
    """Apply the layer to this process's Keras without relying on ``KERAS_BACKEND``.

    Before ``import keras``: waits for it (the aliases go in before Keras's ``__init__`` runs,
    the saving patches after it, if that Keras is 2.3.1 on symk).  After it: applies the saving
    patches now (if that Keras is 2.3.1 on symk).
    """
    keras = sys.modules.get("keras")
    if keras is not None:
        finish(keras)
        return
    import _symk_keras_hook

    _symk_keras_hook.install(check_env=False)


def status() -> dict[str, bool]:
    """What is in effect: ``hook_waiting`` (the finder waits for ``import keras``),
    ``aliases`` and ``saving`` (the h5py 3 patches)."""
    hook = sys.modules.get("_symk_keras_hook")
    return {"hook_waiting": bool(hook is not None and hook.installed()),
            "aliases": aliases.applied(), "saving": h5.patched()}
