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


# ---------------------------------------------------------------- the other SYMK_* variables

def _registry_tags():
    from symk.passes import registry

    return registry.excluded_tags()


GETTERS = {
    "SYMK_DEBUG": config.debug_level,
    "SYMK_OPT": config.opt_level,
    "SYMK_EXCLUDE": _registry_tags,
    "SYMK_NUM_THREADS": config.num_threads,
    "SYMK_SCAN_BLAS_THREADS": config.scan_blas_threads,
    "SYMK_CACHE": config.cache_enabled,
    "SYMK_CBLAS": config.cblas_enabled,
    "SYMK_TRACE_REWRITES": config.trace_rewrites,
}


@pytest.mark.parametrize("var,value,accepted", [
    ("SYMK_DEBUG", "x", "0 (quiet) to 5"),
    ("SYMK_DEBUG", "-1", "0 (quiet) to 5"),
    ("SYMK_DEBUG", "6", "0 (quiet) to 5"),
    ("SYMK_DEBUG", "1.5", "0 (quiet) to 5"),
    ("SYMK_OPT", "7", "0, 1 or 2"),
    ("SYMK_OPT", "-1", "0, 1 or 2"),
    ("SYMK_OPT", "O2", "0, 1 or 2"),
    ("SYMK_EXCLUDE", "nosuchpass", "canonicalize"),
    ("SYMK_EXCLUDE", "fusion:nosuchpass:stabilize", "fusion"),
    ("SYMK_NUM_THREADS", "-1", "positive integer"),
    ("SYMK_NUM_THREADS", "0", "positive integer"),
    ("SYMK_NUM_THREADS", "abc", "positive integer"),
    ("SYMK_SCAN_BLAS_THREADS", "many", "integer >= 0"),
    ("SYMK_SCAN_BLAS_THREADS", "-2", "integer >= 0"),
    ("SYMK_CACHE", "maybe", "true/yes/on/0/false/no/off"),
    ("SYMK_CACHE", "2", "true/yes/on/0/false/no/off"),
    ("SYMK_CBLAS", "sometimes", "true/yes/on/0/false/no/off"),
    ("SYMK_TRACE_REWRITES", "verbose", "true/yes/on/0/false/no/off"),
])
def test_bad_environment_value_is_a_clear_error(monkeypatch, var, value, accepted):
    monkeypatch.setenv(var, value)
    with pytest.raises(ArgumentError) as e:
        GETTERS[var]()
    msg = str(e.value)
    assert var in msg and repr(value) in msg and accepted in msg
    assert isinstance(e.value, SymkError) and isinstance(e.value, ValueError)
    with pytest.raises(ArgumentError):  # errors are not remembered as values
        GETTERS[var]()


def test_unknown_pass_tag_lists_the_known_tags(monkeypatch):
    monkeypatch.setenv("SYMK_EXCLUDE", "nosuchpass:fusion")
    with pytest.raises(ArgumentError) as e:
        _registry_tags()
    msg = str(e.value)
    assert "'nosuchpass'" in msg and "'fusion'" not in msg.split("known")[0].split("(got")[0]
    for tag in ("fusion", "stabilize", "blas", "O1", "O2", "required", "collectives"):
        assert tag in msg.split("known tags:")[1]


@pytest.mark.parametrize("var,value,want", [
    ("SYMK_DEBUG", "", 0), ("SYMK_DEBUG", "0", 0), ("SYMK_DEBUG", "3", 3),
    ("SYMK_DEBUG", " 2 ", 2), ("SYMK_DEBUG", "5", 5),
    ("SYMK_OPT", "", 2), ("SYMK_OPT", "0", 0), ("SYMK_OPT", "1", 1), ("SYMK_OPT", "2", 2),
    ("SYMK_EXCLUDE", "", set()), ("SYMK_EXCLUDE", "fusion", {"fusion"}),
    ("SYMK_EXCLUDE", "stabilize:O2", {"stabilize", "O2"}),
    ("SYMK_EXCLUDE", ":blas::", {"blas"}),
    ("SYMK_NUM_THREADS", "3", 3), ("SYMK_NUM_THREADS", "1", 1),
    ("SYMK_SCAN_BLAS_THREADS", "", 1), ("SYMK_SCAN_BLAS_THREADS", "0", 0),
    ("SYMK_SCAN_BLAS_THREADS", "4", 4),
    ("SYMK_CBLAS", "", True), ("SYMK_CBLAS", "0", False), ("SYMK_CBLAS", "On", True),
    ("SYMK_TRACE_REWRITES", "", False), ("SYMK_TRACE_REWRITES", "1", True),
    ("SYMK_TRACE_REWRITES", "no", False),
    *[("SYMK_CACHE", v, True) for v in ("", "1", "true", "TRUE", "Yes", "on", "ON")],
    *[("SYMK_CACHE", v, False) for v in ("0", "false", "False", "no", "NO", "off", "Off")],
])
def test_good_environment_values(monkeypatch, var, value, want):
    monkeypatch.setenv(var, value)
    assert GETTERS[var]() == want
    assert GETTERS[var]() == want  # the remembered parse


