"""Small objectives and problems shared by the tests.

:class:`FunctionObjective` gives any differentiable closed-form function of a
flat vector the objective protocol (``evaluate(theta, grad=True) ->
Evaluation``) with autograd gradients; the builders below return the usual
test functions. :class:`LeastSquaresProblem` is a tiny registered-free
:class:`~ddnn.problems.base.Problem` (an MLP fitted to a smooth target) for
tests that need a real :class:`~ddnn.solvers.objective.Objective`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ddnn.counters import Counters
from ddnn.models.mlp import MLP, MLPOptions
from ddnn.problems.base import Problem, Samples
from ddnn.solvers.objective import Evaluation, Objective

__all__ = [
    "FunctionObjective",
    "quadratic",
    "random_spd",
    "rosenbrock",
    "logistic_regression",
    "LeastSquaresProblem",
    "make_mlp",
    "least_squares_objective",
    "REPO",
    "subprocess_env",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m ddnn`` (or mpiexec) child: this repository on the path,
    one thread, and no variables of an enclosing MPI launch or of ddnn's own switches."""
    from ddnn.parallel import LAUNCH_VARS

    dropped = (*LAUNCH_VARS, "SLURM_NTASKS")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("DDNN_")}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


class FunctionObjective:
    """f(θ) given as a torch function of a flat vector, with autograd gradients.

    Parameters
    ----------
    fn : θ -> 0-dim tensor
    n : length of θ (informational)

    Attributes
    ----------
    counters : ``grad_evals`` and ``loss_evals`` as the real objective counts them
    points : every θ evaluated, when ``record`` is true
    """

    key = 0  # the function never changes
    comm = None

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], n: int | None = None, record: bool = False):
        self.fn = fn
        self.n = n
        self.counters = Counters()
        self.record = record
        self.points: list[torch.Tensor] = []

    @property
    def is_collective(self) -> bool:
        return False

    @property
    def evaluations(self) -> int:
        return int(self.counters["grad_evals"] + self.counters["loss_evals"])

    def evaluate(self, theta: torch.Tensor, grad: bool = True, batch=None) -> Evaluation:
        if self.record:
            self.points.append(theta.detach().clone())
        x = theta.detach().clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            loss = self.fn(x)
        self.counters.add("grad_evals" if grad else "loss_evals")
        g = torch.autograd.grad(loss, x)[0] if grad else None
        return Evaluation(float(loss.detach()), g)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor, batch=None) -> torch.Tensor:
        """∇²f(θ) v by double backward (counted as ``hess_evals``)."""
        x = theta.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.fn(x), x, create_graph=True)
        self.counters.add("hess_evals")
        return torch.autograd.grad(g @ v, x)[0]


def random_spd(n: int, cond: float = 10.0, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random symmetric positive definite matrix with eigenvalues spread over [1, cond]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    eig = torch.logspace(0.0, torch.log10(torch.tensor(cond)).item(), n, dtype=dtype)
    return (q * eig) @ q.T


def quadratic(a: torch.Tensor, b: torch.Tensor, centred: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) = ½ xᵀAx − bᵀx (minimiser x* = A⁻¹b).

    With ``centred`` the same function up to a constant, ½ (x − x*)ᵀA(x − x*)
    with x* solved once: its minimum value is 0, so function values resolve
    the last digits of x near x* (needed to converge line searches to
    round-off).
    """
    if centred:
        xstar = torch.linalg.solve(a, b)

        def f(x: torch.Tensor) -> torch.Tensor:
            r = x - xstar
            return 0.5 * r @ (a @ r)

        return f

    def f(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x @ (a @ x) - b @ x

    return f


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)², minimiser (1, …, 1)."""
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


def logistic_regression(
    rows: int = 60, features: int = 5, reg: float = 1e-2, seed: int = 0, dtype: torch.dtype = torch.float64
) -> Callable[[torch.Tensor], torch.Tensor]:
    """L2-regularised logistic regression on random separable-ish data (labels ±1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=gen, dtype=dtype)
    w = torch.randn(features, generator=gen, dtype=dtype)
    y = torch.sign(x @ w + 0.5 * torch.randn(rows, generator=gen, dtype=dtype))

    def f(theta: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-y * (x @ theta)).mean() + 0.5 * reg * theta @ theta

    return f


@dataclass(frozen=True)
class _NoOptions:
    pass


class LeastSquaresProblem(Problem):
    """Fit u(x) = sin(πx₀) cos(x₁) with an MLP: one loss term ``data`` = mean squared error."""

    input_shape = (2,)
    output_dim = 1

    def __init__(self, model: torch.nn.Module, rows: int = 32, dtype: torch.dtype = torch.float64, seed: int = 0):
        super().__init__(_NoOptions(), model, device=torch.device("cpu"), dtype=dtype, seed=seed)
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.rand(rows, 2, generator=gen, dtype=dtype) * 2 - 1
        u = torch.sin(torch.pi * x[:, :1]) * torch.cos(x[:, 1:])
        self._samples = Samples.whole({"data": torch.cat([x, u], 1)})

    def training_samples(self, draw: int = 0) -> Samples:
        return self._samples

    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        rows = samples.terms["data"]
        residual = self.model(rows[:, :2]) - rows[:, 2:]
        return {"data": (residual**2).sum() / samples.counts["data"]}

    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        return {}

    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        return {}


def make_mlp(width: int = 8, depth: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> MLP:
    """A small tanh MLP with 2 inputs and 1 output, initialised from ``seed``."""
    torch.manual_seed(seed)
    return MLP(MLPOptions(width=width, depth=depth), 2, 1).to(dtype)


def least_squares_objective(
    width: int = 8, depth: int = 2, rows: int = 32, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[Objective, LeastSquaresProblem]:
    """A real :class:`Objective` on :class:`LeastSquaresProblem` (rank-local)."""
    problem = LeastSquaresProblem(make_mlp(width, depth, seed, dtype), rows, dtype, seed)
    return Objective(problem, problem.training_samples()), problem
