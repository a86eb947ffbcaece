"""Configuration precedence: built-in defaults < keras.json < SYMK_* environment < setters;
invalid values from any source are clear errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from symk import backend as K
from symk import config
from symk.errors import ArgumentError, SymkError

ENV = ("SYMK_FLOATX", "SYMK_EPSILON", "SYMK_IMAGE_DATA_FORMAT", "SYMK_DEVICE")


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """An isolated config: empty $KERAS_HOME, no SYMK_* variables, state restored after."""
    saved = dict(config._state)
    # when the real Keras has been imported by another test it owns the settings; hide it
    monkeypatch.delitem(sys.modules, "keras.backend.common", raising=False)
    for v in ENV:
        monkeypatch.delenv(v, raising=False)
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    config.load()
    yield home
    config._state.clear()
    config._state.update(saved)


def write_json(home, **fields):
    (home / "keras.json").write_text(json.dumps(fields))


def test_builtin_defaults(cfg):
    assert config.floatx() == "float32"
    assert config.epsilon() == 1e-7
    assert config.image_data_format() == "channels_last"
    assert K.floatx() == "float32" and K.epsilon() == 1e-7
    assert K.image_data_format() == "channels_last"
    assert K.backend() == "symk"


def test_keras_json_sets_defaults(cfg):
    write_json(cfg, floatx="float64", epsilon=1e-4, image_data_format="channels_first",
               backend="tensorflow")  # fields symk does not own are ignored
    config.load()
    assert K.floatx() == "float64"
    assert K.epsilon() == 1e-4
    assert K.image_data_format() == "channels_first"
    assert K.normalize_data_format(None) == "channels_first"
    assert K.placeholder((2,)).dtype == "float64"
    assert K.cast_to_floatx([1, 2]).dtype == np.float64


def test_keras_json_partial_fields_keep_defaults(cfg):
    write_json(cfg, epsilon=0.5)
    config.load()
    assert (K.floatx(), K.epsilon(), K.image_data_format()) == ("float32", 0.5, "channels_last")


def test_home_dot_keras_used_without_keras_home(cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text(json.dumps({"floatx": "float16"}))
    config.load()
    assert K.floatx() == "float16"


def test_environment_overrides_keras_json(cfg, monkeypatch):
    write_json(cfg, floatx="float64", epsilon=1e-4, image_data_format="channels_first")
    monkeypatch.setenv("SYMK_FLOATX", "float16")
    monkeypatch.setenv("SYMK_EPSILON", "0.001")
    config.load()
    assert K.floatx() == "float16"
    assert K.epsilon() == 0.001
    assert K.image_data_format() == "channels_first"  # still from keras.json
    monkeypatch.setenv("SYMK_IMAGE_DATA_FORMAT", "channels_last")
    config.load()
    assert K.image_data_format() == "channels_last"


def test_setters_override_environment_until_reload(cfg, monkeypatch):
    write_json(cfg, floatx="float64")
    monkeypatch.setenv("SYMK_FLOATX", "float16")
    monkeypatch.setenv("SYMK_IMAGE_DATA_FORMAT", "channels_first")
    config.load()
    K.set_floatx("float32")
    K.set_epsilon(1e-3)
    K.set_image_data_format("channels_last")
    assert (K.floatx(), K.epsilon(), K.image_data_format()) == ("float32", 1e-3, "channels_last")
    assert K.variable(np.zeros(2, np.float64)).dtype == "float32"
    config.load()  # a reload discards setter values
    assert (K.floatx(), K.epsilon(), K.image_data_format()) == ("float16", 1e-7, "channels_first")


@pytest.mark.parametrize("fields,needle", [
    ({"floatx": "float8"}, "float8"),
    ({"floatx": "int32"}, "int32"),
    ({"image_data_format": "channels_middle"}, "channels_middle"),
    ({"epsilon": "tiny"}, "tiny"),
])
def test_unknown_value_in_keras_json_is_a_clear_error(cfg, fields, needle):
    write_json(cfg, **fields)
    with pytest.raises(ArgumentError) as e:
        config.load()
    msg = str(e.value)
    assert needle in msg and "keras.json" in msg
    assert isinstance(e.value, SymkError) and isinstance(e.value, ValueError)


def test_malformed_keras_json_is_a_clear_error(cfg):
    (cfg / "keras.json").write_text("{floatx: float32")
    with pytest.raises(ArgumentError, match="keras.json"):
        config.load()
    (cfg / "keras.json").write_text("[1, 2]")
    with pytest.raises(ArgumentError, match="JSON object"):
        config.load()


@pytest.mark.parametrize("var,value", [
    ("SYMK_FLOATX", "double"), ("SYMK_EPSILON", "small"),
    ("SYMK_IMAGE_DATA_FORMAT", "nhwc"), ("SYMK_DEVICE", "tpu"),
])
def test_unknown_value_in_environment_is_a_clear_error(cfg, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ArgumentError) as e:
        config.load()
    assert var in str(e.value) and value in str(e.value)


def test_empty_environment_variable_is_ignored(cfg, monkeypatch):
    monkeypatch.setenv("SYMK_FLOATX", "")
    config.load()
    assert K.floatx() == "float32"


def test_setters_reject_unknown_values(cfg):
    with pytest.raises(ArgumentError, match="float7"):
        K.set_floatx("float7")
    with pytest.raises(ArgumentError, match="channels_middle"):
        K.set_image_data_format("channels_middle")
    with pytest.raises(ArgumentError):
        K.set_epsilon("not a number")
    with pytest.raises(ArgumentError, match="data_format"):
        K.normalize_data_format("NHWC")
    assert (K.floatx(), K.image_data_format()) == ("float32", "channels_last")
    assert K.normalize_data_format("Channels_First") == "channels_first"


def test_device_from_environment(cfg, monkeypatch):
    monkeypatch.setenv("SYMK_DEVICE", "interp")
    config.load()
    assert config.device() == "interp"