def test_defaults_and_paths(monkeypatch, tmp_path):
    import os

    for v in GETTERS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.delenv("SYMK_DUMP_DIR", raising=False)
    monkeypatch.delenv("SYMK_CACHE_DIR", raising=False)
    assert (config.debug_level(), config.opt_level(), config.excluded_tags()) == (0, 2, set())
    assert config.num_threads() == (os.cpu_count() or 1)
    assert config.scan_blas_threads() == 1
    assert config.cache_enabled() and config.cblas_enabled() and not config.trace_rewrites()
    assert config.dump_dir() is None
    assert config.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "symk")
    monkeypatch.setenv("SYMK_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SYMK_DUMP_DIR", str(tmp_path / "dumps"))
    assert config.cache_dir() == str(tmp_path)
    assert config.dump_dir() == str(tmp_path / "dumps")
    monkeypatch.setenv("SYMK_CACHE", "off")
    assert config.cache_dir() is None
    monkeypatch.setenv("SYMK_DUMP_DIR", "")
    assert config.dump_dir() is None


def test_value_changes_take_effect_at_the_next_call(monkeypatch):
    monkeypatch.setenv("SYMK_DEBUG", "1")
    assert config.debug_level() == 1
    monkeypatch.setenv("SYMK_DEBUG", "4")
    assert config.debug_level() == 4
    monkeypatch.delenv("SYMK_DEBUG")
    assert config.debug_level() == 0


@pytest.mark.parametrize("var,value", [
    ("SYMK_OPT", "7"), ("SYMK_EXCLUDE", "nosuchpass"), ("SYMK_DEBUG", "x"),
])
def test_bad_value_stops_k_function(monkeypatch, var, value):
    x = K.placeholder((3,))
    monkeypatch.setenv(var, value)
    with pytest.raises(ArgumentError, match=var):
        K.function([x], [x * 2.0 + 1.0], device="cpu")


@pytest.mark.parametrize("device", ["banana", "gpu", "tpu", "CPU"])
def test_k_function_rejects_unknown_devices(device):
    x = K.placeholder((3,))
    with pytest.raises(ArgumentError) as e:
        K.function([x], [x + 1.0], device=device)
    msg = str(e.value)
    assert "K.function" in msg and repr(device) in msg
    assert all(repr(d) in msg for d in ("cpu", "interp", "cuda"))


@pytest.mark.parametrize("device", [None, "", "cpu", "interp"])
def test_k_function_accepts_known_devices(device):
    x = K.placeholder((3,))
    f = K.function([x], [x + 1.0], device=device)
    np.testing.assert_allclose(f([np.arange(3, dtype=np.float32)])[0], [1, 2, 3])


def test_only_config_reads_the_environment():
    """The project rule: every environment variable is read in symk/config.py."""
    import re
    from pathlib import Path

    root = Path(config.__file__).parent
    offenders = [f"{p.relative_to(root)}:{i}" for p in sorted(root.rglob("*.py"))
                 if p.name != "config.py" or p.parent != root
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"os\.environ|getenv\(", line)]
    assert not offenders


def test_every_variable_is_documented():
    import re
    from pathlib import Path

    root = Path(config.__file__).parent
    readme = (root.parent / "README.md").read_text()
    names = set(re.findall(r"\bSYMK_[A-Z_]+\b", (root / "config.py").read_text()))
    names.discard("SYMK_")
    assert {"SYMK_DEBUG", "SYMK_CBLAS", "SYMK_SCAN_BLAS_THREADS"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing
