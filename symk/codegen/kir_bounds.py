"""Symbolic bounds of Kernel-IR buffer indices, for the verifier (``kir_verify``).

A buffer index is tracked while it is *affine in the loop indices*: ``c + sum_k c_k * i_k``
where the coefficients ``c``, ``c_k`` are integer polynomials in the kernel's size params
(``Poly``) and each ``i_k`` is the index of an enclosing ``range`` whose bounds are polynomials
too.  Constants, size params, loop indices and their ``add``/``sub``/``mul``/``neg`` are
tracked; any other instruction (``where``, ``floordiv``, ``mod``, casts, loads, ...) makes an
index untracked, and its accesses are not checked.

Over the box of the enclosing loops the extremes of such an index are exact (each loop index
varies on its own), once the sign of each coefficient is proven: ``index_range`` gives them.
A polynomial is proven >= 0 when, with every size that bounds an enclosing loop ``[0, s)``
written ``1 + t`` (that loop runs, so ``s >= 1``) and the other sizes ``>= 0``, all its
coefficients are >= 0 (``nonneg``): sufficient, not necessary, so an access can also be
left undecided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: a monomial: the sorted names of its symbols (with repetition); () is the constant term
Mono = tuple[str, ...]
#: an integer polynomial: monomial -> non-zero coefficient
Poly = dict[Mono, int]


def const(c: int) -> Poly:
    return {(): int(c)} if c else {}


def sym(name: str) -> Poly:
    return {(name,): 1}


def add(a: Poly, b: Poly, sign: int = 1) -> Poly:
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, 0) + sign * c
        if v:
            out[m] = v
        else:
            out.pop(m, None)
    return out


def mul(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            out = add(out, {tuple(sorted(ma + mb)): ca * cb})
    return out


def symbols(a: Poly) -> set[str]:
    return {s for m in a for s in m}


def evaluate(a: Poly, env: Mapping[str, int]) -> int:
    total = 0
    for m, c in a.items():
        for s in m:
            c *= env[s]
        total += c
    return total


def nonneg(a: Poly, positive: Iterable[str] = ()) -> bool:
    """Whether ``a >= 0`` is proven for every symbol >= 0 and those in ``positive`` >= 1."""
    pos = set(positive)
    out: Poly = {}
    for m, c in a.items():
        term = const(c)
        for s in m:
            term = mul(term, add(const(1), sym(s)) if s in pos else sym(s))
        out = add(out, term)
    return all(c >= 0 for c in out.values())


def show(a: Poly) -> str:
    if not a:
        return "0"
    parts = []
    for m, c in sorted(a.items(), key=lambda t: (len(t[0]), t[0])):
        parts.append("*".join([str(c)] * (c != 1 or not m) + list(m)))
    return " + ".join(parts).replace("+ -", "- ")


@dataclass
class Affine:
    """``c + sum(terms[r] * index of range r)``."""

    c: Poly = field(default_factory=dict)
    terms: dict[int, Poly] = field(default_factory=dict)

    def plus(self, o: Affine, sign: int = 1) -> Affine:
        terms = dict(self.terms)
        for r, p in o.terms.items():
            v = add(terms.get(r, {}), p, sign)
            if v:
                terms[r] = v
            else:
                terms.pop(r, None)
        return Affine(add(self.c, o.c, sign), terms)

    def scaled(self, p: Poly) -> Affine:
        terms = {r: v for r, q in self.terms.items() if (v := mul(q, p))}
        return Affine(mul(self.c, p), terms)


def combine(prim: str, args: list[Affine | None]) -> Affine | None:
    """The affine form of an int64 ``alu`` of affine operands, or None (not tracked)."""
    known = [a for a in args if a is not None]
    if len(known) != len(args):
        return None
    if prim == "add" and len(known) == 2:
        return known[0].plus(known[1])
    if prim == "sub" and len(known) == 2:
        return known[0].plus(known[1], -1)
    if prim == "neg" and len(known) == 1:
        return Affine().plus(known[0], -1)
    if prim == "mul" and len(known) == 2:
        a, b = known
        if not b.terms:
            return a.scaled(b.c)
        if not a.terms:
            return b.scaled(a.c)
    return None


def index_range(a: Affine, loops: Mapping[int, tuple[Poly, Poly]],
                positive: set[str]) -> tuple[Poly, Poly] | None:
    """(min, max) of ``a`` over the loops' boxes ``[lo, hi - 1]``, or None when the sign of a
    coefficient is not proven (or a loop's bounds are not tracked)."""
    lo_p, hi_p = dict(a.c), dict(a.c)
    for r, coef in a.terms.items():
        if r not in loops:
            return None
        lo, hi = loops[r]
        last = add(hi, const(1), -1)
        if nonneg(coef, positive):
            lo_p, hi_p = add(lo_p, mul(coef, lo)), add(hi_p, mul(coef, last))
        elif nonneg(add({}, coef, -1), positive):
            lo_p, hi_p = add(lo_p, mul(coef, last)), add(hi_p, mul(coef, lo))
        else:
            return None
    return lo_p, hi_p
