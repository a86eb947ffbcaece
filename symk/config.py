"""Global settings: floatx, epsilon, image_data_format and the default device, and every
environment variable symk reads.

Precedence (lowest to highest): built-in defaults, ``$KERAS_HOME/keras.json`` (or
``~/.keras/keras.json``), ``SYMK_FLOATX`` / ``SYMK_EPSILON`` / ``SYMK_IMAGE_DATA_FORMAT`` /
``SYMK_DEVICE`` environment variables, then the setters.  When the real Keras is loaded, its
``keras.backend.common`` owns these settings (Keras's setters win over ours), so the getters
read from it and the setters write to it too.

The other variables (``SYMK_DEBUG``, ``SYMK_OPT``, ``SYMK_CACHE_DIR``, ...) are read by the
getters below *when called* (so a changed variable takes effect at the next compilation), and a
bad value is an ``ArgumentError`` naming the variable, the value and what is accepted.  Nothing
else in symk reads ``os.environ``; the one exception is ``KERAS_BACKEND``, read by the top-level
``_symk_keras_hook`` at interpreter start and at ``import keras``, before symk can be imported
(it decides whether ``symk.keras_compat`` is applied).  An empty variable counts as unset.
Parsed values are remembered by raw string, so a getter called on every function call costs a
dict lookup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from symk.errors import ArgumentError

_FLOATS = ("float16", "float32", "float64")
_FORMATS = ("channels_last", "channels_first")
#: the built-in devices, as ``symk.runtime.devices.DEVICES`` names them (a test checks both
#: agree; config never imports the runtime)
_DEVICES = ("cpu", "interp", "cuda")

_state: dict[str, Any] = {}


def _keras_json_path() -> str:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras.json")


def _check(field: str, value: Any, source: str) -> Any:
    if field == "floatx":
        if value not in _FLOATS:
            raise ArgumentError(f"{source}: unknown floatx {value!r}; expected one of {_FLOATS}")
        return str(value)
    if field == "epsilon":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ArgumentError(f"{source}: epsilon must be a number, got {value!r}") from None
    if field == "image_data_format":
        if value not in _FORMATS:
            raise ArgumentError(f"{source}: unknown image_data_format {value!r}; expected one "
                                f"of {_FORMATS}")
        return str(value)
    if field == "device":
        if value not in _DEVICES:
            raise ArgumentError(f"{source}: unknown device {value!r}; expected one of {_DEVICES}")
        return str(value)
    raise ArgumentError(f"unknown setting {field!r}")


def load() -> None:
    """(Re)read defaults from keras.json and the environment, discarding setter values."""
    st = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last",
          "device": "cpu"}
    path = _keras_json_path()
    if os.path.exists(path):
        try:
            with open(path) as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise ArgumentError(f"cannot read Keras config {path}: {e}") from None
        if not isinstance(cfg, dict):
            raise ArgumentError(f"Keras config {path} must hold a JSON object")
        for k in ("floatx", "epsilon", "image_data_format"):
            if k in cfg:
                st[k] = _check(k, cfg[k], path)
    for k in ("floatx", "epsilon", "image_data_format", "device"):
        env = "SYMK_" + k.upper()
        if os.environ.get(env):
            st[k] = _check(k, os.environ[env], f"${env}")
    _state.clear()
    _state.update(st)


def _keras_common() -> Any:
    return sys.modules.get("keras.backend.common")


def floatx() -> str:
    kc = _keras_common()
    return kc._FLOATX if kc is not None else _state["floatx"]


def set_floatx(value: str) -> None:
    _state["floatx"] = _check("floatx", str(value), "set_floatx")
    kc = _keras_common()
    if kc is not None:
        kc._FLOATX = _state["floatx"]


def epsilon() -> float:
    kc = _keras_common()
    return kc._EPSILON if kc is not None else _state["epsilon"]


def set_epsilon(value: float) -> None:
    _state["epsilon"] = _check("epsilon", value, "set_epsilon")
    kc = _keras_common()
    if kc is not None:
        kc._EPSILON = _state["epsilon"]


def image_data_format() -> str:
    kc = _keras_common()
    return kc._IMAGE_DATA_FORMAT if kc is not None else _state["image_data_format"]


def set_image_data_format(value: str) -> None:
    _state["image_data_format"] = _check("image_data_format", value, "set_image_data_format")
    kc = _keras_common()
    if kc is not None:
        kc._IMAGE_DATA_FORMAT = _state["image_data_format"]


def device() -> str:
    return _state["device"]


def set_device(value: str) -> None:
    _state["device"] = _check("device", value, "set_device")


def check_device(value: str | None, where: str = "K.function") -> str:
    """``value`` (None or empty: the default device) if it names a device, else an
    ArgumentError naming ``where`` and the accepted devices."""
    if not value:
        return device()
    if value not in _DEVICES:
        hint = " (NVIDIA GPUs are 'cuda')" if str(value).lower() in ("gpu", "cuda:0") else ""
        raise ArgumentError(f"{where}: unknown device {value!r}; expected one of "
                            f"{', '.join(map(repr, _DEVICES))}{hint}")
    return str(value)


def device_names() -> tuple[str, ...]:
    """The device names ``check_device`` accepts (``symk.runtime.devices.DEVICES``'s keys)."""
    return _DEVICES


def add_device_name(name: str) -> None:
    """Accept ``name`` as a device (``symk.runtime.devices.register_device`` calls this)."""
    global _DEVICES
    if name not in _DEVICES:
        _DEVICES = (*_DEVICES, name)


def remove_device_name(name: str) -> None:
    """Stop accepting ``name`` (``symk.runtime.devices.unregister_device``); a default device
    of that name becomes ``cpu``."""
    global _DEVICES
    _DEVICES = tuple(d for d in _DEVICES if d != name)
    if _state.get("device") == name:
        _state["device"] = "cpu"


# ---------------------------------------------------------------- other environment variables

T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: (variable, raw value) -> parsed value; only valid values are remembered
_parsed: dict[tuple[str, str], Any] = {}


#: CPython's storage behind ``os.environ`` (encoded key -> encoded value; ``os.environ``'s
#: setters keep it current): a miss through ``os.environ.get`` raises and catches a KeyError
#: (~0.7 us), which ``debug_level()`` paid on every call of every compiled function
_ENV_DATA: Any = getattr(os.environ, "_data", None)
_ENV_KEYS: dict[str, Any] = {}


def _getenv(name: str) -> str | None:
    """``os.environ.get(name)`` without the exception on a miss."""
    if _ENV_DATA is None:  # pragma: no cover - another Python's os.environ
        return os.environ.get(name)
    key = _ENV_KEYS.get(name)
    if key is None:
        key = _ENV_KEYS[name] = os.environ.encodekey(name)  # type: ignore[attr-defined]
    raw = _ENV_DATA.get(key)
    return None if raw is None else os.environ.decodevalue(raw)  # type: ignore[attr-defined]


def _env(name: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = _getenv(name)
    if not raw:
        return default
    try:
        return _parsed[(name, raw)]
    except KeyError:
        pass
    value = parse(name, raw)
    if len(_parsed) > 256:
        _parsed.clear()
    _parsed[(name, raw)] = value
    return value


def _parse_bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ArgumentError(f"{name} must be one of {'/'.join(_TRUE + _FALSE)} (any case), "
                        f"got {raw!r}")


def _parse_int(lo: int, hi: int | None, accepted: str) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            n = int(raw.strip())
        except ValueError:
            n = None
        if n is None or n < lo or (hi is not None and n > hi):
            raise ArgumentError(f"{name} must be {accepted}, got {raw!r}")
        return n
    return parse


_parse_debug = _parse_int(0, 5, "an integer from 0 (quiet) to 5 (Kernel IR)")
_parse_opt = _parse_int(0, 2, "0, 1 or 2")
_parse_threads = _parse_int(1, None, "a positive integer (threads per kernel)")
_parse_scan_threads = _parse_int(0, None, "an integer >= 0 (0 leaves BLAS as configured)")


_DEBUG_KEY: Any = None if _ENV_DATA is None else \
    os.environ.encodekey("SYMK_DEBUG")  # type: ignore[attr-defined]


def debug_level() -> int:
    """``SYMK_DEBUG``: 0 (default) to 5; called on every log line and every call of a
    compiled function, so the unset case is one dict look-up."""
    if _ENV_DATA is not None and _DEBUG_KEY not in _ENV_DATA:
        return 0
    return _env("SYMK_DEBUG", _parse_debug, 0)


def opt_level() -> int:
    """``SYMK_OPT``: 0, 1 or 2 (default)."""
    return _env("SYMK_OPT", _parse_opt, 2)


def _split_tags(name: str, raw: str) -> frozenset[str]:
    return frozenset(t.strip() for t in raw.split(":") if t.strip())


def excluded_tags(known: Iterable[str] | None = None) -> frozenset[str]:
    """``SYMK_EXCLUDE``: colon-separated pass tags.  With ``known`` (the registry's tags), an
    unknown tag is an ArgumentError listing the known ones (config never imports the passes)."""
    tags = _env("SYMK_EXCLUDE", _split_tags, frozenset())
    if known is not None and tags:
        known = set(known)
        unknown = sorted(tags - known)
        if unknown:
            raise ArgumentError(
                f"SYMK_EXCLUDE names unknown pass tag{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} (got {os.environ.get('SYMK_EXCLUDE')!r}); "
                f"known tags: {', '.join(sorted(known))}")
    return tags


def num_threads() -> int:
    """``SYMK_NUM_THREADS``: threads sharing a large kernel's outer loop (default: cores)."""
    return num_threads_set() or os.cpu_count() or 1


def num_threads_set() -> int:
    """``SYMK_NUM_THREADS`` when set, else 0 (then symk's thread budget follows the cores that
    are free, see ``symk.runtime.threads``)."""
    return _env("SYMK_NUM_THREADS", _parse_threads, 0)


def native_scan_loop() -> bool:
    """``SYMK_NATIVE_SCAN_LOOP`` (default 1; 0: a scan's time loop runs in Python even when
    its body is one native segment, see ``symk.runtime.scan_loop``); read at every loop."""
    return _env("SYMK_NATIVE_SCAN_LOOP", _parse_bool, True)


def scan_blas_threads() -> int:
    """``SYMK_SCAN_BLAS_THREADS``: BLAS threads inside a loop's steps (default 1, 0: leave
    BLAS as configured)."""
    return _env("SYMK_SCAN_BLAS_THREADS", _parse_scan_threads, 1)


def cblas_enabled() -> bool:
    """``SYMK_CBLAS``: call numpy's bundled CBLAS for in-place GEMMs (default on)."""
    return _env("SYMK_CBLAS", _parse_bool, True)


def onednn_enabled() -> bool:
    """``SYMK_ONEDNN``: run float32 CPU convolutions on oneDNN when it is installed (default
    on; 0: symk's im2col + BLAS path)."""
    return _env("SYMK_ONEDNN", _parse_bool, True)


def native_driver() -> bool:
    """``SYMK_NATIVE_DRIVER``: on ``cpu``, run runs of native steps from one generated driver
    call (default on; off: one Python step per kernel, as before the driver)."""
    return _env("SYMK_NATIVE_DRIVER", _parse_bool, True)


def cache_enabled() -> bool:
    """``SYMK_CACHE``: the disk cache of object code and plans (default on)."""
    return _env("SYMK_CACHE", _parse_bool, True)


def cache_dir() -> str | None:
    """``SYMK_CACHE_DIR`` (default ``~/.cache/symk``), or None when ``SYMK_CACHE`` is off.
    The directory is not checked here; see ``symk.runtime.cache.cache_dir``."""
    if not cache_enabled():
        return None
    return os.environ.get("SYMK_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "symk")


def dump_dir() -> str | None:
    """``SYMK_DUMP_DIR``: where compilations write their passes, schedule and IR (unset: no
    dumps)."""
    return os.environ.get("SYMK_DUMP_DIR") or None


def trace_rewrites() -> bool:
    """``SYMK_TRACE_REWRITES``: log every rewrite that fires (default off)."""
    return _env("SYMK_TRACE_REWRITES", _parse_bool, False)


load()
