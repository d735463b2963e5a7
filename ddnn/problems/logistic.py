"""Binary logistic regression with L2 regularisation: the convex problem of the seed's multilevel results.

    L(w) = (1/N) Σᵢ log(1 + exp(−yᵢ xᵢᵀw)) + (λ/2) ‖w‖²,     yᵢ ∈ {−1, +1}

on LIBSVM files (australian: 690 × 14; gisette: 6000 × 5000), scikit-learn's
bundled breast-cancer set (569 × 30, no download; the ``data`` extra), or a
seeded synthetic set of any shape. The metric the seed plots is the training
error L(w) − L(w*): w* comes from a tight Newton solve once per data set and
λ, cached in the user's cache directory (``$XDG_CACHE_HOME/ddnn`` or
``~/.cache/ddnn``), keyed by a hash of the data, λ and the model.

Sharding is exact: the regulariser is spread over the rows in proportion, so
the shard losses of a data-parallel evaluation add up to L once.

References
----------
C.-C. Chang, C.-J. Lin, LIBSVM: a library for support vector machines, ACM TIST 2 (2011) (the data sets).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from ddnn import datasets
from ddnn.errors import ConfigError
from ddnn.options import option
from ddnn.problems.base import Problem, Samples, share
from ddnn.registry import register

__all__ = ["LogisticOptions", "Logistic", "cache_dir"]


def cache_dir() -> str:
    """The per-user cache directory of ddnn."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "ddnn")


@dataclass(frozen=True)
class LogisticOptions:
    dataset: Literal["synthetic", "libsvm", "breast_cancer"] = option(
        "synthetic", "synthetic (seeded), a LIBSVM file (path), or scikit-learn's breast cancer set"
    )
    path: Optional[str] = option(None, "libsvm: the data file (plain or gzipped)")
    n_features: Optional[int] = option(None, "libsvm: number of features (australian 14, gisette 5000)", min=1)
    n_samples: int = option(690, "synthetic: rows", min=2, max=10**8)
    features: int = option(14, "synthetic: features", min=1, max=10**6)
    reg: float = option(1e-3, "λ of the L2 regulariser (λ/2)|w|²", min=0.0)
    standardize: bool = option(False, "scale every feature to mean 0 and standard deviation 1")
    reference: bool = option(True, "solve for w* (cached) so that the metric suboptimality = L - L* is reported")


