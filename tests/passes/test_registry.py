"""The pass registry and the pipeline's debugging output: ``SYMK_OPT`` levels, ``SYMK_EXCLUDE``
tags, custom passes in position order, per-pass timings and rule statistics, ``SYMK_DEBUG=3``
and ``SYMK_DUMP_DIR`` dumps."""

from __future__ import annotations

import os

import numpy as np
import pytest

from symk import backend as K
from symk.errors import ArgumentError
from symk.graph import build as gb
from symk.passes import registry
from symk.passes.pipeline import optimize
from tests.passes.common import ph


def _names(level=None, exclude=None) -> list[str]:
    return [p.name for p in registry.select(level, exclude)]


def test_levels_select_the_documented_passes():
    assert _names(0, set()) == ["collectives"]
    assert _names(1, set()) == ["canonicalize", "stabilize", "collectives"]
    assert _names(2, set()) == ["canonicalize", "stabilize", "specialize", "blas", "collectives"]
    positions = [p.position for p in registry.select(2, set())]
    assert positions == sorted(positions)
    assert not registry.fusion_enabled(0, set())
    assert registry.fusion_enabled(1, set()) and registry.fusion_enabled(2, set())


def test_environment_variables(monkeypatch):
    monkeypatch.delenv("SYMK_OPT", raising=False)
    monkeypatch.delenv("SYMK_EXCLUDE", raising=False)
    assert registry.opt_level() == 2 and _names() == _names(2, set())
    monkeypatch.setenv("SYMK_OPT", "1")
    assert _names() == _names(1, set())
    monkeypatch.setenv("SYMK_EXCLUDE", "stabilize:O2")
    assert _names(2) == ["canonicalize", "collectives"]
    monkeypatch.setenv("SYMK_EXCLUDE", "fusion")
    assert not registry.fusion_enabled(2) and _names(2) == _names(2, set())
    monkeypatch.setenv("SYMK_OPT", "3")
    with pytest.raises(ArgumentError, match="SYMK_OPT"):
        registry.opt_level()


def _chain_function():
    x = K.placeholder((4, 3))
    y = K.exp(x) * 2.0 + 1.0
    y = K.tanh(y * 1.0) - K.sigmoid(y)
    return x, y


def _kernel_count(monkeypatch, **env) -> tuple[int, list[str]]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    x, y = _chain_function()
    f = K.function([x], [y])
    xs = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    e = np.exp(xs.astype(np.float64)) * 2 + 1
    np.testing.assert_allclose(f([xs])[0], np.tanh(e) - 1 / (1 + np.exp(-e)), rtol=1e-5,
                               atol=1e-6)
    names = [n.op.name for k in f.fn.schedule.kernels for n in k.nodes]
    return len(f.fn.schedule.kernels), names


def test_exclude_fusion_gives_one_kernel_per_op(monkeypatch):
    n, names = _kernel_count(monkeypatch)
    assert n == 1 and "add" in names
    n, names = _kernel_count(monkeypatch, SYMK_EXCLUDE="fusion")
    assert n == len(names) == 6  # exp mul add tanh sigmoid sub (x * 1 is gone)
    n, names = _kernel_count(monkeypatch, SYMK_OPT="0")
    assert n == len(names) == 7  # nothing rewritten, nothing fused


def test_excluded_passes_do_not_run():
    x = ph((3, 4))
    y = gb.log(apply_softmax(gb.add(x, -0.0)))
    # the later rule sets include the canonical rules, so all three must go to keep x + -0
    assert optimize([y], level=2, exclude={"canonicalize", "O1", "O2"}).roots == [y]
    (out,) = optimize([y], level=2, exclude={"stabilize"}).roots
    assert out is gb.log(apply_softmax(x))
    (out,) = optimize([y], level=2, exclude=set()).roots
    assert out.op.name == "log_softmax"


def test_timings_and_rule_statistics():
    x = ph((4, 5))
    y = gb.log(apply_softmax(gb.add(x, -0.0)))
    opt = optimize([y], name="stats", level=2, exclude=set())
    assert set(opt.ctx.timings) == {"canonicalize", "stabilize", "specialize", "blas",
                                    "collectives", "fusion"}
    assert all(t >= 0 for t in opt.ctx.timings.values())
    assert opt.ctx.stats["add_zero"] == 1 and opt.ctx.stats["log_softmax"] == 1


def apply_softmax(x):
    from symk.graph.node import apply

    return apply("softmax", [x], axis=1)


def test_custom_pass_runs_in_position_order(monkeypatch):
    monkeypatch.setattr(registry, "PASSES", list(registry.PASSES))
    seen: list[str] = []

    @registry.register_pass("probe", 25, ("O2", "probe"))
    def probe(roots, ctx):
        seen.append([n.op.name for n in roots][0])
        return roots

    assert _names(2, set()) == ["canonicalize", "stabilize", "probe", "specialize", "blas",
                                "collectives"]
    assert "probe" not in _names(1, set()) and "probe" not in _names(2, {"probe"})
    x = ph((2, 3))
    opt = optimize([gb.log(apply_softmax(x))], level=2, exclude=set())
    assert seen == ["log_softmax"]  # after stabilize
    assert "probe" in opt.ctx.timings


def test_debug_3_prints_each_pass_and_the_schedule(monkeypatch, capsys):
    monkeypatch.setenv("SYMK_DEBUG", "3")
    x, y = _chain_function()
    K.function([x], [y], name="dbg3")
    err = capsys.readouterr().err
    for tag in ("00_input", "01_canonicalize", "02_stabilize", "03_specialize", "04_blas",
                "05_collectives"):
        assert f"'dbg3' after {tag}" in err, tag
    assert "'dbg3' schedule" in err and "kernel E_4_3_" in err
    assert "passes for 'dbg3'" in err  # the per-pass timings (level 2 and up)
    monkeypatch.setenv("SYMK_DEBUG", "0")
    K.function([x], [y], name="quiet")
    assert "quiet" not in capsys.readouterr().err


def test_dump_dir_writes_one_file_per_pass(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMK_DUMP_DIR", str(tmp_path))
    x, y = _chain_function()
    K.function([x], [y], name="my fn/1")
    (d,) = tmp_path.iterdir()
    files = sorted(os.listdir(d))  # (a compiling device adds its kernel IR and code)
    assert [f for f in files if f[:2].isdigit()] == [
        "00_input.txt", "01_canonicalize.txt", "02_stabilize.txt", "03_specialize.txt",
        "04_blas.txt", "05_collectives.txt"]
    assert {"graph.dot", "schedule.txt"} <= set(files)
    assert "add" in (d / "00_input.txt").read_text()
    assert "kernel E_4_3_" in (d / "schedule.txt").read_text()
    dot = (d / "graph.dot").read_text()
    assert dot.lstrip().startswith("digraph") and "tanh" in dot
    monkeypatch.setenv("SYMK_EXCLUDE", "stabilize")
    K.function([x], [y], name="second")
    (second,) = tmp_path.glob("second-*")
    assert (second / "04_collectives.txt").exists()
