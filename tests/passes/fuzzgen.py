"""A seeded generator of random Keras-backend graphs for differential testing of the passes.

``random_case(seed)`` builds a graph with ``K`` from placeholders of broadcast-compatible shapes,
applying random ops: elementwise unary and binary ops (with broadcasting), reductions over
random axes with or without keepdims, softmax / log-softmax / logsumexp, reshape, transpose,
expand_dims, squeeze, dot, concatenate, slicing, where and clip, casts, and the formulas the
rewrite rules look for (``x + 0``, ``log(1 + x)``, ``log(sigmoid(x))``, Keras's cross-entropies,
double transposes, ...).  It returns the placeholders, a few outputs and input values (with
zeros, infinities and NaNs sprinkled in when asked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symk import backend as K
from symk.graph.node import Node, toposort
from symk.graph.tensor import Tensor

FLOATS = ("float32", "float64")


@dataclass
class FuzzCase:
    seed: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    values: list[np.ndarray]
    log: list[str]

    @property
    def feeds(self) -> dict[Node, np.ndarray]:
        return {x.node: v for x, v in zip(self.inputs, self.values)}

    @property
    def roots(self) -> list[Node]:
        return [o.node for o in self.outputs]

    def describe(self) -> str:
        return f"seed {self.seed}: " + "; ".join(self.log)


class _Gen:
    def __init__(self, seed: int, specials: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.specials = specials
        self.inputs: list[Tensor] = []
        self.values: list[np.ndarray] = []
        self.pool: list[Tensor] = []
        self.log: list[str] = []
        rows, cols = int(self.rng.integers(2, 5)), int(self.rng.integers(2, 6))
        self.base = (rows, cols)

    # ------------------------------------------------------------ leaves
    def leaf(self, shape: tuple[int, ...] | None = None, dtype: str = "float32") -> Tensor:
        if shape is None:
            r, c = self.base
            shape = [(r, c), (r, c), (1, c), (r, 1), (c,), (), (2, r, c)][
                int(self.rng.integers(0, 7))]
        # a None dim is always the batch dim (fed with base[0] rows, never broadcast)
        dynamic = len(shape) >= 2 and shape[0] == self.base[0] > 1 and self.rng.random() < 0.3
        decl = (None, *shape[1:]) if dynamic else shape
        x = K.placeholder(decl, dtype=dtype)
        scale = float(self.rng.choice([0.3, 1.0, 4.0, 30.0]))
        v = (self.rng.normal(size=shape) * scale).astype(dtype)
        if self.specials and v.size and self.rng.random() < 0.5:
            flat = v.reshape(-1)
            for _ in range(int(self.rng.integers(1, 3))):
                flat[int(self.rng.integers(0, flat.size))] = self.rng.choice(
                    [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, 100.0])
        self.inputs.append(x)
        self.values.append(v)
        self.pool.append(x)
        return x

    def pick(self, pred: Callable[[Tensor], bool] = lambda t: True) -> Tensor:
        cands = [t for t in self.pool[-8:] if pred(t)] or [t for t in self.pool if pred(t)]
        if not cands:
            return self.leaf()
        return cands[int(self.rng.integers(0, len(cands)))]

    def pick_float(self) -> Tensor:
        return self.pick(lambda t: t.dtype in FLOATS)

    def partner(self, x: Tensor) -> Tensor:
        """Another operand broadcast-compatible with x."""
        for t in reversed(self.pool[-8:]):
            if t is not x and t.dtype in FLOATS and _broadcastable(t.shape, x.shape) and \
                    self.rng.random() < 0.6:
                return t
        shape = tuple(d if d is not None else 1 for d in x.shape)
        if shape and self.rng.random() < 0.5:  # broadcast along a random axis
            a = int(self.rng.integers(0, len(shape)))
            shape = shape[:a] + (1,) + shape[a + 1:]
        if self.rng.random() < 0.2:
            return K.constant(float(self.rng.choice([0.5, 2.0, -1.5, 3.0])), dtype=x.dtype)
        return self.leaf(shape if None not in x.shape else None, x.dtype) \
            if None not in x.shape else self.leaf((), x.dtype)

    def axis(self, x: Tensor):
        nd = x.ndim
        if nd == 0:
            return None
        r = self.rng.random()
        if r < 0.25:
            return None
        if r < 0.4 and nd >= 2:
            return sorted(self.rng.choice(nd, size=2, replace=False).tolist())
        return int(self.rng.integers(-nd, nd))

    # ------------------------------------------------------------ ops
    def step(self) -> None:
        kinds = [self.unary, self.binary, self.binary, self.reduce, self.rule_pattern,
                 self.rule_pattern, self.shape_op, self.softmaxish, self.select, self.dot,
                 self.concat_slice, self.cast]
        out, what = kinds[int(self.rng.integers(0, len(kinds)))]()
        self.pool.append(out)
        self.log.append(what)

    def unary(self):
        x = self.pick_float()
        name = str(self.rng.choice(["exp", "log", "sqrt", "square", "abs", "tanh", "sigmoid",
                                    "softplus", "sin", "cos", "neg", "relu", "elu", "sign",
                                    "round", "softsign", "hard_sigmoid"]))
        if name == "neg":
            return -x, "neg"
        return getattr(K, name)(x), name

    def binary(self):
        x = self.pick_float()
        y = self.partner(x)
        op = str(self.rng.choice(["add", "sub", "mul", "div", "maximum", "minimum", "pow"]))
        if op == "pow":
            e = float(self.rng.choice([2.0, 0.5, 1.0, 3.0, -1.0]))
            return K.pow(x, e), f"pow {e}"
        if self.rng.random() < 0.5:
            x, y = y, x
        fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
               "div": lambda a, b: a / b, "maximum": K.maximum, "minimum": K.minimum}
        if not isinstance(x, Tensor):
            return fns[op](y, x), op
        return fns[op](x, y), op

    def reduce(self):
        x = self.pick_float()
        name = str(self.rng.choice(["sum", "mean", "max", "min", "prod", "logsumexp"]))
        keep = bool(self.rng.random() < 0.5)
        return getattr(K, name)(x, axis=self.axis(x), keepdims=keep), f"{name} keep={keep}"

    def rule_pattern(self):
        x = self.pick_float()
        r = int(self.rng.integers(0, 17))
        if r == 0:
            return x + 0.0, "x+0"
        if r == 1:
            return 1.0 * x, "1*x"
        if r == 2:
            return 0.0 - x, "0-x"
        if r == 3:
            return -(-x), "--x"  # noqa: B002
        if r == 4:
            return K.log(1.0 + x), "log(1+x)"
        if r == 5:
            return K.exp(x) - 1.0, "exp(x)-1"
        if r == 6:
            return K.log(K.sigmoid(x)), "log(sigmoid)"
        if r == 7:
            return K.log(1.0 - K.sigmoid(x)), "log(1-sigmoid)"
        if r == 8 and x.ndim:
            ax = self.axis(x)
            return K.log(K.sum(K.exp(x), axis=ax)), "log(sum(exp))"
        if r == 9 and x.ndim:
            return K.log(K.softmax(x, axis=-1)), "log(softmax)"
        if r == 10 and x.ndim:
            t = K.softmax(self.partner_like(x), axis=-1)
            return K.categorical_crossentropy(t, K.softmax(x)), "cce(softmax)"
        if r == 11:
            t = K.sigmoid(self.partner(x) if x.ndim else x)
            return K.binary_crossentropy(t, K.sigmoid(x)), "bce(sigmoid)"
        if r == 12 and x.ndim >= 2:
            p = list(range(x.ndim))
            self.rng.shuffle(p)
            q = list(range(x.ndim))
            self.rng.shuffle(q)
            return K.permute_dimensions(K.permute_dimensions(x, p), q), "T(T(x))"
        if r == 13:
            return K.cast(K.cast(x, "float64"), "float32"), "cast(cast)"
        if r == 14:
            return K.squeeze(K.expand_dims(x, 0), 0), "squeeze(expand_dims)"
        if r == 15:
            return x - (-self.partner_float(x)), "x-(-y)"
        return K.sqrt(K.square(x)) * 1.0, "sqrt(square)"

    def partner_like(self, x: Tensor) -> Tensor:
        if None in x.shape:
            return x * 0.5
        return self.leaf(tuple(x.shape), x.dtype)

    def partner_float(self, x: Tensor) -> Tensor:
        p = self.partner(x)
        return p if isinstance(p, Tensor) else K.constant(p)

    def shape_op(self):
        x = self.pick_float()
        r = int(self.rng.integers(0, 5))
        if r == 0 and None not in x.shape:
            return K.reshape(x, (-1,)), "reshape(-1)"
        if r == 1 and x.ndim >= 2:
            p = list(range(x.ndim))
            self.rng.shuffle(p)
            return K.permute_dimensions(x, p), f"transpose {p}"
        if r == 2 and None not in x.shape and x.ndim >= 1 and int(np.prod(x.shape)) % 2 == 0:
            n = int(np.prod(x.shape))
            return K.reshape(K.reshape(x, (2, n // 2)), (n // 2, 2)), "reshape(reshape)"
        if r == 3:
            ones = [i for i, d in enumerate(x.shape) if d == 1]
            if ones:
                return K.squeeze(x, ones[0]), "squeeze"
        return K.expand_dims(x, int(self.rng.integers(0, x.ndim + 1))), "expand_dims"

    def softmaxish(self):
        x = self.pick(lambda t: t.dtype in FLOATS and t.ndim >= 1)
        if x.ndim == 0:
            return K.sigmoid(x), "sigmoid"
        r = int(self.rng.integers(0, 3))
        if r == 0:
            return K.softmax(x, axis=int(self.rng.integers(0, x.ndim))), "softmax"
        if r == 1:
            return K.categorical_crossentropy(K.softmax(x * 0.3), x * x + 0.1,
                                              axis=-1), "cce(raw)"
        return K.logsumexp(x, axis=self.axis(x), keepdims=bool(self.rng.random() < 0.5)), \
            "logsumexp"

    def select(self):
        x = self.pick_float()
        y = self.partner_float(x)
        if self.rng.random() < 0.5:
            lo, hi = sorted(self.rng.normal(size=2).tolist())
            return K.clip(x, lo, hi), "clip"
        return K.switch(K.greater(x, 0.2), x, y * 2.0), "switch"

    def dot(self):
        x = self.pick(lambda t: t.dtype in FLOATS and t.ndim == 2 and t.shape[1] is not None)
        if x.ndim != 2 or x.shape[1] is None:
            return K.exp(x), "exp"
        w = self.leaf((x.shape[1], int(self.rng.integers(1, 4))), x.dtype)
        return K.dot(x, w), "dot"

    def concat_slice(self):
        x = self.pick(lambda t: t.dtype in FLOATS and t.ndim >= 1 and None not in t.shape)
        if x.ndim == 0 or None in x.shape:
            return x * 2.0, "mul"
        if self.rng.random() < 0.5:
            ax = int(self.rng.integers(0, x.ndim))
            return K.concatenate([x, K.exp(x) if self.rng.random() < 0.5 else x], axis=ax), \
                "concatenate"
        if x.shape[0] >= 2:
            return x[1:], "x[1:]"
        return x[..., ::-1] if x.ndim else x, "x[..., ::-1]"

    def cast(self):
        x = self.pick_float()
        r = int(self.rng.integers(0, 3))
        if r == 0:
            return K.cast(x, "float64" if x.dtype == "float32" else "float32"), "cast float"
        if r == 1:
            return K.cast(K.greater(x, 0.0), x.dtype) * x, "cast bool"
        return K.cast(K.cast(K.clip(x, -1e6, 1e6), "int32"), "float32"), "cast int"


def _broadcastable(a, b) -> bool:
    for x, y in zip(reversed(a), reversed(b)):
        if x is None or y is None:
            if x != y and 1 not in (x, y):
                return False
            continue
        if x != y and 1 not in (x, y):
            return False
    return len(a) <= len(b)


def random_case(seed: int, n_ops: int = 12, specials: bool = True) -> FuzzCase:
    """A random graph of ``n_ops`` steps; its outputs are every result no later step used (so
    every op built is computed), plus a random intermediate now and then."""
    g = _Gen(seed, specials)
    g.leaf(g.base)
    for _ in range(n_ops):
        g.step()
    used: set[int] = set()
    for t in g.pool:
        used.update(id(n) for n in toposort([t.node]) if n is not t.node)
    leaves = {id(x.node) for x in g.inputs}
    outs, seen = [], set()
    for t in g.pool:
        if id(t.node) in leaves or id(t.node) in seen:
            continue
        if id(t.node) not in used or g.rng.random() < 0.1:
            outs.append(t)
            seen.add(id(t.node))
    return FuzzCase(seed, list(g.inputs), outs or [g.pool[-1]], g.values, g.log)
