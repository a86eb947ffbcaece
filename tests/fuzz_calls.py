"""A fixed-seed generator of malformed and edge-case calls to symk, and the subprocess worker that
runs them (``test_fuzz_calls.py`` drives it).

    python -m tests.fuzz_calls OUT.jsonl SEED N SHARD NSHARDS

Each case is a template (a family of calls: ``K.tile`` with a bad repetition count, a compiled
function fed an integer out of its placeholder's range, ``K.set_value`` with a complex array,
...) with parameters drawn from ``random.Random(seed)``.  A template says what must happen:

- ``reject``: a ``symk.SymkError`` subclass; for graph-building calls its message names the K
  function (``K.<name>``) and this file's line (the user's line); for compiled-function and
  variable calls it names the offending input or variable.  Any other exception is a raw leak,
  returning normally is a silent acceptance.
- ``accept``: returns, and the values equal numpy's.

The worker writes a ``started`` line (flushed) before each case, so a crash or a hang names the
case, then one ``result`` line per case (``ok`` or the failure).
"""

from __future__ import annotations

import json
import random
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

HERE = "fuzz_calls.py:"
#: devices the compiled-function templates run on (interp is the reference, cpu the native one)
FEED_DEVICES = ("interp", "cpu")


@dataclass
class Case:
    index: int
    template: str
    expect: str  # "reject" or "accept"
    params: dict[str, Any]
    run: Callable[[], Any]
    #: for accepted cases: the expected values (compared with the returned ones)
    want: Callable[[], Any] | None = None
    #: what a rejection message must contain (besides the class check)
    needles: tuple[str, ...] = ()


def _k():
    from symk import backend as K

    return K


# ------------------------------------------------------------------ parameter pools

BAD_COUNTS = [1.5, -1, -3, "2", None, 2.0000001, float("nan"), float("inf"), [2], True]
BAD_DIMS = [-1, -7, 1.5, "3", float("nan"), [2], 2.5]
BAD_AXES = [5, -9, 1.5, "0", None, [0, 0]]
BAD_SCALARS = ["x", "1.0", [1, "a"], {"a": 1}, object()]
INT_DTYPES = ["int8", "int16", "int32", "uint8", "uint16", "int64"]
BAD_DTYPES = ["float128", "nosuch", "complex64", "str", 3, "object"]


def _out_of_range(rng: random.Random, dtype: str) -> Any:
    info = np.iinfo(dtype)
    return rng.choice([v for v in (int(info.max) + 1, int(info.min) - 1, 2 ** 40, -(2 ** 70),
                                   1e30, float(info.max) * 4)
                       if not info.min <= v <= info.max])


# ------------------------------------------------------------------ graph-building templates


def t_tile(rng: random.Random) -> dict:
    K = _k()
    reps = [rng.choice(BAD_COUNTS), rng.choice([1, 2])]
    rng.shuffle(reps)
    return {"params": {"reps": repr(reps)},
            "run": lambda: K.tile(K.variable(np.ones((2, 3))), reps), "needles": ("K.tile",)}


def t_repeat_elements(rng: random.Random) -> dict:
    K = _k()
    if rng.random() < 0.5:
        rep, axis = rng.choice(BAD_COUNTS), 1
    else:
        rep, axis = 2, rng.choice(BAD_AXES)
    return {"params": {"rep": repr(rep), "axis": repr(axis)},
            "run": lambda: K.repeat_elements(K.variable(np.ones((2, 3))), rep, axis),
            "needles": ("K.repeat_elements",)}


def t_one_hot(rng: random.Random) -> dict:
    K = _k()
    n = rng.choice([-3, 0, -1, 1.5, "4", None, float("nan")])
    return {"params": {"num_classes": repr(n)},
            "run": lambda: K.one_hot(K.placeholder((2,), dtype="int32"), n),
            "needles": ("K.one_hot",)}


