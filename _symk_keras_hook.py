"""Interpreter-start hook that applies ``symk.keras_compat`` when Keras is imported on symk.

After ``pip install -e '.[keras]'`` (the extra brings Keras 2.3.1 and h5py),
``KERAS_BACKEND=symk.backend python script.py`` must work with the unmodified Keras on Python
3.11 / numpy 2 / h5py 3 without the script calling anything.  symk's wheel (regular and
editable; with or without the extra, since a wheel cannot ship files per extra) therefore puts
``symk_keras_compat.pth`` into site-packages; ``site`` executes its one line,
:data:`PTH_LINE`, at every interpreter start:

* When ``KERAS_BACKEND`` is unset or does not name symk (its first dotted component is not
  ``symk``), the line is one dict lookup: this module is not even imported.
* Otherwise it imports this module (~0.5 ms; standard library only, nothing of symk) and calls
  :func:`install`, which puts :class:`KerasImportHook` first on ``sys.meta_path``.  The finder
  ignores every module but ``keras``; when ``keras`` is first imported it removes itself and,
  if ``KERAS_BACKEND`` still names symk, hands Keras's spec to
  ``symk.keras_compat.prepare_keras_spec``, which adds the ``collections`` / numpy aliases
  Keras needs before Keras's ``__init__`` runs and patches Keras's h5py readers and writers
  (in memory, never on disk) right after it.  A program that never imports Keras only pays
  for a no-op ``find_spec`` call per new import.

Why ``KERAS_BACKEND`` and not also ``keras.json``: the ``.pth`` line runs in every Python
process of the environment (pip, pytest workers, tools), so it must not touch the file system;
reading ``$KERAS_HOME/keras.json`` there would cost a path expansion, a file read and a JSON
parse per interpreter start.  Keras gives ``KERAS_BACKEND`` precedence over ``keras.json``,
and the README's command sets it.  A program that selects symk only through ``keras.json``
calls ``symk.keras_compat.install()`` before ``import keras`` instead.

Exception to symk's rule that ``symk/config.py`` reads every environment variable: this
module runs before symk can be imported (and must not import it: ``import symk`` costs tens
of milliseconds), so it reads ``KERAS_BACKEND`` itself, both in :data:`PTH_LINE` and again
when ``keras`` is imported (a program may change it in between).
"""

import os  # (no typing or __future__ import: they would add to the start-up cost)
import sys

#: The line of ``symk_keras_compat.pth`` (written by ``setup.py``); it repeats
#: :func:`names_symk` inline so that processes without ``KERAS_BACKEND=symk...`` import nothing.
PTH_LINE = ("import os; os.environ.get('KERAS_BACKEND', '').partition('.')[0] == 'symk' "
            "and __import__('_symk_keras_hook').install()")

#: File name of the ``.pth`` (sorts after setuptools' ``__editable__.*.pth``, which must run
#: first in editable installs so that this module can be found).
PTH_NAME = "symk_keras_compat.pth"


def names_symk(backend: str | None) -> bool:
    """Whether a ``KERAS_BACKEND`` value selects symk (``symk`` or ``symk.<module>``)."""
    return (backend or "").partition(".")[0] == "symk"


class KerasImportHook:
    """``sys.meta_path`` finder that prepares the first import of ``keras`` (then leaves)."""

    #: set by :func:`install`: re-check ``KERAS_BACKEND`` when Keras is imported
    check_env = True

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != "keras":
            return None
        uninstall()
        if cls.check_env and not names_symk(os.environ.get("KERAS_BACKEND")):
            return None  # the program switched Keras to another backend: patch nothing
        import importlib.util

        spec = importlib.util.find_spec("keras")  # the real finders (this one is gone)
        if spec is None:
            return None
        from symk.keras_compat import prepare_keras_spec

        return prepare_keras_spec(spec)


def install(check_env: bool = True) -> None:
    """Apply ``symk.keras_compat`` at the first ``import keras`` (idempotent).

    With ``check_env`` (the ``.pth`` path), only if ``KERAS_BACKEND`` then still names symk.
    """
    KerasImportHook.check_env = check_env
    if KerasImportHook not in sys.meta_path:
        sys.meta_path.insert(0, KerasImportHook)


def uninstall() -> None:
    """Remove the finder (a no-op when it is not installed)."""
    while KerasImportHook in sys.meta_path:
        sys.meta_path.remove(KerasImportHook)


def installed() -> bool:
    """Whether the finder is waiting for ``import keras``."""
    return KerasImportHook in sys.meta_path
