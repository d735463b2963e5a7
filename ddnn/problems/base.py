"""The problem protocol: a model, its training samples, a loss and metrics.

A problem is built identically on every rank and never communicates: the
solvers decide which samples a rank evaluates and when results are reduced
(:class:`ddnn.solvers.objective.Objective`).

Losses are written so that sharding is exact: every loss term is a weighted
*sum* over the rows it is given divided by the *global* number of rows of
that term (``Samples.counts``). The sum over ranks of the shard losses is
then the loss on the whole set, and a rank evaluating all rows gets it alone.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ddnn.flat import FlatParams

__all__ = ["Samples", "Problem"]


@dataclass(frozen=True)
class Samples:
    """Training rows grouped by loss term.

    Attributes
    ----------
    terms : term name -> 2-D tensor, one row per sample; the columns are the
        problem's own (e.g. ``x, t`` for collocation points, ``x, t, u`` for
        boundary data)
    counts : term name -> the global number of rows the term is averaged over
    """

    terms: dict[str, torch.Tensor]
    counts: dict[str, int]

    @classmethod
    def whole(cls, terms: dict[str, torch.Tensor]) -> Samples:
        """Samples whose counts are their own row counts."""
        return cls(dict(terms), {k: int(v.shape[0]) for k, v in terms.items()})

    def shard(self, part: int, parts: int) -> Samples:
        """Rows ``part`` of ``parts`` contiguous, near-equal chunks of every term."""
        if not 0 <= part < parts:
            raise ValueError(f"part {part} of {parts}")
        out = {}
        for name, rows in self.terms.items():
            n = rows.shape[0]
            lo, hi = (n * part) // parts, (n * (part + 1)) // parts
            out[name] = rows[lo:hi]
        return Samples(out, dict(self.counts))

    def select(self, indices: dict[str, torch.Tensor]) -> Samples:
        """The rows ``indices[name]`` of every term (absent terms keep no rows)."""
        out = {}
        for name, rows in self.terms.items():
            idx = indices.get(name)
            out[name] = rows[idx] if idx is not None else rows[:0]
        return Samples(out, dict(self.counts))

    def with_counts(self, counts: dict[str, int]) -> Samples:
        return Samples(dict(self.terms), dict(counts))

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> Samples:
        return Samples({k: v.to(device=device, dtype=dtype) for k, v in self.terms.items()}, dict(self.counts))

    @property
    def rows(self) -> int:
        return sum(int(v.shape[0]) for v in self.terms.values())


class Problem(abc.ABC):
    """A training problem.

    Subclasses register with ``@register("problem", name, Options)`` and are
    constructed as ``cls(options, model, device=..., dtype=..., seed=...)``
    where ``model`` was built from the ``model`` section with
    ``(model_options, input_dim, output_dim)``.

    Class attributes
    ----------------
    input_dim, output_dim : network input and output sizes
    default_model : the ``model`` section used when the input has none
    higher_is_better : names of metrics that improve upwards (accuracy);
        all others (errors) improve downwards
    """

    input_dim: ClassVar[int]
    output_dim: ClassVar[int]
    default_model: ClassVar[dict | None] = None
    higher_is_better: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Any, model: nn.Module, *, device: torch.device, dtype: torch.dtype, seed: int):
        self.options = options
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        self.model = model.to(device=self.device, dtype=dtype)
        self.params = FlatParams(self.model, self.device, dtype)

    @abc.abstractmethod
    def training_samples(self) -> Samples:
        """The whole training set; the same on every rank for a given seed."""

    @abc.abstractmethod
    def loss_terms(self, samples: Samples) -> dict[str, torch.Tensor]:
        """Weighted loss terms of these rows (0-dim tensors, differentiable in the parameters).

        Each term is ``weight * sum over its rows / samples.counts[term]``;
        the loss is the sum of the terms.
        """

    @abc.abstractmethod
    def metrics(self) -> dict[str, float]:
        """Quality of the current parameters on a fixed evaluation set (no gradients)."""

    def solution(self) -> dict | None:
        """The network's output next to the reference on the evaluation set, for plots.

        ``None`` when the problem has none; else a dict with ``inputs`` (N, d),
        ``prediction`` (N,), optionally ``reference`` (N,), ``input_names``
        (d strings) and, for grids, ``grid_shape`` (rows are the C-order
        flattening of ``meshgrid(axis_0, ..., indexing="ij")``). Written to
        ``/solution`` of ``results.h5``.
        """
        return None

    def resample(self, iteration: int) -> Samples | None:
        """New training samples at ``iteration`` (resampling problems), or ``None``."""
        return None

    def state_dict(self) -> dict:
        """Problem state to checkpoint (e.g. the sampler's); parameters are saved separately."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