@register("problem", "logistic", LogisticOptions)
class Logistic(Problem):
    """L2-regularised binary logistic regression; training loss, L − L* and accuracy as metrics."""

    default_model = {"name": "linear"}
    metrics_names = ("train_loss", "suboptimality", "accuracy")
    higher_is_better = frozenset({"accuracy"})

    def __init__(self, options: LogisticOptions, model, *, device, dtype, seed):
        super().__init__(options, model, device=device, dtype=dtype, seed=seed)
        x, y = _load(options, seed)
        if options.standardize:
            x = (x - x.mean(0)) / x.std(0).clamp_min(1e-12)
        self._samples = Samples.whole({"data": (x, y)}).to(self.device, dtype)
        self.optimum = self._reference() if options.reference else None

    @classmethod
    def data_shapes(cls, options: LogisticOptions) -> tuple[tuple[int, ...], int]:
        if options.dataset == "libsvm":
            return (options.n_features or 1,), 1
        if options.dataset == "breast_cancer":
            return (30,), 1
        return (options.features,), 1

    @classmethod
    def metric_names(cls, options: LogisticOptions) -> tuple[str, ...]:
        return cls.metrics_names if options.reference else ("train_loss", "accuracy")

    @classmethod
    def check_setup(cls, options: LogisticOptions, setup: Any, key: str) -> None:
        if options.dataset == "libsvm":
            if options.path is None or options.n_features is None:
                raise ConfigError(f"{key}.path", "a libsvm data set needs path and n_features")
            if not os.path.isfile(options.path):
                raise ConfigError(f"{key}.path", f"file not found: {options.path}")

    def training_samples(self, draw: int = 0) -> Samples:
        return self._samples

    def loss_terms(self, samples: Samples, *, second_order: bool = False) -> dict[str, torch.Tensor]:
        x, y = samples.terms["data"]
        count = samples.counts["data"]
        margins = self.model(x)[:, 0] * y
        data = F.softplus(-margins).sum() / count
        weights = sum(p.square().sum() for p in self.model.parameters())
        return {"data": data + 0.5 * self.options.reg * weights * (x.shape[0] / count)}

    @torch.no_grad()
    def metric_parts(self, part: int = 0, parts: int = 1) -> dict[str, float]:
        x, y = self._samples.terms["data"]
        rows = share(x.shape[0], part, parts)
        margins = (self.model(x[rows])[:, 0] * y[rows]).to(torch.float64)
        n = x.shape[0]
        reg = 0.5 * self.options.reg * float(sum(p.double().square().sum() for p in self.model.parameters()))
        return {
            "loss_sum": float(F.softplus(-margins).sum()) + reg * margins.numel(),  # reg spread over the rows
            "correct": float((margins > 0).sum()),
            "count": float(margins.numel()),
            "rows": float(n),
        }

    def metrics_from(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["loss_sum"] / sums["rows"]
        out = {"train_loss": loss}
        if self.optimum is not None:
            out["suboptimality"] = loss - self.optimum
        out["accuracy"] = sums["correct"] / max(sums["count"], 1.0)
        return out

    # -- w* ------------------------------------------------------------------------
    def _reference(self) -> float:
        """L(w*) from the cache, else from a Newton solve (then cached atomically)."""
        x, y = self._samples.terms["data"]
        digest = hashlib.sha256()
        for t in (x, y):
            digest.update(t.detach().cpu().double().numpy().tobytes())
        digest.update(repr((self.options.reg, [tuple(p.shape) for p in self.model.parameters()])).encode())
        path = os.path.join(cache_dir(), "logistic", f"{digest.hexdigest()[:32]}.pt")
        try:
            return float(torch.load(path, weights_only=True)["loss"])
        except (OSError, RuntimeError, KeyError, ValueError):
            pass
        loss = newton_minimum(self)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            torch.save({"loss": torch.tensor(loss, dtype=torch.float64)}, tmp)
            os.replace(tmp, path)
        except OSError:  # a read-only home: compute again next time
            pass
        return loss


def newton_minimum(problem: Logistic, tol: float = 1e-13, max_iter: int = 100) -> float:
    """min L by damped Newton in float64 (dense Hessian up to 3,000 parameters, else Newton-CG).

    The loss is strictly convex (λ > 0) or convex: Newton with a backtracking
    line search converges quadratically; stops when |∇L|∞ ≤ tol.
    """
    x, y = (t.detach().to("cpu", torch.float64) for t in problem.training_samples().terms["data"])
    shapes = [tuple(p.shape) for p in problem.model.parameters()]
    names = [n for n, _ in problem.model.named_parameters()]
    sizes = [math.prod(s) for s in shapes]
    model = problem.model  # called with float64 CPU tensors in place of its parameters (functional_call)
    reg = problem.options.reg

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, (t.view(s) for t, s in zip(theta.split(sizes), shapes))))
        out = torch.func.functional_call(model, params, (x,))[:, 0]
        return F.softplus(-out * y).mean() + 0.5 * reg * theta.square().sum()

    theta = torch.zeros(sum(sizes), dtype=torch.float64)
    value = loss_fn(theta)
    for _ in range(max_iter):
        grad = torch.func.grad(loss_fn)(theta)
        if float(grad.abs().max()) <= tol:
            break
        if theta.numel() <= 3000:
            hessian = torch.func.hessian(loss_fn)(theta)
            direction = -torch.linalg.solve(hessian + 1e-14 * torch.eye(theta.numel(), dtype=theta.dtype), grad)
        else:
            point = theta

            def hvp(v: torch.Tensor, point: torch.Tensor = point) -> torch.Tensor:
                return torch.func.jvp(torch.func.grad(loss_fn), (point,), (v,))[1]

            direction = _cg(hvp, -grad)
        step = 1.0
        while step > 1e-12:
            trial = theta + step * direction
            trial_value = loss_fn(trial)
            if trial_value <= value + 1e-4 * step * float(grad @ direction):
                break
            step *= 0.5
        theta, value = trial, trial_value
    return float(value)


def _cg(matvec, b: torch.Tensor, iters: int = 500, tol: float = 1e-14) -> torch.Tensor:
    """Conjugate gradients for A x = b with A symmetric positive definite."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    for _ in range(iters):
        if rr <= tol * tol:
            break
        ap = matvec(p)
        alpha = rr / float(p @ ap)
        x += alpha * p
        r -= alpha * ap
        new = float(r @ r)
        p = r + (new / rr) * p
        rr = new
    return x


def _load(options: LogisticOptions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if options.dataset == "libsvm":
        return datasets.load_libsvm(options.path, options.n_features)
    if options.dataset == "breast_cancer":
        return datasets.load_breast_cancer()
    return datasets.binary_logistic(options.n_samples, options.features, seed)
