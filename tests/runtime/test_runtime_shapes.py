"""Run-time shape and value checks of compiled functions: a kernel is never handed an array
smaller than what it indexes, fed values that do not fit are rejected, and every device agrees
with the ``interp`` reference on what it accepts.  Every rejection is a ``SymkError`` subclass
naming the K function (or op), the tensor and the user's line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symk import backend as K
from symk.errors import InputError, ShapeError
from tests.harness import available_devices
from tests.source_lines import marker_line

ROOT = Path(__file__).resolve().parents[2]
DEVICES = available_devices()
DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "bool"]


def line_of(marker: str) -> str:
    return marker_line(__file__, marker, "line_of(")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows", [1000, 100_000])
def test_none_dims_fed_different_sizes_raise(device: str, rows: int) -> None:
    x = K.placeholder((None, 4), name="x")
    y = K.placeholder((None, 4), name="y")
    f = K.function([x, y], [x * y + 1.0], device=device)  # MARK-xy
    with pytest.raises(ShapeError) as e:
        f([np.ones((rows, 4), "f4"), np.ones((1, 4), "f4")])
    msg = str(e.value)
    assert "'y'" in msg and "(1, 4)" in msg and line_of("MARK-xy") in msg, msg
    # the same function still runs on agreeing sizes
    out = f([np.full((3, 4), 2, "f4"), np.full((3, 4), 3, "f4")])[0]
    np.testing.assert_array_equal(out, np.full((3, 4), 7, "f4"))


@pytest.mark.parametrize("device", DEVICES)
def test_none_dim_against_static_dim_raises(device: str) -> None:
    c = K.placeholder((3, 4), name="c")
    d = K.placeholder((None, 4), name="d")
    f = K.function([c, d], [K.exp(c) + d], device=device)
    for rows in (1, 2, 5):
        with pytest.raises(ShapeError, match="'d'"):
            f([np.ones((3, 4), "f4"), np.ones((rows, 4), "f4")])


@pytest.mark.parametrize("device", DEVICES)
def test_reduction_and_plan_cache_hit_are_checked(device: str) -> None:
    def build():
        x = K.placeholder((None, 5), name="x")
        w = K.placeholder((None, 5), name="w")
        return K.function([x, w], [K.sum(K.tanh(x) * w, axis=1)], device=device)

    build()
    f = build()  # the second one comes from the plan cache
    with pytest.raises(ShapeError, match="'w'"):
        f([np.ones((6, 5), "f4"), np.ones((2, 5), "f4")])
    got = f([np.ones((2, 5), "f4"), np.ones((2, 5), "f4")])[0]
    np.testing.assert_allclose(got, np.tanh(1.0) * 5 * np.ones(2), rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_runtime_reshape_error_names_k_reshape(device: str) -> None:
    x = K.placeholder((None, 3))
    f = K.function([x], [K.reshape(x, (-1, 4))], device=device)  # MARK-reshape
    with pytest.raises(ShapeError) as e:
        f([np.ones((3, 3), "f4")])
    msg = str(e.value)
    assert "K.reshape" in msg and line_of("MARK-reshape") in msg and "(3, 3)" in msg, msg
    assert "(-1, 4)" in msg, msg  # the target shape as written


@pytest.mark.parametrize("device", DEVICES)
def test_batch_dot_different_batch_sizes(device: str) -> None:
    a = K.placeholder((None, 3, 4))
    b = K.placeholder((None, 4, 5))
    f = K.function([a, b], [K.batch_dot(a, b, axes=(2, 1))], device=device)  # MARK-bd
    with pytest.raises(ShapeError) as e:
        f([np.ones((2, 3, 4), "f4"), np.ones((3, 4, 5), "f4")])
    assert "K.batch_dot" in str(e.value) and line_of("MARK-bd") in str(e.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src", DTYPES)
def test_cast_to_float16_from_every_dtype(device: str, src: str) -> None:
    rng = np.random.default_rng(1)
    if src == "bool":
        v = rng.random(257) < 0.5
    elif src.startswith("float"):
        v = np.concatenate([rng.standard_normal(200) * 10.0 ** rng.integers(-9, 6, 200),
                            [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 1e-40,
                             2.0 ** -25, 2.0 ** -25 * 1.0000001, 1.0 + 2.0 ** -11]])
        v = v.astype(src) if src != "float16" else np.clip(v, -6e4, 6e4).astype(src)
    else:
        info = np.iinfo(src)
        v = np.concatenate([rng.integers(info.min, info.max, 200, dtype=src, endpoint=True),
                            np.array([info.min, info.max, 0, 1], src)])
    x = K.placeholder((None,), dtype=src)
    f = K.function([x], [K.cast(x, "float16")], device=device)
    got = f([v])[0]
    with np.errstate(all="ignore"):
        want = v.astype("float16")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)  # bit-exact, NaNs in the same places


@pytest.mark.parametrize("device", DEVICES)
def test_update_cannot_change_a_variable_shape(device: str) -> None:
    v = K.variable(np.zeros((4, 3)), name="V")
    other = K.variable(np.zeros(2), name="other")
    x = K.placeholder((None, 3))
    f = K.function([x], [], updates=[(other, other + 1.0), (v, x)], device=device)
    with pytest.raises(ShapeError, match="'V(_[0-9]+)?'.*\\(7, 3\\).*\\(4, 3\\)"):
        f([np.ones((7, 3))])
    # atomic: neither variable changed
    assert K.get_value(v).shape == (4, 3) and not K.get_value(other).any()
    f([np.ones((4, 3))])
    assert K.get_value(v).sum() == 12 and (K.get_value(other) == 1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [[2 ** 40, 1], [1e10, 1.0], np.array([2 ** 32 - 1, 0], np.uint32),
                                   [-(2 ** 31) - 1, 0], [np.inf, 0.0]])
def test_int_inputs_out_of_range_are_rejected(device: str, value) -> None:
    x = K.placeholder((2,), dtype="int32", name="ids")
    f = K.function([x], [x + 1], device=device)
    with pytest.raises(InputError, match="ids"):
        f([np.asarray(value)])
    np.testing.assert_array_equal(f([np.array([2 ** 31 - 2, -(2 ** 31)])])[0],
                                  [2 ** 31 - 1, -(2 ** 31) + 1])


@pytest.mark.parametrize("device", DEVICES)
def test_complex_inputs_are_rejected(device: str) -> None:
    x = K.placeholder((2,), name="z")
    f = K.function([x], [x * 2.0], device=device)
    with pytest.raises(InputError, match="complex"):
        f([np.array([1 + 2j, 0])])


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_over_an_empty_axis_agrees(device: str) -> None:
    x = K.placeholder((2, None))
    f = K.function([x], [K.softmax(x)], device=device)
    out = f([np.ones((2, 0), "f4")])[0]
    assert out.shape == (2, 0) and out.dtype == np.float32


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="the CUDA emulator needs g++ (C++17)")
def test_cuda_emulator_checks_kernel_inputs() -> None:
    from tests.cuda_emulator.emu_plan import EmuSession

    x = K.placeholder((None, 4), name="x")
    y = K.placeholder((None, 4), name="y")
    sess = EmuSession()
    f = sess.function([x.node, y.node], [(x * y + 1.0).node])
    sess.compile()
    with pytest.raises(ShapeError, match="'y'"):
        f([np.ones((1000, 4), "f4"), np.ones((1, 4), "f4")])
    out = f([np.full((2, 4), 2, "f4"), np.full((2, 4), 3, "f4")])[0]
    np.testing.assert_array_equal(out, np.full((2, 4), 7, "f4"))


def test_op_suite_graphs_with_disagreeing_sizes(tmp_path) -> None:
    """Every op-suite graph with a ``None`` dim, fed sizes that disagree, on every device: the
    same ``SymkError``-or-result as ``interp``, in a subprocess so a crash names its case."""
    from tests.codegen.cuda.corpus_plugin import op_suite_cases

    cases = op_suite_cases(tmp_path)
    out = tmp_path / "mismatch.jsonl"
    devices = ",".join(d for d in DEVICES if d != "interp") or "interp"
    r = subprocess.run([sys.executable, "-m", "tests.runtime.mismatch_runner", str(out),
                        str(cases), devices], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    recs = [json.loads(ln) for ln in out.read_text().splitlines()] if out.exists() else []
    started = [x["started"] for x in recs if "started" in x]
    done = [x["done"] for x in recs if "done" in x]
    assert r.returncode == 0 and done, (
        f"the runner died (exit {r.returncode}) at {started[-1] if started else '?'}:\n"
        f"{r.stderr[-3000:]}")
    errors = [x for x in recs if "error" in x]
    assert not errors, f"{len(errors)} variants disagree:\n" + "\n".join(
        f"{x['error']}: {x['why']}" for x in errors[:8])
    counts = done[0]
    assert counts["variants"] >= 300 and counts["rejected"] >= 200, counts

