"""The per-iteration history of a run: one float column per quantity."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["History"]


class History:
    """Columns of floats, one row per recorded iteration; absent values are NaN."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float]] = {}
        self.rows = 0

    def append(self, row: dict[str, float | None]) -> None:
        for name, value in row.items():
            column = self.columns.setdefault(name, [math.nan] * self.rows)
            column.append(math.nan if value is None else float(value))
        self.rows += 1
        for column in self.columns.values():
            if len(column) < self.rows:
                column.append(math.nan)

    def last(self, name: str) -> float:
        column = self.columns.get(name)
        return column[-1] if column else math.nan

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(values, dtype=np.float64) for name, values in self.columns.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.arrays()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.columns = {name: [float(v) for v in np.asarray(values)] for name, values in state.items()}
        self.rows = max((len(c) for c in self.columns.values()), default=0)
