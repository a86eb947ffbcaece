"""A stand-in communicator for the collective ops in one process: a job of two identical
ranks (a sum over the ranks doubles, a broadcast keeps), recording each collective, and a
pytest fixture installing it."""

from __future__ import annotations

import numpy as np
import pytest

from symk.graph.ops import collective


class TwoSameRanks:
    rank, size = 0, 2

    def __init__(self) -> None:
        #: (kind, size) of each collective
        self.calls: list[tuple[str, int]] = []
        #: per allreduce: whether it summed a donated buffer of kernel outputs in place
        self.in_place: list[bool] = []

    def allreduce(self, src, dst, what):
        self.calls.append(("allreduce", src.size))
        self.in_place.append(src is dst and collective._donated.get(id(src)) is src)
        np.multiply(src, 2, out=dst)

    def broadcast_(self, flat, root, what):
        self.calls.append(("broadcast", flat.size))


@pytest.fixture(name="comm")
def comm_fixture():
    c = TwoSameRanks()
    collective.set_communicator(c)
    yield c
    collective.set_communicator(None)
