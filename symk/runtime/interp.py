"""The reference device ``interp``: a ``Plan`` whose every step evaluates its nodes with their
ops' numpy references (``runtime/plan.py``'s defaults).  Simple and exact on purpose: it is the
oracle every faster target is tested against."""

from __future__ import annotations

from symk.runtime.plan import Plan


class InterpPlan(Plan):
    """The ``interp`` device's plan: no step overridden."""
