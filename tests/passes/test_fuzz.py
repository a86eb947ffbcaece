"""Differential fuzzing of the pass pipeline: seeded random graphs (``tests/passes/fuzzgen.py``)
evaluated with passes and with none (``SYMK_OPT=0``), with zeros, infinities and NaNs among the
inputs.

* Every pass but stabilization must reproduce level 0 exactly up to float32 rounding, with NaNs
  in the same places and the same infinities.
* With stabilization too, an output may differ from level 0 only where stabilization changed
  its graph, and then only for the better: compared with the same graph evaluated in float64
  (the truth), it is accurate wherever level 0 is, and it is NaN only where level 0 is.

Every optimized schedule also passes the structural checks of ``check_schedule``.
``SYMK_FUZZ_CASES`` sets the number of cases per mode (default 300).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from symk.graph.node import ConstValue, Node, apply, toposort
from symk.passes.pipeline import optimize
from tests.passes.common import assert_close, check_schedule, execute, run
from tests.passes.fuzzgen import FuzzCase, random_case

N_CASES = int(os.environ.get("SYMK_FUZZ_CASES", "300"))
RTOL, ATOL = 1e-4, 1e-5


def _promote(roots: list[Node]) -> tuple[list[Node], dict[int, Node]]:
    """The same graph computed in float64: float32 leaves, constants and casts become float64.
    Returns the new roots and a map from old placeholder ids to the new placeholders."""
    memo: dict[int, Node] = {}
    leaves: dict[int, Node] = {}
    for n in toposort(roots):
        attrs = dict(n.attrs)
        if n.op.name == "constant" and n.dtype == "float32":
            attrs["value"] = ConstValue(n.attrs["value"].array.astype(np.float64))
        elif attrs.get("dtype") == "float32":
            attrs["dtype"] = "float64"
        new = apply(n.op, [memo[id(i)] for i in n.inputs], **attrs)
        memo[id(n)] = new
        if n.op.name == "placeholder":
            leaves[id(n)] = new
    return [memo[id(r)] for r in roots], leaves


def _truth(case: FuzzCase) -> list[np.ndarray | None]:
    """Each output computed in float64 (the original formulas), or None where that value is
    not to be trusted: some intermediate overflowed, cancelled to log(0), or was NaN (float64
    can be as wrong as float32 there, e.g. 1 - sigmoid(100) is 0 in both)."""
    roots, leaves = _promote(case.roots)
    feeds = {id(leaves[id(x)]): v.astype(np.float64) if v.dtype == np.float32 else v
             for x, v in case.feeds.items() if id(x) in leaves}
    vals: dict[int, np.ndarray] = {}
    finite: dict[int, bool] = {}
    with np.errstate(all="ignore"):
        for n in toposort(roots):
            if n.op.name == "placeholder":
                vals[id(n)] = feeds[id(n)]
                finite[id(n)] = bool(np.all(np.isfinite(vals[id(n)])))
                continue
            v = np.asarray(n.op.ref(*[vals[id(i)] for i in n.inputs], **n.attrs))
            vals[id(n)] = v
            ok = n.op.is_leaf or v.dtype.kind != "f" or bool(np.all(np.isfinite(v)))
            finite[id(n)] = ok and all(finite[id(i)] for i in n.inputs)
    return [vals[id(r)] if finite[id(r)] else None for r in roots]


def _strict(a: np.ndarray, b: np.ndarray) -> str | None:
    try:
        assert_close(a, b, rtol=RTOL, atol=ATOL)
    except AssertionError as e:
        return str(e)
    return None


def _no_worse(opt: np.ndarray, base: np.ndarray, truth: np.ndarray | None) -> str | None:
    """``opt`` is NaN only where ``base`` is, and (when the float64 value can be trusted)
    accurate wherever ``base`` is accurate."""
    if opt.shape != base.shape or opt.dtype != base.dtype:
        return f"shape/dtype {opt.shape} {opt.dtype} != {base.shape} {base.dtype}"
    if opt.dtype.kind != "f":
        return _strict(opt, base)
    new_nan = np.isnan(opt) & ~np.isnan(base)
    if new_nan.any():
        return f"passes introduced NaN at {np.argwhere(new_nan)[:3].tolist()}"
    if truth is None:
        return None
    t = truth.astype(np.float64)
    fin = np.isfinite(t)
    scale = 1.0 + (np.abs(t[fin]).max() if fin.any() else 0.0)
    tol = 1e-5 * np.abs(t) + 1e-6 * scale
    with np.errstate(invalid="ignore"):
        base_ok = fin & (np.abs(base - t) <= tol)
        opt_ok = np.abs(opt - t) <= 10 * tol
    bad = base_ok & ~opt_ok
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        return f"at {i}: passes {opt[i]!r}, level 0 {base[i]!r}, float64 {t[i]!r}"
    return None


def _cases(offset: int) -> list[int]:
    return list(range(offset, offset + N_CASES))


@pytest.mark.parametrize("mode", ["without_stabilize", "all_passes"])
def test_passes_match_level_0_on_random_graphs(mode):
    failures: list[str] = []
    checked = 0
    for seed in _cases(0 if mode == "without_stabilize" else 100_000):
        # with stabilization, half the cases have only finite inputs, so that the float64
        # values the stabilized outputs are judged by can be trusted more often
        case = random_case(seed, specials=mode == "without_stabilize" or seed % 2 == 0)
        with np.errstate(all="ignore"):
            opt = optimize(case.roots, level=2,
                           exclude={"stabilize"} if mode == "without_stabilize" else set())
            check_schedule(opt.schedule)
            got = execute(opt, case.feeds)
            base = run(case.roots, case.feeds, level=0)
            truth = None
            for k, (a, b) in enumerate(zip(got, base)):
                err = _strict(a, b)
                if err is not None and mode == "all_passes":
                    # only a stabilized output may differ, and only for the better
                    plain = optimize([case.roots[k]], level=2, exclude={"stabilize"}).roots[0]
                    if plain is opt.roots[k]:
                        err = "output differs but stabilization did not change it: " + err
                    else:
                        truth = _truth(case) if truth is None else truth
                        err = _no_worse(a, b, truth[k])
                        checked += truth[k] is not None
                if err is not None:
                    failures.append(f"{case.describe()} | output {k}: {err[:400]}")
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:5])
    if mode == "all_passes" and N_CASES >= 100:
        assert checked >= 5, "too few stabilized outputs were checked against float64"


def test_the_generator_covers_the_supported_ops():
    from collections import Counter

    seen: Counter[str] = Counter()
    for seed in range(200):
        seen.update(n.op.name for n in toposort(random_case(seed).roots))
    wanted = {"add", "sub", "mul", "div", "maximum", "minimum", "pow", "exp", "log", "sqrt",
              "tanh", "sigmoid", "neg", "sum", "mean", "max", "min", "prod", "logsumexp",
              "softmax", "reshape", "transpose", "expand_dims", "squeeze", "einsum",
              "concatenate", "getitem", "where", "clip", "cast", "gt"}
    assert wanted <= set(seen), wanted - set(seen)
    shapes = {random_case(s).inputs[0].shape for s in range(50)}
    assert any(None in s for s in shapes)  # some graphs have an unknown batch dimension
