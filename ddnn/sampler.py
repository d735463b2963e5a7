"""The sampler: which training rows every iteration sees, epoch by epoch.

A :class:`Sampler` owns the training set of a problem and hands out one
*global batch* per iteration (the same on every rank; each rank evaluates
its shard of it, see :class:`~ddnn.solvers.objective.Objective`):

* **full batch** (``data.batch_size`` null, the default): the whole set,
  every iteration one epoch;
* **mini-batches**: every epoch splits a seeded permutation of every loss
  term into ``ceil(rows / batch_size)`` near-equal consecutive batches (all
  terms in proportion), optionally extended by ``overlap`` percent of the
  next batch's rows; with ``growth`` > 1 the batch size of epoch e is
  ``batch_size · growth^e`` (capped at the set: a sample size that grows to
  keep a stochastic trust region globally convergent);
* **resampling** (``data.resample_every``): problems that draw their samples
  (PINN collocation points) draw a new set every N iterations, seeded by the
  iteration (draw k uses ``seed + k``).

Every random choice is a pure function of ``(seed, draw, epoch, term)``, so
the state is four integers and a resumed run continues bit for bit, also in
the middle of an epoch. ``key`` changes whenever the batch changes: solvers
keep an evaluation only while the key they computed it with is current.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ddnn.samples import Samples, num_rows

__all__ = ["Sampler", "FixedSamples", "sub_seed"]


def sub_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed derived from ``seed`` and ``keys`` (``numpy.random.SeedSequence``).

    Distinct key tuples give statistically independent streams, so the
    samplers of different loss terms, resampling draws and epochs never
    share random numbers.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) | (int(state[1] & 0x7FFFFFFF) << 32)


class FixedSamples:
    """A sample source that never changes (tests, library use, chunks held fixed)."""

    key = 0

    def __init__(self, samples: Samples):
        self.batch = samples
        self.full = samples


class Sampler:
    """Training batches of a problem, per iteration and epoch.

    Parameters
    ----------
    problem : gives ``training_samples(draw)`` (the whole set of draw ``draw``)
    batch_size : rows per batch, all terms together (``None``: full batch)
    shuffle : a new seeded permutation every epoch (else the stored order)
    overlap : percent of the next batch's rows a batch also holds
    growth : factor by which the batch size grows every epoch (1: constant)
    resample_every : draw a new training set every N iterations (0: never)
    seed : seed of the permutations

    Attributes
    ----------
    full : the current whole training set
    batch : the current global batch (``full`` itself in full-batch mode)
    key : changes whenever ``batch`` changes
    draw, epoch, position, iteration : the state (which set, which epoch,
        which batch of the epoch, how many batches were handed out)
    """

    def __init__(
        self,
        problem: Any,
        batch_size: int | None = None,
        shuffle: bool = True,
        overlap: float = 0.0,
        resample_every: int = 0,
        seed: int = 0,
        growth: float = 1.0,
    ):
        if not 0.0 <= overlap < 100.0:
            raise ValueError(f"overlap must be in [0, 100) percent, got {overlap}")
        self.problem = problem
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.overlap = overlap
        self.growth = growth
        self.resample_every = resample_every
        self.seed = seed
        self.draw = 0
        self.epoch = 0
        self.position = 0
        self.iteration = 0
        self.key = 0
        self.full: Samples = problem.training_samples(0)
        self.batch: Samples = self._make_batch()

    @classmethod
    def from_options(cls, problem: Any, options: Any, seed: int) -> Sampler:
        """A sampler from the ``data`` section of an input."""
        return cls(
            problem,
            options.batch_size,
            options.shuffle,
            options.overlap,
            options.resample_every,
            seed,
            options.batch_growth,
        )

    # -- geometry of an epoch -----------------------------------------------
    @property
    def total_rows(self) -> int:
        return self.full.rows

    @property
    def epoch_batch_size(self) -> int | None:
        """The batch size of the current epoch (``None``: the whole set)."""
        if self.batch_size is None:
            return None
        return min(self.total_rows, math.ceil(self.batch_size * self.growth**self.epoch))

    @property
    def batches_per_epoch(self) -> int:
        size = self.epoch_batch_size
        if size is None or size >= self.total_rows:
            return 1
        return math.ceil(self.total_rows / size)

    @property
    def ends_epoch(self) -> bool:
        """Whether the current batch is the last of its epoch."""
        return self.position == self.batches_per_epoch - 1

    @property
    def epochs(self) -> float:
        """Epochs done once the current batch is evaluated (a fraction inside an epoch)."""
        return self.epoch + (self.position + 1) / self.batches_per_epoch

    @property
    def completed_epochs(self) -> int:
        """Whole epochs done once the current batch is evaluated."""
        return self.epoch + (1 if self.ends_epoch else 0)

    def _permutation(self, term_index: int, n: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(sub_seed(self.seed, 1, self.draw, self.epoch, term_index))
        return torch.randperm(n, generator=gen)

    def _make_batch(self) -> Samples:
        parts = self.batches_per_epoch
        if parts == 1:
            return self.full
        b = self.position
        indices = {}
        for t, (name, rows) in enumerate(self.full.terms.items()):
            n = num_rows(rows)
            perm = self._permutation(t, n)
            lo, hi = (n * b) // parts, (n * (b + 1)) // parts
            idx = perm[lo:hi]
            extra = math.ceil(self.overlap / 100.0 * (hi - lo))
            if extra:
                nxt = (b + 1) % parts
                nlo = (n * nxt) // parts
                idx = torch.cat([idx, perm[nlo : nlo + extra]])
            indices[name] = idx
        return self.full.select(indices, self.total_rows)

    # -- iteration --------------------------------------------------------
    def advance(self) -> None:
        """Move to the next iteration's batch (a new epoch, a new draw when due)."""
        self.iteration += 1
        changed = False
        if self.resample_every and self.iteration % self.resample_every == 0:
            self.draw = self.iteration
            self.full = self.problem.training_samples(self.draw)
            changed = True
        if self.batches_per_epoch > 1:
            changed = True
        if self.ends_epoch:
            self.epoch += 1
            self.position = 0
        else:
            self.position += 1
        if changed:
            self.key += 1
            self.batch = self._make_batch()

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "draw": self.draw,
            "epoch": self.epoch,
            "position": self.position,
            "iteration": self.iteration,
            "key": self.key,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`: the same set and batch as when it was saved."""
        self.draw = int(state["draw"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.iteration = int(state["iteration"])
        self.key = int(state["key"])
        self.full = self.problem.training_samples(self.draw)
        self.batch = self._make_batch()
