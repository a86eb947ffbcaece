"""Caches of compiled object code: in memory (per process) and on disk.

Disk entries live in ``SYMK_CACHE_DIR`` (default ``~/.cache/symk``; ``SYMK_CACHE=0`` disables),
content-addressed by sha256 of (kernel module source, target key, symk version).  Each entry is
``<key>.o`` plus ``<key>.json`` metadata holding the object's sha256; both are written to a
temporary file and renamed, so concurrent processes never see half an entry and need no lock.
No pickle is used.  An unreadable or corrupted entry is discarded with a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from typing import Any

from symk.debug import log
from symk.errors import SymkError

_memory: dict[str, bytes] = {}


class Missing(SymkError):
    """Something a cached plan refers to is no longer cached (a plain miss, not an error)."""


def cache_dir() -> str | None:
    if os.environ.get("SYMK_CACHE", "1") in ("0", "false", "no", "off"):
        return None
    return os.environ.get("SYMK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "symk")


def key_of(source: str, target: str) -> str:
    from symk import __version__

    h = hashlib.sha256()
    for part in (source, target, __version__):
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
        os.makedirs(d, exist_ok=True)
        info = {**meta, "sha256": hashlib.sha256(obj).hexdigest(), "bytes": len(obj),
                "created": time.time()}
        atomic_write(os.path.join(d, key + ".o"), obj)
        atomic_write(os.path.join(d, key + ".json"), json.dumps(info).encode())
    except OSError as e:
        warnings.warn(f"symk: cannot write the kernel cache in {d}: {e}", RuntimeWarning,
                      stacklevel=2)


def info() -> dict[str, Any]:
    d = cache_dir()
    out: dict[str, Any] = {"dir": d, "enabled": d is not None, "entries": 0, "bytes": 0,
                           "memory_entries": len(_memory), "plans": 0}
    if d and os.path.isdir(d):
        for name in os.listdir(d):
            if name.endswith(".o"):
                out["entries"] += 1
                out["bytes"] += os.path.getsize(os.path.join(d, name))
            elif name.endswith(".plan.json"):
                out["plans"] = out.get("plans", 0) + 1
    return out


def clear() -> int:
    """Remove every disk entry (and the memory cache); returns the number of files removed."""
    _memory.clear()
    d = cache_dir()
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
