"""Training rows grouped by loss term, with the counts their losses are averaged over.

A problem's training set is a :class:`Samples`: for every loss term (the
interior residual and the boundary data of a PINN, the labelled images of a
classifier) the rows of that term, as one tensor or as a tuple of tensors
that share their first dimension (inputs of any shape ``(N, C, H, W)`` next
to integer labels ``(N,)``).

Losses are written so that sharding is exact: every loss term is a weighted
*sum* over the rows it is given divided by ``counts[term]``, the number of
rows of that term in the *whole batch* being evaluated (over all ranks). The
sum over ranks of the shard losses is then the loss on the whole batch, and
a rank evaluating all rows gets it alone. ``fraction`` is the share of the
whole training set that the batch represents; evaluations are counted in
units of full-data gradients with it (a gradient on a 10 % batch adds 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch

__all__ = ["Rows", "Samples", "num_rows", "take_rows", "slice_rows"]

Rows = Union[torch.Tensor, tuple[torch.Tensor, ...]]
"""The rows of one loss term: a tensor, or a tuple of tensors sharing their first dimension."""


def num_rows(rows: Rows) -> int:
    """Number of rows (the first dimension)."""
    return int((rows[0] if isinstance(rows, tuple) else rows).shape[0])


def take_rows(rows: Rows, index: torch.Tensor) -> Rows:
    """The rows at ``index`` (a gather: a new tensor)."""
    if isinstance(rows, tuple):
        return tuple(r[index.to(r.device)] for r in rows)
    return rows[index.to(rows.device)]


def slice_rows(rows: Rows, lo: int, hi: int) -> Rows:
    """Rows ``lo:hi`` (views, no copy)."""
    if isinstance(rows, tuple):
        return tuple(r[lo:hi] for r in rows)
    return rows[lo:hi]


def _cast(t: torch.Tensor, device: Any, dtype: torch.dtype | None) -> torch.Tensor:
    """``t`` on ``device``; floating-point tensors also in ``dtype`` (integer labels stay integers)."""
    return t.to(device=device, dtype=dtype if t.is_floating_point() else None)


@dataclass(frozen=True)
class Samples:
    """Training rows grouped by loss term.

    Attributes
    ----------
    terms : term name -> :data:`Rows`; the columns are the problem's own
        (e.g. ``x, t`` for collocation points, ``x, t, u`` for boundary
        data, ``(images, labels)`` for a classifier)
    counts : term name -> the number of rows the term is averaged over (the
        rows of the whole batch, summed over ranks)
    fraction : the share of the whole training set these counts represent
    """

    terms: dict[str, Rows]
    counts: dict[str, int]
    fraction: float = 1.0

    @classmethod
    def whole(cls, terms: dict[str, Rows]) -> Samples:
        """Samples whose counts are their own row counts (a whole training set)."""
        return cls(dict(terms), {k: num_rows(v) for k, v in terms.items()}, 1.0)

    @property
    def rows(self) -> int:
        """Rows held here, all terms together."""
        return sum(num_rows(v) for v in self.terms.values())

    def size(self, term: str) -> int:
        return num_rows(self.terms[term])

    def shard(self, part: int, parts: int) -> Samples:
        """Rows ``part`` of ``parts`` contiguous, near-equal chunks of every term (views; counts kept)."""
        if not 0 <= part < parts:
            raise ValueError(f"part {part} of {parts}")
        if parts == 1:
            return self
        out = {}
        for name, rows in self.terms.items():
            n = num_rows(rows)
            out[name] = slice_rows(rows, (n * part) // parts, (n * (part + 1)) // parts)
        return Samples(out, dict(self.counts), self.fraction)

    def select(self, indices: dict[str, torch.Tensor], total_rows: int | None = None) -> Samples:
        """A batch of its own: the rows ``indices[name]`` of every term (absent terms keep no rows).

        Its counts are its own row counts; ``fraction`` is its rows over
        ``total_rows`` (by default the rows held here).
        """
        out = {}
        for name, rows in self.terms.items():
            idx = indices.get(name)
            out[name] = take_rows(rows, idx) if idx is not None else slice_rows(rows, 0, 0)
        batch = Samples.whole(out)
        total = self.rows if total_rows is None else total_rows
        return Samples(batch.terms, batch.counts, batch.rows / total if total else 0.0)

    def with_counts(self, counts: dict[str, int], fraction: float | None = None) -> Samples:
        return Samples(dict(self.terms), dict(counts), self.fraction if fraction is None else fraction)

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> Samples:
        """On ``device``; floating-point tensors in ``dtype``, integer tensors (labels) kept integer."""
        moved = {
            k: tuple(_cast(t, device, dtype) for t in v) if isinstance(v, tuple) else _cast(v, device, dtype)
            for k, v in self.terms.items()
        }
        return Samples(moved, dict(self.counts), self.fraction)
