"""Debugging output that does not mislead: ``SYMK_DUMP_DIR`` gives every compiled function its
own folder (``<name>-<hash>``: passes, schedule, kernel IR and module of that function only),
``K.eval``'s one-off functions stay out of it unless ``SYMK_DEBUG>=3``, and
``SYMK_TRACE_REWRITES`` re-runs the passes even when the plan cache holds the function."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from symk import backend as K


def _folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def _two_unnamed():
    x = K.placeholder((None, 8))
    f = K.function([x], [K.tanh(x) * 2.0 + 1.0, K.sum(K.exp(x), axis=1)], device="cpu")
    y = K.placeholder((None, 8))
    g = K.function([y], [K.sigmoid(y) - 3.0], device="cpu")
    return f, g


def test_two_unnamed_functions_get_two_folders(fresh, monkeypatch, tmp_path):
    root = tmp_path / "dumps"
    monkeypatch.setenv("SYMK_DUMP_DIR", str(root))
    f, g = _two_unnamed()
    folders = _folders(root)
    assert len(folders) == 2
    assert all(re.fullmatch(r"function-[0-9a-f]{8}", d.name) for d in folders)
    by_kernels = {}
    for d in folders:
        assert (d / "schedule.txt").exists() and (d / "00_input.txt").exists()
        assert (d / "graph.dot").exists() and (d / "module.ll").exists()
        kir = {p.stem for p in d.glob("*.kir")}
        # the schedule and the module of this folder name exactly its own kernels
        sched = (d / "schedule.txt").read_text()
        assert kir and all(k in sched for k in kir)
        module = (d / "module.ll").read_text()
        assert all(f"define void @{k}(" in module for k in kir)
        by_kernels[frozenset(kir)] = d
    assert set(by_kernels) == {frozenset(k["name"] for k in f.kernels),
                               frozenset(k["name"] for k in g.kernels)}
    assert "sigmoid" in (by_kernels[frozenset(k["name"] for k in g.kernels)]
                         / "00_input.txt").read_text()
    # the same functions again (a re-run of the script): the same two folders
    _two_unnamed()
    assert _folders(root) == folders


def test_named_function_and_its_scan_bodies(fresh, monkeypatch, tmp_path):
    root = tmp_path / "dumps"
    monkeypatch.setenv("SYMK_DUMP_DIR", str(root))
    x = K.placeholder((2, 4, 3))
    w = K.variable(np.full((3, 3), 0.1, np.float32))

    def step(xt, states):
        h = K.tanh(K.dot(xt, w) + states[0])
        return h, [h]

    last, _, _ = K.rnn(step, x, [K.variable(np.zeros((2, 3), np.float32))])
    K.function([x], [last], name="my rnn", device="cpu")([np.ones((2, 4, 3), np.float32)])
    names = [d.name for d in _folders(root)]
    assert [n for n in names if n.startswith("my_rnn-")] and \
        [n for n in names if n.startswith("scan_body-")]
    for d in _folders(root):
        assert (d / "schedule.txt").exists()


def test_k_eval_makes_no_folder_unless_debug_3(fresh, monkeypatch, tmp_path, capsys):
    root = tmp_path / "dumps"
    monkeypatch.setenv("SYMK_DUMP_DIR", str(root))
    v = K.variable(np.arange(3, dtype=np.float32))
    np.testing.assert_allclose(K.eval(K.exp(v) * 2.0), np.exp(np.arange(3)) * 2, rtol=1e-6)
    K.get_value(v)
    assert not root.exists() or not _folders(root)
    # SYMK_DEBUG=3 prints every compilation's passes, K.eval's included: then they are dumped
    monkeypatch.setenv("SYMK_DEBUG", "3")
    K.eval(K.exp(v) * 3.0)
    capsys.readouterr()
    (d,) = _folders(root)
    assert d.name.startswith("eval_") and (d / "schedule.txt").exists()


def test_trace_rewrites_reruns_the_passes_of_a_cached_function(fresh, optimize_calls,
                                                               monkeypatch, capsys):
    def build():
        x = K.placeholder((3,))
        return K.function([x], [K.exp(x + 0.0) * 1.0], device="cpu")

    build()
    build()  # a plan cache hit
    assert len(optimize_calls) == 1
    assert "rewrite" not in capsys.readouterr().err
    monkeypatch.setenv("SYMK_TRACE_REWRITES", "1")
    f = build()
    assert len(optimize_calls) == 2
    err = capsys.readouterr().err
    assert "[symk] rewrite " in err and "==>" in err
    np.testing.assert_allclose(f([np.zeros(3, np.float32)])[0], [1, 1, 1])
    monkeypatch.setenv("SYMK_TRACE_REWRITES", "0")
    build()  # the cache serves it again
    assert len(optimize_calls) == 2
