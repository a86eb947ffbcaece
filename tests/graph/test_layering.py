"""symk's layers import only downward: errors/config/debug <- graph <- passes <- codegen <-
runtime <- backend <- distributed, keras_compat <- the top (``symk``, ``symk.compiler``).

Read from the source with ``ast``: every import counts, at module level or inside a function
(a lazy import is still a dependency), and ``importlib.import_module`` of a literal name.  So
the graph layer is on no import cycle with the layers above it, and the cpu device's extern
modules (conv, scan, sparse) are not imported by the device they register into.  Also checked
in a fresh process: ``Tensor.eval`` and a list of tensors as an operand (which call ``K.eval``
and ``K.stack``, installed by the backend) behave as before."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import symk
from tests.fresh_python import fresh_python

SYMK = Path(symk.__file__).parent

#: the layers: the first part of a module's name under ``symk`` (``""``: the package itself),
#: the modules every layer may use (``base``) and the ones above every layer (``top``) grouped
LAYERS = {"errors": "base", "config": "base", "debug": "base", "version": "base",
          "": "top", "compiler": "top", "demo": "top", "__main__": "top"}

#: the rank of each layer: a module imports modules of its own layer or of a lower rank
RANKS = {"base": 0, "graph": 1, "passes": 2, "codegen": 3, "runtime": 4, "backend": 5,
         "distributed": 6, "keras_compat": 6, "top": 7}

#: imports against the layering that exist for reasons outside the layers' code, each with why
KNOWN_UPWARD: set[tuple[str, str]] = set()


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for every module of symk."""
    out = {}
    for path in SYMK.rglob("*.py"):
        parts = ["symk", *path.relative_to(SYMK).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _deepest(name: str) -> str | None:
    """The symk module an import of ``name`` loads last (``symk.a.b`` for ``symk.a.b.f``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules():
            return ".".join(parts[:i])
    return None


@cache
def imports_of(name: str) -> frozenset[str]:
    """The symk modules ``name`` imports anywhere in its source."""
    path, is_pkg = modules()[name]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([node.module] if node.module else []))
            # ``from symk import config`` imports symk.config; ``from symk import x``, symk
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base
                       for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        for t in targets:
            if t == "symk" or t.startswith("symk."):
                found = _deepest(t)
                if found is not None and found != name:
                    out.add(found)
    return frozenset(out)


def layer(name: str) -> str:
    first = name.split(".")[1] if "." in name else ""
    return LAYERS.get(first, first)


def _cycles(names: set[str]) -> list[set[str]]:
    """The import cycles (strongly connected components of more than one module) among
    ``names``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in imports_of(v) & names:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(names):
        if v not in index:
            visit(v)
    return out


def test_the_reader_sees_lazy_and_relative_imports():
    assert set(RANKS) >= {layer(m) for m in modules()}, "a new layer needs a rank here"
    # function-level imports count
    assert "symk.backend._function" in imports_of("symk.compiler")
    assert "symk.runtime.devices" in imports_of("symk.compiler")
    # ``from symk import config`` is symk.config, not the package
    assert "symk.config" in imports_of("symk.passes.registry")
    assert "symk" not in imports_of("symk.passes.registry")


def test_layers_import_only_downward():
    upward = {(m, t) for m in modules() for t in imports_of(m)
              if layer(t) != layer(m) and RANKS[layer(t)] >= RANKS[layer(m)]}
    assert upward == KNOWN_UPWARD


@pytest.mark.parametrize("lower,above", [
    ("graph", ("passes", "codegen", "runtime", "backend", "distributed", "keras_compat")),
    ("passes", ("codegen", "runtime", "backend")),
    ("codegen", ("runtime",)),
])
def test_a_layer_never_imports_the_layers_above_it(lower: str, above: tuple[str, ...]):
    bad = sorted(f"{m} -> {t}" for m in modules() if layer(m) == lower
                 for t in imports_of(m) if layer(t) in above)
    assert bad == []


def test_the_graph_layer_is_on_no_import_cycle_with_another_layer():
    for cycle in _cycles(set(modules())):
        layers = {layer(m) for m in cycle}
        assert "graph" not in layers or layers == {"graph"}, sorted(cycle)


def test_the_runtime_has_no_import_cycle():
    """Not even inside the runtime: the compile stage (native.py) sits below the plans that run
    its code (cpu.py), and conv_cpu, scan_cpu and sparse_cpu build on cpu.py and register into
    externs; the device table imports them when the cpu device makes its first plan."""
    runtime = {m for m in modules() if layer(m) == "runtime"}
    assert [sorted(c) for c in _cycles(runtime)] == []
    assert not imports_of("symk.runtime.cpu") & {"symk.runtime.conv_cpu",
                                                  "symk.runtime.scan_cpu",
                                                  "symk.runtime.sparse_cpu"}


def test_tensor_eval_and_stacking_work_in_a_fresh_process():
    code = ("import numpy as np\n"
            "from symk import backend as K\n"
            "a = K.variable(np.array([1.0, 2.0], np.float32))\n"
            "print(a.eval().tolist(), (K.constant(1.0) + [a, a]).eval().tolist())\n"
            "try:\n"
            "    a + [a, K.variable(np.zeros(3, np.float32))]\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, str(e).splitlines()[0][:7])\n")
    assert fresh_python(code).splitlines() == ["[1.0, 2.0] [[2.0, 3.0], [2.0, 3.0]]",
                                     "ShapeError K.stack"]
