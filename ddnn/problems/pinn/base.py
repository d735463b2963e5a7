"""Shared machinery of the PINN problems: options, sampling, loss terms, error metric.

A PINN problem (Raissi, Perdikaris & Karniadakis 2019) trains u(θ; x) to
satisfy a PDE residual r(u) = 0 at interior collocation points and the
boundary and initial data at points of ∂Ω and t = 0. Each loss term is

    L_term(θ) = weight_term · Σ_{rows} misfit² / n_term,

the sum over the rows this rank is given divided by the *global* number of
rows of that term (``Samples.counts``), so that the shard losses of a
data-parallel evaluation add up to the whole-set loss. The error metric is
the relative L2 error ‖u_θ − u_ref‖₂ / ‖u_ref‖₂ on a fixed evaluation grid.

References
----------
M. Raissi, P. Perdikaris, G. E. Karniadakis, "Physics-informed neural
networks: A deep learning framework for solving forward and inverse problems
involving nonlinear partial differential equations", J. Comput. Phys. 378
(2019) 686-707.
A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, "Enhancing
training of physics-informed neural networks using domain-decomposition
based preconditioning strategies", SIAM J. Sci. Comput. (2024).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from ddnn.options import option
from ddnn.problems.base import Problem, Samples, relative_error, share
from ddnn.problems.pinn.derivatives import Jet, autograd_jet, mlp_jet, supports_jet
from ddnn.problems.pinn.sampling import sub_seed

__all__ = ["PINNOptions", "TimeDependentPINNOptions", "PINNProblem"]


@dataclass(frozen=True)
class PINNOptions:
    """Options common to every PINN problem."""

    n_interior: int = option(10000, "interior collocation points", min=1, max=10**9)
    n_boundary: int = option(1000, "boundary points", min=0, max=10**9)
    sampling: Literal["latin_hypercube", "sobol", "uniform"] = option(
        "latin_hypercube", "how collocation and boundary points are drawn"
    )
    weight_interior: float = option(1.0, "weight of the PDE residual term", min=0.0)
    weight_boundary: float = option(1.0, "weight of the boundary misfit term", min=0.0)
    derivatives: Literal["taylor", "autograd"] = option(
        "taylor", "input derivatives: forward Taylor jets through the MLP, or nested autograd (reference)"
    )


@dataclass(frozen=True)
class TimeDependentPINNOptions(PINNOptions):
    """PINN options with an initial condition at t = 0."""

    n_initial: int = option(1000, "initial-condition points (t = 0)", min=0, max=10**9)
    weight_initial: float = option(1.0, "weight of the initial misfit term", min=0.0)


class PINNProblem(Problem):
    """A PINN problem: sampling, weighted mean-square loss terms and the relative L2 error.

    Subclasses define the geometry (:meth:`draw`), the derivatives the
    residual needs (``first``, ``second``, ``combined``, as for
    :func:`ddnn.problems.pinn.derivatives.mlp_jet`), the residual
    (:meth:`residual`), the data misfits (:meth:`misfit`) and the reference
    on the evaluation grid (:meth:`evaluation_grid`).

    Derivatives come from the forward Taylor jet when
    ``options.derivatives == "taylor"`` and the model is a plain MLP with a
    supported activation (:func:`~ddnn.problems.pinn.derivatives.supports_jet`),
    otherwise from nested autograd. The jet's hand-written backward is not
    differentiable again, so loss terms asked for with ``second_order``
    (Hessian-vector products) use nested autograd.

    Sampled terms: ``interior`` rows hold the input coordinates; ``boundary``
    and ``initial`` rows hold the coordinates followed by the target values.
    Every term draws from its own random stream derived from the seed.
    """

    input_dim: ClassVar[int] = 2
    input_shape: ClassVar[tuple[int, ...]] = (2,)
    output_dim: ClassVar[int] = 1
    metrics_names: ClassVar[tuple[str, ...]] = ("rel_l2_error",)
    can_resample: ClassVar[bool] = True
    #: derivatives the interior residual needs
    first: ClassVar[tuple[int, ...]] = ()
    second: ClassVar[tuple[int, ...]] = ()
    combined: ClassVar[tuple[Mapping[int, float], ...]] = ()
    #: loss terms; term number k draws from the stream ``sub_seed(seed, k)``
    terms: ClassVar[tuple[str, ...]] = ("interior", "boundary")
    #: points per chunk when evaluating the error metric
    metric_chunk: ClassVar[int] = 65536
    #: names of the input columns and the shape of the evaluation grid (ij meshgrid, C order)
    input_names: ClassVar[tuple[str, ...]] = ("x", "t")
    grid_shape: ClassVar[tuple[int, ...] | None] = None

    def __init__(self, options: Any, model: nn.Module, *, device: torch.device, dtype: torch.dtype, seed: int):
        super().__init__(options, model, device=device, dtype=dtype, seed=seed)
        self.use_jet = options.derivatives == "taylor" and supports_jet(self.model)
        self._grid: tuple[torch.Tensor, torch.Tensor] | None = None
        self._training: Samples | None = None

    def for_model(self, model: nn.Module) -> PINNProblem:
        other = super().for_model(model)
        other.use_jet = self.options.derivatives == "taylor" and supports_jet(other.model)
        return other

    # -- to be defined by each problem -------------------------------------

    @abc.abstractmethod
    def draw(self, term: str, n: int, seed: int) -> torch.Tensor:
        """``n`` rows of ``term`` (float64, CPU) drawn with ``seed``."""

    @abc.abstractmethod
    def residual(self, x: torch.Tensor, jet: Jet) -> torch.Tensor:
        """PDE residual (N,) at interior points ``x`` from the jet of u there."""

    @abc.abstractmethod
    def evaluation_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Evaluation points (M, input_dim) and the reference u there (M,), float64."""

    def misfit(self, term: str, rows: torch.Tensor, second_order: bool = False) -> torch.Tensor:
        """Data misfit (N,) or (N, c) of a boundary or initial term: u − target by default."""
        x, target = rows[:, : self.input_dim], rows[:, self.input_dim]
        return self.model(x)[:, 0] - target

    def term_size(self, term: str) -> int:
        """Number of rows of ``term`` from the options."""
        return int(getattr(self.options, f"n_{term}"))

    def term_weight(self, term: str) -> float:
        return float(getattr(self.options, f"weight_{term}"))

    # -- the protocol --------------------------------------------------------

    def jet(self, x: torch.Tensor, second_order: bool = False) -> Jet:
        """u and the residual's derivatives at points ``x`` (twice differentiable with ``second_order``)."""
        fn = mlp_jet if self.use_jet and not second_order else autograd_jet
        return fn(self.model, x, self.first, self.second, self.combined)

    def sample(self, seed: int) -> Samples:
        """Every term drawn with streams derived from ``seed``, on the problem's device and dtype."""
        terms = {}
        for index, term in enumerate(self.terms):
            rows = self.draw(term, self.term_size(term), sub_seed(seed, index))
            terms[term] = rows.to(device=self.device, dtype=self.dtype)
        return Samples.whole(terms)

    def training_samples(self, draw: int = 0) -> Samples:
        """The collocation and data points of draw ``draw``, seeded by ``seed + draw`` (draw 0 cached)."""
        if draw:
            return self.sample(self.seed + draw)
        if self._training is None:
            self._training = self.sample(self.seed)
        return self._training

    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        out = {}
        for term, rows in samples.terms.items():
            if term not in self.terms:
                raise KeyError(f"{type(self).__name__} has no loss term {term!r}; known: {', '.join(self.terms)}")
            if term == "interior":
                x = rows[:, : self.input_dim]
                r = self.residual(x, self.jet(x, second_order))
            else:
                r = self.misfit(term, rows, second_order)
            count = max(int(samples.counts.get(term, rows.shape[0])), 1)
            out[term] = r.square().sum() * (self.term_weight(term) / count)
        return out

    @torch.no_grad()
    def _predict_on_grid(self, part: int = 0, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Share ``part`` of ``parts`` of the evaluation points, the network's u there (float64), the reference."""
        if self._grid is None:
            points, reference = self.evaluation_grid()
            self._grid = (
                torch.as_tensor(points, dtype=self.dtype, device=self.device),
                torch.as_tensor(reference, dtype=torch.float64, device=self.device),
            )
        rows = share(self._grid[0].shape[0], part, parts)
        points, reference = self._grid[0][rows], self._grid[1][rows]
        u = torch.cat([self.model(chunk)[:, 0] for chunk in points.split(self.metric_chunk)])
        return points, u.to(torch.float64), reference

    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        _, u, reference = self._predict_on_grid(part, parts)
        return {"error_sq": float((u - reference).square().sum()), "reference_sq": float(reference.square().sum())}

    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        return {"rel_l2_error": relative_error(sums)}

    def solution(self) -> dict:
        """u of the network and the reference on the evaluation grid (see :meth:`Problem.solution`)."""
        points, u, reference = self._predict_on_grid()
        return {
            "inputs": points.to(torch.float64).cpu().numpy(),
            "prediction": u.cpu().numpy(),
            "reference": reference.cpu().numpy(),
            "input_names": self.input_names,
            "grid_shape": self.grid_shape,
        }