def t_constructor_shape(rng: random.Random) -> dict:
    K = _k()
    fn = rng.choice(["zeros", "ones", "random_uniform", "random_normal", "placeholder",
                     "random_binomial", "truncated_normal"])
    shape = [2, rng.choice(BAD_DIMS)]
    rng.shuffle(shape)
    return {"params": {"fn": fn, "shape": repr(shape)},
            "run": lambda: getattr(K, fn)(tuple(shape)), "needles": (f"K.{fn}",)}


def t_eye(rng: random.Random) -> dict:
    K = _k()
    n = rng.choice([-2, 1.5, "3", None, float("nan")])
    return {"params": {"n": repr(n)}, "run": lambda: K.eye(n), "needles": ("K.eye",)}


def t_placeholder_ndim(rng: random.Random) -> dict:
    K = _k()
    nd = rng.choice([-1, -5, 1.5, "2"])
    return {"params": {"ndim": repr(nd)}, "run": lambda: K.placeholder(ndim=nd),
            "needles": ("K.placeholder",)}


def t_arange(rng: random.Random) -> dict:
    K = _k()
    args = rng.choice([(0, 10, 0), (0, 10, 0.0), ("a", 3, 1), (0, float("nan"), 1),
                       (0, 5, "x"), (0, float("inf"), 1), (0, 1e300, 1), (5, -1e12, -1)])
    return {"params": {"args": repr(args)}, "run": lambda: K.arange(*args),
            "needles": ("K.arange",)}


def t_scalar_args(rng: random.Random) -> dict:
    K = _k()
    bad = rng.choice(BAD_SCALARS)
    fn, call = rng.choice([
        ("relu", lambda v: K.relu(v, alpha=bad)),
        ("relu", lambda v: K.relu(v, max_value=bad)),
        ("relu", lambda v: K.relu(v, threshold=bad)),
        ("elu", lambda v: K.elu(v, alpha=bad)),
        ("clip", lambda v: K.clip(v, bad, 1.0)),
        ("pow", lambda v: K.pow(v, bad)),
        ("maximum", lambda v: K.maximum(v, bad)),
        ("dropout", lambda v: K.dropout(v, bad)),
    ])
    return {"params": {"fn": fn, "value": repr(bad)[:40]},
            "run": lambda: call(K.variable(np.ones((2, 2)))), "needles": (f"K.{fn}",)}


def t_constant_range(rng: random.Random) -> dict:
    K = _k()
    dt = rng.choice(INT_DTYPES)
    v = _out_of_range(rng, dt)
    fn = rng.choice(["constant", "variable"])
    return {"params": {"fn": fn, "dtype": dt, "value": repr(v)},
            "run": lambda: getattr(K, fn)(np.array([v, 1]) if fn == "variable" else v,
                                          dtype=dt),
            "needles": (f"K.{fn}",)}


def t_bad_values(rng: random.Random) -> dict:
    K = _k()
    fn = rng.choice(["constant", "variable"])
    v = rng.choice([1 + 2j, np.array([1j, 2]), None, np.array(["a", "b"]),
                    np.array([object(), 1], dtype=object), "text", [1, [2, 3]]])
    return {"params": {"fn": fn, "value": repr(v)[:40]},
            "run": lambda: getattr(K, fn)(v), "needles": (f"K.{fn}",)}


def t_bad_dtype(rng: random.Random) -> dict:
    K = _k()
    dt = rng.choice(BAD_DTYPES)
    fn, call = rng.choice([("cast", lambda: K.cast(K.variable(np.ones(2)), dt)),
                           ("placeholder", lambda: K.placeholder((2,), dtype=dt)),
                           ("zeros", lambda: K.zeros((2,), dtype=dt)),
                           ("variable", lambda: K.variable(np.ones(2), dtype=dt))])
    return {"params": {"fn": fn, "dtype": repr(dt)}, "run": call, "needles": (f"K.{fn}",)}


