"""Collocation points in boxes: Latin hypercube, scrambled Sobol, uniform.

Every sampler is a pure function of its seed, so that every rank draws the
same training set without communicating.

References
----------
M. D. McKay, R. J. Beckman, W. J. Conover, "A comparison of three methods
for selecting values of input variables in the analysis of output from a
computer code", Technometrics 21 (1979) 239-245 (Latin hypercube sampling).
A. B. Owen, "Scrambling Sobol' and Niederreiter-Xing points", J. Complexity
14 (1998) 466-489 (scrambled Sobol sequences, as in
:class:`torch.quasirandom.SobolEngine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ddnn.sampler import sub_seed

__all__ = ["SAMPLING_METHODS", "sample_box", "sub_seed"]

SAMPLING_METHODS = ("latin_hypercube", "sobol", "uniform")

Method = Literal["latin_hypercube", "sobol", "uniform"]


def _unit_cube(method: str, n: int, d: int, seed: int) -> torch.Tensor:
    """``n`` points in ``[0, 1)^d`` (float64)."""
    if method == "sobol":
        engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
        return engine.draw(n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    if method == "uniform":
        return torch.rand(n, d, generator=gen, dtype=torch.float64)
    if method == "latin_hypercube":
        # Column j: point k lies in stratum perm_j[k], i.e. in [perm/n, (perm+1)/n),
        # at a uniform position inside it; every stratum holds exactly one point.
        out = torch.empty(n, d, dtype=torch.float64)
        zero = torch.zeros((), dtype=torch.float64)
        for j in range(d):
            perm = torch.randperm(n, generator=gen).to(torch.float64)
            jitter = torch.rand(n, generator=gen, dtype=torch.float64)
            # (perm + jitter) / n may round up to (perm + 1) / n: keep it inside its stratum
            out[:, j] = torch.minimum((perm + jitter) / n, torch.nextafter((perm + 1) / n, zero))
        return out
    raise ValueError(f"unknown sampling method {method!r}; known: {', '.join(SAMPLING_METHODS)}")


def sample_box(method: Method, n: int, lows: Sequence[float], highs: Sequence[float], seed: int) -> torch.Tensor:
    """``n`` points in the box ``[lows, highs)`` (one row per point, float64, CPU).

    Parameters
    ----------
    method : ``"latin_hypercube"`` (one point per stratum ``[k/n, (k+1)/n)`` of
        every coordinate, strata matched by independent random permutations),
        ``"sobol"`` (Owen-scrambled Sobol points, scrambling seeded by
        ``seed``) or ``"uniform"`` (independent uniform points)
    n : number of points (0 gives an empty ``(0, d)`` tensor)
    lows, highs : the box corners, one entry per dimension
    seed : the same seed gives the same points

    Returns
    -------
    torch.Tensor of shape ``(n, d)``, dtype float64
    """
    lo = torch.as_tensor(lows, dtype=torch.float64).reshape(-1)
    hi = torch.as_tensor(highs, dtype=torch.float64).reshape(-1)
    if lo.shape != hi.shape:
        raise ValueError(f"lows and highs differ in length: {lo.numel()} vs {hi.numel()}")
    if bool((hi < lo).any()):
        raise ValueError("every high must be at least its low")
    if n < 0:
        raise ValueError(f"number of points must be >= 0, got {n}")
    d = lo.numel()
    if n == 0:
        if method not in SAMPLING_METHODS:
            raise ValueError(f"unknown sampling method {method!r}; known: {', '.join(SAMPLING_METHODS)}")
        return torch.empty(0, d, dtype=torch.float64)
    unit = _unit_cube(method, n, d, int(seed) & 0x7FFFFFFFFFFFFFFF)
    return lo + (hi - lo) * unit
