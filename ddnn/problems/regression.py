"""A small smooth regression problem: fit an MLP to a known function of two variables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ddnn.options import option
from ddnn.problems.base import Problem, Samples, relative_error, share
from ddnn.registry import register

__all__ = ["Regression", "RegressionOptions", "TARGETS"]


def _sin_cos(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


def _peaks(x: torch.Tensor) -> torch.Tensor:
    r2 = x.pow(2).sum(dim=1)
    return torch.exp(-4 * r2) + 0.5 * torch.tanh(3 * x[:, 0] - 2 * x[:, 1])


TARGETS = {"sin_cos": _sin_cos, "peaks": _peaks}


@dataclass(frozen=True)
class RegressionOptions:
    n_samples: int = option(2000, "training samples drawn uniformly in [-1, 1]^2", min=1, max=10**9)
    target: Literal["sin_cos", "peaks"] = option("sin_cos", "the function to fit: sin(pi x) cos(pi y), or peaks")
    noise: float = option(0.0, "standard deviation of Gaussian noise added to the targets", min=0.0)
    n_test: int = option(64, "test grid points per dimension for rel_l2_error", min=2, max=10**4)


@register("problem", "regression", RegressionOptions)
class Regression(Problem):
    """Least-squares fit of a smooth function on [-1, 1]^2 (mean squared error; rel_l2_error on a grid).

    Rows of the single loss term ``data`` are ``(x, y, target)``.
    """

    input_shape = (2,)
    output_dim = 1
    metrics_names = ("rel_l2_error",)
    default_model = {"name": "mlp", "width": 32, "depth": 2, "activation": "tanh"}

    def __init__(self, options: RegressionOptions, model, *, device, dtype, seed):
        super().__init__(options, model, device=device, dtype=dtype, seed=seed)
        self._target = TARGETS[options.target]
        grid = torch.linspace(-1, 1, options.n_test, dtype=torch.float64)
        xx, yy = torch.meshgrid(grid, grid, indexing="ij")
        test = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
        self._test_x = test.to(self.device, dtype)
        self._test_y = self._target(test).to(self.device, dtype)
        self._samples: Samples | None = None

    def training_samples(self, draw: int = 0) -> Samples:
        if self._samples is None:
            gen = torch.Generator().manual_seed(self.seed)
            x = torch.rand(self.options.n_samples, 2, generator=gen, dtype=torch.float64) * 2 - 1
            y = self._target(x) + self.options.noise * torch.randn(x.shape[0], generator=gen, dtype=torch.float64)
            rows = torch.cat([x, y[:, None]], dim=1).to(self.device, self.dtype)
            self._samples = Samples.whole({"data": rows})
        return self._samples

    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        rows = samples.terms["data"]
        residual = self.model(rows[:, :2]).squeeze(-1) - rows[:, 2]
        return {"data": residual.pow(2).sum() / samples.counts["data"]}

    @torch.no_grad()
    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        rows = share(self._test_x.shape[0], part, parts)
        y = self._test_y[rows].to(torch.float64)
        error = self.model(self._test_x[rows]).squeeze(-1).to(torch.float64) - y
        return {"error_sq": float(error.square().sum()), "reference_sq": float(y.square().sum())}

    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        return {"rel_l2_error": relative_error(sums)}