def t_slice(rng: random.Random) -> dict:
    K = _k()
    start, size = rng.choice([([0, 3], [2, 2]), ([-1, 0], [1, 2]), ([0, 0], [3, 1]),
                              ([1, 0], [2, 5]), ([0, 0], [-2, 1]), ([0], [1, 1]),
                              ([0.5, 0], [1, 1])])
    return {"params": {"start": start, "size": size},
            "run": lambda: K.slice(K.variable(np.ones((2, 4))), start, size),
            "needles": ("K.slice",)}


def t_reshape(rng: random.Random) -> dict:
    K = _k()
    shape = rng.choice([(-1, -1), (5, 2), (1.5, 4), ("a", 6), (-2, 3), (0, -1)])
    return {"params": {"shape": repr(shape)},
            "run": lambda: K.reshape(K.variable(np.ones((2, 3))), shape),
            "needles": ("K.reshape",)}


def t_axis(rng: random.Random) -> dict:
    K = _k()
    axis = rng.choice([3, -4, 7, 1.5, "1"])
    fn = rng.choice(["sum", "mean", "max", "min", "prod", "std", "var", "softmax", "argmax",
                     "cumsum", "logsumexp", "l2_normalize", "expand_dims", "squeeze",
                     "reverse", "any", "all"])
    if fn == "expand_dims" and axis in (3, -4):
        axis = 5
    kw = {"axes" if fn == "reverse" else "axis": axis}
    return {"params": {"fn": fn, "axis": repr(axis)},
            "run": lambda: getattr(K, fn)(K.variable(np.ones((2, 3, 1))), **kw),
            "needles": (f"K.{fn}",)}


def t_concat_axis(rng: random.Random) -> dict:
    K = _k()
    fn = rng.choice(["concatenate", "stack"])
    axis = rng.choice([2, -3, 9] if fn == "concatenate" else [3, -4, 9])
    v = [K.variable(np.ones((2, 3))), K.variable(np.ones((2, 3)))]
    return {"params": {"fn": fn, "axis": axis}, "run": lambda: getattr(K, fn)(v, axis=axis),
            "needles": (f"K.{fn}",)}


def t_dot_shapes(rng: random.Random) -> dict:
    K = _k()
    fn, a, b = rng.choice([("dot", (2, 3), (4, 5)), ("dot", (3,), (4,)),
                           ("dot", (2, 3, 4), (5, 6)), ("dot", (2, 3), (2, 3)),
                           ("batch_dot", (2, 3, 4), (2, 5, 6)), ("batch_dot", (2, 3), (4, 3)),
                           ("batch_dot", (3,), (3,))])
    return {"params": {"fn": fn, "a": a, "b": b},
            "run": lambda: getattr(K, fn)(K.placeholder(a), K.placeholder(b)),
            "needles": (f"K.{fn}",)}


def t_function_device(rng: random.Random) -> dict:
    K = _k()
    dev = rng.choice(["banana", "gpu", "tpu", "CPU", "cpu0", 3])
    x = K.placeholder((2,))
    return {"params": {"device": repr(dev)},
            "run": lambda: K.function([x], [x * 2.0], device=dev), "needles": ("K.function",)}


# ------------------------------------------------------------------ compiled functions

_FUNCS: dict[tuple, Any] = {}


def _fn(key: str, device: str, build: Callable[[], tuple]) -> Any:
    """One compiled function per (template, device) for the whole run."""
    f = _FUNCS.get((key, device))
    if f is None:
        K = _k()
        ins, outs, ups = build()
        f = _FUNCS[(key, device)] = (K.function(ins, outs, updates=ups, device=device), ins, ups)
    return f


def _two_inputs() -> tuple:
    K = _k()
    x = K.placeholder((None, 4), name="fx")
    y = K.placeholder((None, 4), name="fy")
    return [x, y], [K.tanh(x * y + 1.0), K.sum(x - y, axis=1)], []


