"""The problem protocol: a model, its training samples, a loss and metrics.

A problem is built identically on every rank and never communicates: the
solvers decide which samples a rank evaluates and when results are reduced
(:class:`ddnn.solvers.objective.Objective`), and the run reduces the
metrics' partial sums.

Losses are written so that sharding is exact (see :mod:`ddnn.samples`):
every loss term is a weighted *sum* over the rows it is given divided by the
*global* number of rows of that term in the batch (``Samples.counts``).
Metrics likewise: :meth:`Problem.metric_parts` returns additive partial sums
over one rank's share of the evaluation set, and
:meth:`Problem.metrics_from` turns their sums over ranks into the metrics.
"""

from __future__ import annotations

import abc
import copy
import math
from typing import Any, ClassVar

import torch
from torch import nn

from ddnn.flat import FlatParams
from ddnn.samples import Samples

__all__ = ["Samples", "Problem", "share", "relative_error"]


def share(n: int, part: int, parts: int) -> slice:
    """The contiguous, near-equal share ``part`` of ``parts`` of ``range(n)``."""
    return slice((n * part) // parts, (n * (part + 1)) // parts)


class Problem(abc.ABC):
    """A training problem.

    Subclasses register with ``@register("problem", name, Options)`` and are
    constructed as ``cls(options, model, device=..., dtype=..., seed=...)``
    where ``model`` was built from the ``model`` section with
    ``(model_options, input_shape, output_dim)`` (:meth:`data_shapes`).

    Class attributes
    ----------------
    input_shape : shape of one network input (``(2,)`` for (x, t), ``(1, 28, 28)`` for an image)
    output_dim : network output size
    default_model : the ``model`` section used when the input has none
    metrics_names : names of the metrics (see :meth:`metric_names`)
    higher_is_better : names of metrics that improve upwards (accuracy);
        all others (errors, losses) improve downwards
    can_resample : whether :meth:`training_samples` draws a new set for
        every ``draw`` (``data.resample_every``)
    """

    input_shape: ClassVar[tuple[int, ...]] = (1,)
    output_dim: ClassVar[int] = 1
    default_model: ClassVar[dict | None] = None
    metrics_names: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[frozenset[str]] = frozenset()
    can_resample: ClassVar[bool] = False

    def __init__(self, options: Any, model: nn.Module, *, device: torch.device, dtype: torch.dtype, seed: int):
        self.options = options
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        self.model = model.to(device=self.device, dtype=dtype)
        self.params = FlatParams(self.model, self.device, dtype)

    def for_model(self, model: nn.Module) -> Problem:
        """The same problem (samples, options, references shared) for another network.

        The coarse levels of a hierarchy in depth train shallower networks on
        the same data.
        """
        other = copy.copy(self)
        other.model = model.to(device=self.device, dtype=self.dtype)
        other.params = FlatParams(other.model, self.device, self.dtype)
        return other

    # -- what the input format needs to know before building -----------------
    @classmethod
    def data_shapes(cls, options: Any) -> tuple[tuple[int, ...], int]:
        """(input shape, output size) of the network for these options."""
        return tuple(cls.input_shape), int(cls.output_dim)

    @classmethod
    def metric_names(cls, options: Any) -> tuple[str, ...]:
        """Names of the metrics :meth:`metrics_from` returns for these options."""
        return tuple(cls.metrics_names)

    # -- training -----------------------------------------------------------
    @abc.abstractmethod
    def training_samples(self, draw: int = 0) -> Samples:
        """The whole training set; the same on every rank for a given seed.

        ``draw`` > 0 asks a resampling problem (``can_resample``) for the set
        of that draw (seeded by ``seed + draw``); others return their one set.
        """

    @abc.abstractmethod
    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        """Weighted loss terms of these rows (0-dim tensors, differentiable in the parameters).

        Each term is ``weight * sum over its rows / samples.counts[term]``;
        the loss is the sum of the terms. With ``second_order`` the graph
        must support a second backward pass (Hessian-vector products); a
        problem whose fast path does not falls back to one that does.
        """

    # -- metrics --------------------------------------------------------------
    @abc.abstractmethod
    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        """Additive partial sums of the metrics over share ``part`` of ``parts`` of the evaluation set."""

    @abc.abstractmethod
    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        """The metrics from the partial sums of :meth:`metric_parts` added over all shares."""

    def metrics(self) -> dict[str, float]:
        """The metrics on the whole evaluation set, computed by this process alone."""
        return self.metrics_from(self.metric_parts(0, 1))

    def solution(self) -> dict | None:
        """The network's output next to the reference on the evaluation set, for plots.

        ``None`` when the problem has none; else a dict with ``inputs`` (N, d),
        ``prediction`` (N,), optionally ``reference`` (N,), ``input_names``
        (d strings) and, for grids, ``grid_shape`` (rows are the C-order
        flattening of ``meshgrid(axis_0, ..., indexing="ij")``). Written to
        ``/solution`` of ``results.h5``.
        """
        return None

    def state_dict(self) -> dict:
        """Problem state to checkpoint; parameters and samples are saved elsewhere."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def relative_error(sums: dict[str, float], error: str = "error_sq", reference: str = "reference_sq") -> float:
    """sqrt(Σ error²) / sqrt(Σ reference²) from partial sums (``inf`` when the reference is zero)."""
    ref = sums[reference]
    return math.sqrt(sums[error]) / math.sqrt(ref) if ref > 0 else math.inf
