"""Counters and phase timers recorded in the history of every run."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Counters", "Timers"]


class Counters:
    """Named running totals (evaluations, accepted steps, bytes, ...).

    Every rank keeps its own; solvers reduce the ones that need a global
    value (e.g. the effective parallel cost of local solves).
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = defaultdict(int)

    def add(self, name: str, amount: float = 1) -> None:
        self._values[name] += amount

    def __getitem__(self, name: str) -> float:
        return self._values.get(name, 0)

    def __setitem__(self, name: str, value: float) -> None:
        self._values[name] = value

    def as_dict(self) -> dict[str, float]:
        return dict(sorted(self._values.items()))

    def load(self, values: dict[str, float]) -> None:
        self._values = defaultdict(int, values)


class Timers:
    """Wall time per phase (local solves, global evaluations, communication, I/O)."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] += seconds

    def __getitem__(self, name: str) -> float:
        return self._seconds.get(name, 0.0)

    def as_dict(self) -> dict[str, float]:
        return dict(sorted(self._seconds.items()))

    def load(self, values: dict[str, float]) -> None:
        self._seconds = defaultdict(float, values)
