"""Choosing among equivalent implementations of one step by timing its real calls.

A step with several implementations that give the same result (up to float rounding) and
whose speed depends on the machine and the shapes (a convolution's input-gradient algorithm;
a loop split by rows across threads or not) keeps an :class:`AlgoTuner` per signature: its
first calls time each implementation, and the fastest runs from then on.
"""

from __future__ import annotations


class AlgoTuner:
    """Which of several equivalent algorithms to run for one signature: after one untimed
    call of the default (first-touch costs), each is timed on ``tries`` (default ``TRIES``)
    real calls in turn (their results are used: every one is exact up to float rounding),
    then the fastest (by its best time) runs from then on (like cuDNN's benchmark mode)."""

    TRIES = 1

    def __init__(self, algos: list[str], tries: int | None = None) -> None:
        self.algos = algos
        self.tries = self.TRIES if tries is None else tries
        self.times: dict[str, list[float]] = {a: [] for a in algos}
        self.best: str | None = algos[0] if len(algos) == 1 else None
        self.warm = False

    def pick(self) -> str:
        if self.best is not None:
            return self.best
        if not self.warm:
            return self.algos[0]
        return min(self.algos, key=lambda a: len(self.times[a]))

    def record(self, algo: str, seconds: float) -> None:
        if self.best is not None:
            return
        if not self.warm:
            self.warm = True
            return
        self.times[algo].append(seconds)
        if all(len(t) >= self.tries for t in self.times.values()):
            self.best = min(self.algos, key=lambda a: min(self.times[a]))
