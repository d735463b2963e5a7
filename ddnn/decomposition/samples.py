"""Subdomains in data space: chunks of the samples of a batch (APTS in data).

The global batch D_b is split into S contiguous, near-equal chunks D_b^s of
every loss term (the same split as the data-parallel shards, so chunk p on
rank p is that rank's shard when S equals the number of ranks). With
``overlap`` percent, chunk s also holds that share of the next chunk's rows
(repeated sampling). Every chunk is a batch of its own: its loss is the mean
over its rows.

Local problem s minimises the chunk loss made first-order consistent with
the batch loss at the outer iterate θ₀ (Gross & Krause 2009; the seed's APTS
in data):

    h_s(θ) = L(θ; D_b^s) + ⟨∇L(θ₀; D_b) − ∇L(θ₀; D_b^s), θ − θ₀⟩,

so that ∇h_s(θ₀) = ∇L(θ₀; D_b). Its unknowns are all of θ (R_s = E_s = I),
and the local corrections add up (weights one).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ddnn.decomposition.base import Decomposition
from ddnn.samples import Samples, num_rows, slice_rows

__all__ = ["SampleDecomposition", "ChunkSource"]


class ChunkSource:
    """Chunk s of the current batch of another sample source (re-cut whenever that batch changes)."""

    def __init__(self, source: Any, decomposition: SampleDecomposition, s: int):
        self.source = source
        self.decomposition = decomposition
        self.s = s
        self._key: int | None = None
        self._batch: Samples | None = None

    @property
    def key(self) -> int:
        return self.source.key

    @property
    def batch(self) -> Samples:
        if self._key != self.source.key or self._batch is None:
            self._batch = self.decomposition.chunk(self.source.batch, self.s)
            self._key = self.source.key
        return self._batch


class SampleDecomposition(Decomposition):
    """S chunks of the samples of every batch.

    Parameters
    ----------
    chunks : number S of chunks
    overlap : percent of the next chunk's rows each chunk also holds
    """

    kind = "samples"

    def __init__(self, chunks: int, overlap: float = 0.0):
        if chunks < 1:
            raise ValueError(f"need at least one chunk, got {chunks}")
        if not 0.0 <= overlap < 100.0:
            raise ValueError(f"overlap must be in [0, 100) percent, got {overlap}")
        self.chunks = chunks
        self.overlap = overlap

    def __len__(self) -> int:
        return self.chunks

    def chunk(self, batch: Samples, s: int) -> Samples:
        """Chunk s of ``batch``: its own rows (plus the overlap), averaged over its own counts."""
        parts = self.chunks
        terms = {}
        for name, rows in batch.terms.items():
            n = num_rows(rows)
            lo, hi = (n * s) // parts, (n * (s + 1)) // parts
            part = slice_rows(rows, lo, hi)
            extra = math.ceil(self.overlap / 100.0 * (hi - lo)) if parts > 1 else 0
            if extra:
                nxt = (s + 1) % parts
                nlo = (n * nxt) // parts
                more = slice_rows(rows, nlo, min(nlo + extra, (n * (nxt + 1)) // parts))
                part = (
                    tuple(torch.cat([a, b]) for a, b in zip(part, more))
                    if isinstance(part, tuple)
                    else torch.cat([part, more])
                )
            terms[name] = part
        counts = {k: num_rows(v) for k, v in terms.items()}
        own = sum(counts.values())
        fraction = batch.fraction * own / max(batch.rows, 1) if batch.rows else 0.0
        return Samples(terms, counts, fraction)

    def restrict(self, theta: torch.Tensor, s: int) -> torch.Tensor:
        """R_s θ = θ (every chunk's problem has all parameters)."""
        return theta

    def extend(self, y: torch.Tensor, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """E_s y = y (added into ``out`` when given)."""
        if out is None:
            return y.clone()
        return out.add_(y)

    def weights(self, s: int, like: torch.Tensor) -> torch.Tensor:
        """Ones: the local corrections of the chunks add up."""
        return torch.ones_like(like)

    def extend_weighted(self, y: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
        return out.add_(y)

    def local_radius(self, radius: float, norm: str) -> float:
        """Δ/S: the S local corrections add up (triangle inequality, any norm)."""
        return radius / self.chunks

    def local_objective(self, objective: Any, s: int) -> Any:
        """h_s: the loss on chunk s of the current batch, shifted by :meth:`begin` (a ``ShiftedObjective``)."""
        from ddnn.solvers.objective import ShiftedObjective  # solvers build on decompositions, not back

        return ShiftedObjective(objective.on(ChunkSource(objective.source, self, s), objective.comm))

    def begin(self, s: int, local: Any, theta: torch.Tensor, current: Any) -> torch.Tensor:
        """Shift h_s to be first-order consistent at θ: c = ∇L(θ; D_b) − ∇L(θ; D_b^s).

        One local gradient evaluation of the chunk loss (*Collective* over the
        chunk's communicator). The local start is θ.
        """
        chunk_grad = local.base.evaluate(theta, grad=True).grad
        local.set_shift(current.grad - chunk_grad, theta)
        return theta
