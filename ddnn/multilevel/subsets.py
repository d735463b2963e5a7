"""The samples of a coarse level: a seeded, nested subset of the fine level's batch.

A coarse level of a sample hierarchy (MLVR, SSN, SVRG, SARAH, ASTROM) sees a
fraction f of the rows of the finer level's batch: the first ⌈f n_t⌉ rows of a
seeded permutation of every loss term. Levels that draw together use the same
permutation, so their sets are nested (D¹ ⊂ D² ⊂ … ⊂ D). ``redraw`` takes a
new permutation (a new mini-batch every step for SVRG and SARAH, a new
subsample every cycle for SSN); ``grow`` enlarges the set within the same
permutation (ASTROM after a rejected coarse correction). ``key`` changes
whenever the subset does, or the parent's batch does.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ddnn.sampler import sub_seed
from ddnn.samples import Samples, num_rows

__all__ = ["SubsetSource"]


class SubsetSource:
    """A fraction of the rows of ``parent``'s batch (a sample source: ``batch`` and ``key``).

    Parameters
    ----------
    parent : the finer level's source (a :class:`~ddnn.sampler.Sampler` or another subset)
    fraction : share of the parent's rows, in (0, 1]
    seed : seed of the permutations (draw k uses ``sub_seed(seed, 2, k)``)
    """

    def __init__(self, parent: Any, fraction: float, seed: int = 0):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"a subset's fraction must be in (0, 1], got {fraction}")
        self.parent = parent
        self.fraction = float(fraction)
        self.seed = seed
        self.draw = 0
        self._version = 0
        self._parent_key: int | None = None
        self._batch: Samples | None = None

    # -- the source protocol ----------------------------------------------------
    @property
    def key(self) -> int:
        self._refresh()
        return self._version

    @property
    def batch(self) -> Samples:
        self._refresh()
        return self._batch

    def _refresh(self) -> None:
        parent_key = self.parent.key
        if self._parent_key is not None and parent_key != self._parent_key:  # the parent's batch changed
            self._version += 1
            self._batch = None
        self._parent_key = parent_key
        if self._batch is None:
            self._batch = self._select(self.parent.batch)

    def _select(self, batch: Samples) -> Samples:
        if self.fraction >= 1.0:
            return batch
        indices = {}
        for t, (name, rows) in enumerate(batch.terms.items()):
            n = num_rows(rows)
            gen = torch.Generator().manual_seed(sub_seed(self.seed, 2, self.draw, t))
            keep = max(1, math.ceil(self.fraction * n)) if n else 0
            indices[name] = torch.randperm(n, generator=gen)[:keep]
        subset = batch.select(indices)
        return subset.with_counts(subset.counts, batch.fraction * subset.rows / max(batch.rows, 1))

    # -- changes ------------------------------------------------------------------
    def redraw(self) -> None:
        """A new seeded subset of the same size."""
        self.draw += 1
        self._changed()

    def grow(self, factor: float) -> None:
        """A larger subset (``fraction · factor``, at most the whole batch) containing the current one."""
        self.fraction = min(1.0, self.fraction * factor)
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._batch = None

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        parent = -1 if self._parent_key is None else self._parent_key
        return {"fraction": self.fraction, "draw": self.draw, "version": self._version, "parent_key": parent}

    def load_state_dict(self, state: dict) -> None:
        self.fraction = float(state["fraction"])
        self.draw = int(state["draw"])
        self._version = int(state["version"])
        self._parent_key = None if int(state["parent_key"]) < 0 else int(state["parent_key"])
        self._batch = None
