"""Compatibility shim that lets the real Keras 2.3.1 run on Python 3.11 with numpy 2 and h5py 3.

Applied from outside Keras (no Keras file is edited) and only by the tests and benchmarks:

* ``collections.Iterable``, ``Mapping``, ``Sequence``, ``Container``, ... moved to
  ``collections.abc`` in Python 3.10; Keras still looks them up in ``collections``.
* numpy 2 removed ``np.Inf``, ``np.string_``, ``np.unicode_`` (and a few other aliases);
  Keras's callbacks and ``keras.utils.io_utils`` use them.
* h5py 3 reads variable-length string attributes back as ``str`` where h5py 2 gave ``bytes``;
  ``keras.engine.saving`` calls ``.decode('utf8')`` on them (``load_model``, ``load_weights``).
  :func:`patch_keras_saving` wraps the few readers Keras uses so that those values come back
  as ``bytes`` again; it must run after ``import keras``.

Usage::

    from tests.keras import shim
    shim.apply()                        # before importing keras
    shim.set_environment(keras_home)    # KERAS_BACKEND=symk.backend, KERAS_HOME=keras_home
    import keras
    shim.patch_keras_saving()
"""

from __future__ import annotations

import collections
import collections.abc
import os
from typing import Any

import numpy as np

_ABC_NAMES = (
    "Awaitable", "Callable", "Container", "Coroutine", "Hashable", "ItemsView", "Iterable",
    "Iterator", "KeysView", "Mapping", "MappingView", "MutableMapping", "MutableSequence",
    "MutableSet", "Sequence", "Set", "Sized", "ValuesView",
)

# numpy 1.x aliases removed in numpy 2 that Keras 2.3.1 (or its helpers) touch
_NUMPY_ALIASES = {
    "Inf": np.inf,
    "NINF": -np.inf,
    "PINF": np.inf,
    "NaN": np.nan,
    "string_": np.bytes_,
    "unicode_": np.str_,
    "float_": np.float64,
    "complex_": np.complex128,
}


def apply() -> None:
    """Install the ``collections`` and numpy aliases (idempotent)."""
    for name in _ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def set_environment(keras_home: str, backend: str = "symk.backend") -> None:
    """Point Keras at a private config directory and at the symk backend."""
    os.makedirs(keras_home, exist_ok=True)
    os.environ["KERAS_HOME"] = keras_home
    os.environ["KERAS_BACKEND"] = backend


def _to_bytes(value: Any) -> Any:
    """``str`` -> ``bytes``, also inside lists and object arrays (h5py 3's vlen strings)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_to_bytes(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = np.empty(value.shape, dtype=object)
        for i, v in np.ndenumerate(value):
            out[i] = _to_bytes(v)
        return out
    return value


class _BytesAttrs:
    """A read view of an h5py ``AttributeManager`` returning ``str`` values as ``bytes``."""

    def __init__(self, attrs: Any) -> None:
        self._attrs = attrs

    def __getitem__(self, key: str) -> Any:
        return _to_bytes(self._attrs[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self._attrs[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._attrs

    def __iter__(self):
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._attrs else default


class _BytesAttrsNode:
    """Wraps an h5py File/Group so that ``.attrs`` strings read back as ``bytes`` (as with
    h5py 2); everything else, including indexing into sub-groups, is forwarded."""

    def __init__(self, node: Any) -> None:
        self._node = node

    @property
    def attrs(self) -> _BytesAttrs:
        return _BytesAttrs(self._node.attrs)

    def __getitem__(self, key: Any) -> Any:
        return _wrap_h5(self._node[key])

    def __contains__(self, key: object) -> bool:
        return key in self._node

    def __iter__(self):
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


def _wrap_h5(node: Any) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        return _BytesAttrsNode(node)
    return node


_patched = False


def patch_keras_saving() -> None:
    """Make ``keras.engine.saving`` see ``bytes`` attributes under h5py 3 (idempotent).

    Wraps ``keras.utils.io_utils.H5Dict.__getitem__`` (used by ``load_model``) and the
    group-level readers of ``keras.engine.saving`` (used by ``load_weights``) at runtime.
    """
    global _patched
    if _patched:
        return
    from keras.engine import saving
    from keras.utils import io_utils

    h5dict_getitem = io_utils.H5Dict.__getitem__

    def getitem(self: Any, attr: Any) -> Any:
        return _to_bytes(h5dict_getitem(self, attr))

    io_utils.H5Dict.__getitem__ = getitem

    for name in ("load_weights_from_hdf5_group", "load_weights_from_hdf5_group_by_name",
                 "load_attributes_from_hdf5_group"):
        original = getattr(saving, name)

        def reader(group: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return _original(_wrap_h5(group), *args, **kwargs)

        reader.__name__ = name
        reader.__doc__ = original.__doc__
        setattr(saving, name, reader)
    _patched = True
