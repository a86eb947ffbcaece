"""Keras 2.3.1's model saving and loading under h5py 3, patched in memory after ``import keras``.

Two h5py 3 changes break ``keras.engine.saving`` (``save_model`` / ``load_model`` /
``Model.save`` / ``Model.load_weights``):

* Variable-length string attributes read back as ``str`` where h5py 2 gave ``bytes``, and
  Keras calls ``.decode('utf8')`` on them.  ``H5Dict.__getitem__`` (used by ``load_model``)
  and the group-level readers of ``keras.engine.saving`` (used by ``load_weights``) are
  wrapped so that those values come back as ``bytes`` again.
* ``h5py.File``'s default mode became ``'r'`` (it was ``'a'``), so
  ``keras.utils.io_utils.save_to_binary_h5py`` (saving to a binary stream such as
  ``io.BytesIO`` or ``open(path, 'wb')``) failed with ``OSError: Unable to synchronously open
  file``: it opened its in-memory file read-only.  It is replaced by a version that opens it
  with ``mode='w'``, and ``load_from_binary_h5py`` by one reading the image through h5py 3's
  file-object support.

Nothing on disk is modified; :func:`patch` is idempotent and :func:`patched` reports it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

_READERS = ("load_weights_from_hdf5_group", "load_weights_from_hdf5_group_by_name",
            "load_attributes_from_hdf5_group")

_patched = False


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
        return _wrap_group(self._node[key])

    def __contains__(self, key: object) -> bool:
        return key in self._node

    def __iter__(self):
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


def _wrap_group(node: Any) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        return _BytesAttrsNode(node)
    return node


def save_to_binary_h5py(save_function: Callable[[Any], Any], stream: Any) -> Any:
    """Keras's ``save_to_binary_h5py`` with the in-memory file opened writable (h5py 3)."""
    import h5py

    with h5py.File("in-memory-h5py", mode="w", driver="core", backing_store=False) as h5file:
        result = save_function(h5file)
        h5file.flush()
        image = h5file.id.get_file_image()
    stream.write(image)
    return result


def load_from_binary_h5py(load_function: Callable[[Any], Any], stream: Any) -> Any:
    """Keras's ``load_from_binary_h5py``: ``load_function`` on the h5py file in ``stream``."""
    import h5py

    with h5py.File(io.BytesIO(stream.read()), mode="r") as h5file:
        return load_function(h5file)


def patch() -> None:
    """Patch the imported ``keras.engine.saving`` and ``keras.utils.io_utils`` (idempotent)."""
    global _patched
    if _patched:
        return
    from keras.engine import saving
    from keras.utils import io_utils

    h5dict_getitem = io_utils.H5Dict.__getitem__

    def getitem(self: Any, attr: Any) -> Any:
        return _to_bytes(h5dict_getitem(self, attr))

    io_utils.H5Dict.__getitem__ = getitem

    for name in _READERS:
        original = getattr(saving, name)

        def reader(group: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return _original(_wrap_group(group), *args, **kwargs)

        reader.__name__ = name
        reader.__doc__ = original.__doc__
        setattr(saving, name, reader)
    for module in (io_utils, saving):  # saving imported both functions by name
        module.save_to_binary_h5py = save_to_binary_h5py
        module.load_from_binary_h5py = load_from_binary_h5py
    _patched = True


def patched() -> bool:
    """Whether :func:`patch` has run in this process."""
    return _patched
