"""Every public function of Keras 2.3.1's TensorFlow backend, and of ``keras/backend/common.py``
(which Keras's backend module re-exports: epsilon, floatx, image_data_format, their setters,
...), is in ``symk.backend`` with Keras's parameter names in Keras's order and the same default
values; symk may add trailing parameters with defaults (and give a default where Keras has
none).  Keras's source is read with ``ast`` from the installed package, which is never imported
(no keras or TensorFlow import); skipped when keras is not installed.  Also the Keras 1 names
kept by common.py (``image_dim_ordering``, ``set_image_dim_ordering``) and calls by keyword."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError

_NO_DEFAULT = object()


class KerasSignature(NamedTuple):
    params: list[tuple[str, Any]]  # (name, default or _NO_DEFAULT), positional-or-keyword
    vararg: str | None
    kwonly: list[tuple[str, Any]]
    kwarg: str | None


def _keras_backend_dir() -> Path | None:
    spec = importlib.util.find_spec("keras")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "backend"
    return path if (path / "tensorflow_backend.py").is_file() else None


def _default(node: ast.expr | None) -> Any:
    if node is None:
        return _NO_DEFAULT
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)  # a non-literal default: compared as text (none today)


def _public_functions(path: Path) -> dict[str, KerasSignature]:
    out = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            a = node.args
            pos = a.posonlyargs + a.args
            defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
            out[node.name] = KerasSignature(
                [(p.arg, _default(d)) for p, d in zip(pos, defaults)],
                a.vararg.arg if a.vararg else None,
                [(p.arg, _default(d)) for p, d in zip(a.kwonlyargs, a.kw_defaults)],
                a.kwarg.arg if a.kwarg else None)
    return out


_DIR = _keras_backend_dir()
_FUNCTIONS: dict[str, KerasSignature] = {}
if _DIR is not None:
    _FUNCTIONS = {**_public_functions(_DIR / "common.py"),
                  **_public_functions(_DIR / "tensorflow_backend.py")}

pytestmark = pytest.mark.skipif(_DIR is None, reason="keras is not installed (pip install -e "
                                                      "'.[keras]'): no Keras source to compare")


def _mismatches(name: str, keras: KerasSignature) -> list[str]:
    fn = getattr(K, name, None)
    if fn is None:
        return [f"K.{name} is missing"]
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        return [f"K.{name} has no signature: {e}"]
    P = inspect.Parameter
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params}
    has_var = any(p.kind == P.VAR_POSITIONAL for p in params)
    has_kw = any(p.kind == P.VAR_KEYWORD for p in params)
    names = [p.name for p in positional[:len(keras.params)]]
    if names != [n for n, _ in keras.params]:
        return [f"parameters {names}, Keras has {[n for n, _ in keras.params]}"]
    problems = []
    for (pname, default), p in zip(keras.params, positional):
        if default is not _NO_DEFAULT and p.default is P.empty:
            problems.append(f"{pname} has no default (Keras: {default!r})")
        elif default is not _NO_DEFAULT and not _same(default, p.default):
            problems.append(f"{pname} defaults to {p.default!r} (Keras: {default!r})")
    for p in positional[len(keras.params):]:
        if p.default is P.empty:
            problems.append(f"extra parameter {p.name} has no default")
    for pname, default in keras.kwonly:
        p = by_name.get(pname)
        if p is None and not has_kw:
            problems.append(f"no keyword-only parameter {pname}")
        elif p is not None and default is not _NO_DEFAULT and not _same(default, p.default):
            problems.append(f"{pname} defaults to {p.default!r} (Keras: {default!r})")
    for p in params:
        if p.kind == P.KEYWORD_ONLY and p.default is P.empty \
                and p.name not in dict(keras.kwonly):
            problems.append(f"extra keyword-only parameter {p.name} has no default")
    if keras.vararg and not has_var:
        problems.append(f"no *{keras.vararg}")
    if keras.kwarg and not has_kw:
        problems.append(f"no **{keras.kwarg}")
    return problems


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, float) and a == b)


def test_keras_source_found():
    # guards against a silently empty parametrization below
    assert len(_FUNCTIONS) > 150
    assert {"tile", "repeat", "is_sparse", "set_epsilon", "set_floatx",
            "set_image_data_format", "image_dim_ordering"} <= set(_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(_FUNCTIONS))
def test_signature_matches_keras(name):
    problems = _mismatches(name, _FUNCTIONS[name])
    assert not problems, (f"K.{name}{inspect.signature(getattr(K, name, lambda: None))} vs "
                          f"Keras: " + "; ".join(problems))


def test_keyword_calls_with_keras_names():
    x = K.variable(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(K.eval(K.tile(x, n=2)), np.tile(np.arange(6.0).reshape(2, 3),
                                                                  (1, 2)))
    assert K.int_shape(K.repeat(x, n=4)) == (2, 4, 3)
    assert K.is_sparse(tensor=x) is False
    K.set_floatx(floatx="float64")
    assert K.floatx() == "float64"
    K.set_epsilon(e=1e-4)
    assert K.epsilon() == 1e-4
    K.set_image_data_format(data_format="channels_first")
    assert K.image_data_format() == "channels_first"
    with pytest.raises(ArgumentError, match="floatx"):
        K.set_floatx(floatx="float8")


def test_image_dim_ordering_maps_onto_image_data_format():
    K.set_image_data_format("channels_last")
    assert K.image_dim_ordering() == "tf"
    K.set_image_dim_ordering("th")
    assert K.image_data_format() == "channels_first" and K.image_dim_ordering() == "th"
    K.set_image_dim_ordering(dim_ordering="tf")
    assert K.image_data_format() == "channels_last" and K.image_dim_ordering() == "tf"
    for bad in ("channels_first", "TH", None):
        with pytest.raises(ValueError, match="dim_ordering"):  # ArgumentError is a ValueError
            K.set_image_dim_ordering(bad)
    assert K.image_data_format() == "channels_last"