def t_feed_mismatch(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    n, m = rng.choice([(1000, 1), (1, 7), (3, 0), (0, 5), (64, 63), (100000, 1)])
    f = _fn("two", dev, _two_inputs)[0]
    return {"params": {"device": dev, "rows": (n, m)},
            "run": lambda: f([np.ones((n, 4), "f4"), np.ones((m, 4), "f4")]),
            "needles": ("fx" if n < m else "fy",)}


def t_feed_ok(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    n = rng.choice([0, 1, 2, 3, 17, 1000])
    f = _fn("two", dev, _two_inputs)[0]
    r = np.random.default_rng(rng.randrange(1 << 30))
    a = r.standard_normal((n, 4)).astype("f4")
    b = r.standard_normal((n, 4)).astype("f4")
    return {"params": {"device": dev, "rows": n}, "run": lambda: f([a, b]),
            "want": lambda: [np.tanh(a * b + 1.0), np.sum(a - b, axis=1)]}


def t_feed_bad_value(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    f = _fn("two", dev, _two_inputs)[0]
    good = np.ones((2, 4), "f4")
    bad = rng.choice([np.ones((2, 5), "f4"), np.ones((2, 4, 1), "f4"), np.ones(4, "f4"),
                      np.array([["a"] * 4] * 2), np.full((2, 4), 1 + 1j),
                      np.array([[object()] * 4] * 2, dtype=object), "text", None,
                      [[1, 2], [3]]])
    args = rng.choice([[bad, good], [good, bad], [good], [good, good, good], []])
    return {"params": {"device": dev, "value": repr(bad)[:40], "n_args": len(args)},
            "run": lambda: f(args), "needles": ("function",)}


def _int_input() -> tuple:
    K = _k()
    i = K.placeholder((None,), dtype="int32", name="ids")
    return [i], [i * 2 + 1], []


def t_feed_int_range(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    f = _fn("int", dev, _int_input)[0]
    v = rng.choice([np.array([2 ** 40, 1]), np.array([1e10, 0.0]),
                    np.array([2 ** 32 - 1], np.uint32), np.array([np.nan, 1.0]),
                    np.array([np.inf]), np.array([1.5, 2.0]), np.array([-(2 ** 31) - 1]),
                    np.array([2 ** 63 - 1], np.uint64)])
    return {"params": {"device": dev, "value": repr(v)}, "run": lambda: f([v]),
            "needles": ("ids",)}


def t_feed_int_ok(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    f = _fn("int", dev, _int_input)[0]
    v = rng.choice([np.array([2 ** 30 - 1, -(2 ** 30)]), np.array([3.0, -4.0]),
                    np.array([], np.int64), np.array([7], np.uint8), np.array([True, False])])
    return {"params": {"device": dev, "value": repr(v)}, "run": lambda: f([v]),
            "want": lambda: [(v.astype("int32") * 2 + 1).astype("int32")]}


def _update_fn() -> tuple:
    K = _k()
    v = K.variable(np.zeros((4, 3)), name="fuzz_v")
    x = K.placeholder((None, 3), name="ux")
    return [x], [], [(v, x * 1.0)]


def t_update_shape(rng: random.Random) -> dict:
    dev = rng.choice(FEED_DEVICES)
    f, _, ups = _fn("update", dev, _update_fn)
    rows = rng.choice([0, 1, 3, 5, 7, 100])
    return {"params": {"device": dev, "rows": rows},
            "run": lambda: f([np.ones((rows, 3))]), "needles": ("fuzz_v",)}


# ------------------------------------------------------------------ variables


def t_set_value(rng: random.Random) -> dict:
    K = _k()
    dt = rng.choice(["float32", "int32", "bool"])
    v = K.variable(np.zeros((2, 3), dt), dtype=dt, name="sv")
    bad = rng.choice([np.ones((3, 2)), np.ones(6), np.array([["a"] * 3] * 2),
                      np.full((2, 3), 1 + 2j), np.array([[object()] * 3] * 2, dtype=object),
                      "text", None] + ([np.full((2, 3), np.nan), np.full((2, 3), 2.5),
                                        np.full((2, 3), 1e12)] if dt != "float32" else []))
    return {"params": {"dtype": dt, "value": repr(bad)[:40]},
            "run": lambda: K.set_value(v, bad), "needles": ("K.set_value",)}


def t_batch_set_value(rng: random.Random) -> dict:
    K = _k()
    v = K.variable(np.zeros(2), name="bsv")
    arg = rng.choice([[(v,)], [(v, np.ones(2), 3)], [v], [(np.ones(2), v)], [(v, np.ones(3))],
                      [(v, "a")]])
    return {"params": {"arg": repr(arg)[:60]}, "run": lambda: K.batch_set_value(arg),
            "needles": ("K.batch_set_value",)}


def t_set_value_ok(rng: random.Random) -> dict:
    K = _k()
    dt = rng.choice(["float32", "int32", "float64"])
    v = K.variable(np.zeros((2, 3), dt), dtype=dt)
    val = rng.choice([np.arange(6).reshape(2, 3), np.full((2, 3), 7.0), [[1, 2, 3], [4, 5, 6]]])
    return {"params": {"dtype": dt, "value": repr(val)[:40]},
            "run": lambda: (K.set_value(v, val), K.get_value(v))[1],
            "want": lambda: np.asarray(val).astype(dt)}


REJECT = [t_tile, t_repeat_elements, t_one_hot, t_constructor_shape, t_eye, t_placeholder_ndim,
          t_arange, t_scalar_args, t_constant_range, t_bad_values, t_bad_dtype, t_slice,
          t_reshape, t_axis, t_concat_axis, t_dot_shapes, t_function_device, t_feed_mismatch,
          t_feed_bad_value, t_feed_int_range, t_update_shape, t_set_value, t_batch_set_value]
ACCEPT = [t_feed_ok, t_feed_int_ok, t_set_value_ok]


def generate(seed: int, n: int) -> list[Case]:
    """``n`` cases from ``seed`` (deterministic: the worker regenerates them by index)."""
    rng = random.Random(seed)
    cases = []
    templates = [(t, "reject") for t in REJECT] + [(t, "accept") for t in ACCEPT]
    for i in range(n):
        t, expect = templates[i % len(templates)] if i < 2 * len(templates) else \
            rng.choice(templates)
        spec = t(rng)
        cases.append(Case(i, t.__name__[2:], expect, spec["params"], spec["run"],
                          spec.get("want"), tuple(spec.get("needles", ()))))
    return cases


def _same(got: Any, want: Any) -> bool:
    got = got if isinstance(got, list) else [got]
    want = want if isinstance(want, list) else [want]
    return len(got) == len(want) and all(
        np.asarray(g).shape == np.asarray(w).shape and np.asarray(g).dtype == np.asarray(w).dtype
        and np.allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True) for g, w in zip(got, want))


def run_case(case: Case) -> str | None:
    """None when the case behaved, else what went wrong."""
    from symk.errors import SymkError

    try:
        got = case.run()
    except SymkError as e:
        if case.expect == "accept":
            return f"rejected a valid call: {type(e).__name__}: {e}"
        msg = str(e)
        missing = [n for n in case.needles if n not in msg]
        if any(n.startswith("K.") for n in case.needles) and HERE not in msg:
            missing.append(HERE + "<line>")
        return f"message lacks {missing}: {msg[:400]}" if missing else None
    except Exception as e:  # noqa: BLE001
        return f"raw {type(e).__name__}: {e}\n{traceback.format_exc()[-800:]}"
    if case.expect == "reject":
        return "silently accepted"
    if case.want is not None and not _same(got, case.want()):
        return f"wrong values: {got!r:.300}"
    return None


def main(out: str, seed: str, n: str, shard: str, nshards: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    cases = generate(int(seed), int(n))
    with open(out, "w") as f:
        for c in cases[int(shard)::int(nshards)]:
            f.write(json.dumps({"started": c.index}) + "\n")
            f.flush()
            why = run_case(c)
            f.write(json.dumps({"case": c.index, "template": c.template, "params": c.params,
                                "ok": why is None, "why": why}, default=repr) + "\n")
            f.flush()


if __name__ == "__main__":
    main(*sys.argv[1:6])
