"""Global settings: floatx, epsilon, image_data_format and the default device.

Precedence (lowest to highest): built-in defaults, ``$KERAS_HOME/keras.json`` (or
``~/.keras/keras.json``), ``SYMK_FLOATX`` / ``SYMK_EPSILON`` / ``SYMK_IMAGE_DATA_FORMAT`` /
``SYMK_DEVICE`` environment variables, then the setters.  When the real Keras is loaded, its
``keras.backend.common`` owns these settings (Keras's setters win over ours), so the getters
read from it and the setters write to it too.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from symk.errors import ArgumentError

_FLOATS = ("float16", "float32", "float64")
_FORMATS = ("channels_last", "channels_first")
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


def debug_level() -> int:
    try:
        return int(os.environ.get("SYMK_DEBUG", "0") or 0)
    except ValueError:
        return 0


load()
