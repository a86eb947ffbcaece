"""Caches of compiled object code: in memory (per process) and on disk.

Disk entries live in ``SYMK_CACHE_DIR`` (default ``~/.cache/symk``; ``SYMK_CACHE=0`` disables),
content-addressed by sha256 of (kernel module source, target key, symk version).  Each entry is
``<key>.o`` plus ``<key>.json`` metadata holding the object's sha256 and its key; both are
written to a temporary file and renamed, so concurrent processes never see half an entry and
need no lock.  No pickle is used.  An unreadable or corrupted entry is discarded with a warning
and rebuilt.

Object code from the cache is linked into the process, so whoever can write the directory can
run code in it.  A directory that is group- or world-writable or owned by another user is
refused (one RuntimeWarning per directory and process; the process then runs without a disk
cache, the memory caches still work).  The check is one ``os.stat`` per directory path and
process; a directory symk creates gets mode 0o700.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
import warnings
from typing import Any

from symk import config, version
from symk.debug import log
from symk.errors import SymkError
from symk.runtime.lru import LRU, OBJECTS_MAX, OBJECTS_MAX_BYTES

#: key -> object code, least recently used first out (bounded: a long-lived process that keeps
#: compiling new functions stays flat; the disk cache keeps everything)
_memory: LRU = LRU(OBJECTS_MAX, OBJECTS_MAX_BYTES, len)


class Missing(SymkError):
    """Something a cached plan refers to is no longer cached (a plain miss, not an error)."""


#: cache directory path -> None (checked, usable) or why it is refused; one check per process
_checked: dict[str, str | None] = {}


def _unsafe(d: str) -> str | None:
    """Why ``d`` must not be trusted (None: it may be).  Raises OSError when it cannot be
    stat'ed (a missing directory: FileNotFoundError)."""
    st = os.stat(d)
    if os.name == "nt" or not stat.S_ISDIR(st.st_mode):
        return None  # no POSIX modes / not a directory: writing it fails with its own warning
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("its group", stat.S_IWGRP),
                                            ("other users", stat.S_IWOTH)) if st.st_mode & bit)
        return f"it is writable by {who} (mode {stat.S_IMODE(st.st_mode):#o})"
    return None


def _trusted(d: str) -> bool:
    """Whether the cache directory ``d`` may be used (stat'ed once per path and process; a
    refusal warns once).  A directory that does not exist yet is fine: ``ensure_dir`` creates
    it with mode 0o700 and checks it then."""
    if d in _checked:
        return _checked[d] is None
    try:
        why = _unsafe(d)
    except FileNotFoundError:
        return True
    except OSError:
        return True  # unreadable: reading and writing entries fail with their own warnings
    _checked[d] = why
    if why is not None:
        warnings.warn(f"symk: not using the cache directory {d}: {why}. Cached object code is "
                      "loaded into this process, so whoever can write there could run code in "
                      "it. This process compiles without a disk cache; fix the directory "
                      f"(chmod 700, owned by you) or set SYMK_CACHE_DIR", RuntimeWarning,
                      stacklevel=3)
    return why is None


def cache_dir() -> str | None:
    """The disk cache directory, or None when the disk cache is off (``SYMK_CACHE=0``) or the
    directory is refused as unsafe."""
    d = config.cache_dir()
    if d is None or not _trusted(d):
        return None
    return d


def refused(d: str) -> str | None:
    """Why this process refused the cache directory ``d`` (None: it did not)."""
    return _checked.get(d)


def ensure_dir(d: str) -> bool:
    """Create the cache directory (mode 0o700) if missing; whether it may be written."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    return _trusted(d)


def key_of(source: str, target: str) -> str:

    h = hashlib.sha256()
    for part in (source, target, version.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def atomic_write(path: str, data: bytes) -> None:
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(key: str) -> bytes | None:
    obj = _memory.get(key)
    if obj is not None:
        log(1, f"cache hit (memory) {key[:12]}")
        return obj
    d = cache_dir()
    if d is None:
        return None
    opath, mpath = os.path.join(d, key + ".o"), os.path.join(d, key + ".json")
    if not os.path.exists(mpath):
        # the metadata is written last: an object without it may be another process's entry
        # being written right now, so it is a miss, not a corrupted entry
        log(1, f"cache miss {key[:12]} (not on disk)")
        return None
    try:
        with open(mpath) as f:
            meta = json.load(f)
        with open(opath, "rb") as f:
            obj = f.read()
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(obj).hexdigest():
            raise ValueError("object does not match its recorded checksum")
        if meta.get("key", key) != key:  # entries written before the key was recorded: no key
            raise ValueError("the entry belongs to another key")
    except (OSError, ValueError) as e:
        warnings.warn(f"symk: discarding corrupted cache entry {key[:12]} in {d} ({e}); "
                      "rebuilding it", RuntimeWarning, stacklevel=2)
        for p in (opath, mpath):
            try:
                os.unlink(p)
            except OSError:
                pass
        return None
    _memory[key] = obj
    log(1, f"cache hit (disk) {key[:12]}")
    return obj


def store(key: str, obj: bytes, meta: dict[str, Any]) -> None:
    _memory[key] = obj
    d = cache_dir()
    if d is None:
        return
    try:
        if not ensure_dir(d):
            return
        info = {**meta, "key": key, "sha256": hashlib.sha256(obj).hexdigest(), "bytes": len(obj),
                "created": time.time()}
        atomic_write(os.path.join(d, key + ".o"), obj)
        atomic_write(os.path.join(d, key + ".json"), json.dumps(info).encode())
    except OSError as e:
        warnings.warn(f"symk: cannot write the kernel cache in {d}: {e}", RuntimeWarning,
                      stacklevel=2)


def info() -> dict[str, Any]:
    d = config.cache_dir()
    usable = d is not None and _trusted(d)
    out: dict[str, Any] = {"dir": d, "enabled": usable, "entries": 0, "bytes": 0,
                           "memory_entries": len(_memory), "plans": 0,
                           "refused": None if d is None else refused(d)}
    if d and os.path.isdir(d):
        for name in os.listdir(d):
            if name.endswith(".o"):
                out["entries"] += 1
                out["bytes"] += os.path.getsize(os.path.join(d, name))
            elif name.endswith(".plan.json"):
                out["plans"] = out.get("plans", 0) + 1
    return out


def clear() -> int:
    """Remove every disk entry (and the memory cache); returns the number of files removed.
    A refused (unsafe) directory is cleared too: removing entries runs none of them."""
    _memory.clear()
    d = config.cache_dir()
    n = 0
    if d and os.path.isdir(d):
        for name in os.listdir(d):
            if name.endswith((".o", ".json")) or name.startswith(".tmp-"):
                try:
                    os.unlink(os.path.join(d, name))
                    n += 1
                except OSError:
                    pass
    return n
