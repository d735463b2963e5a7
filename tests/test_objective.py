"""Objectives: batches, Hessian-vector products, shifted and block views, counting, train/eval modes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import LeastSquaresProblem, make_mlp

from ddnn import config as cfg
from ddnn import registry
from ddnn.options import option
from ddnn.parallel import SerialComm
from ddnn.problems.base import Problem
from ddnn.registry import build
from ddnn.run import Run
from ddnn.sampler import Sampler
from ddnn.samples import Samples
from ddnn.solvers.objective import Objective, ShiftedObjective

F64 = torch.float64


def _problem(rows=24, depth=2, seed=0):
    return LeastSquaresProblem(make_mlp(width=5, depth=depth, seed=seed), rows=rows, seed=seed)


def _functional(problem: LeastSquaresProblem, samples: Samples):
    """The loss as a pure function of the flat vector (for dense references)."""
    model = problem.model
    names = [s.name for s in problem.params.slices]
    shapes = [s.shape for s in problem.params.slices]
    bounds = [(s.start, s.stop) for s in problem.params.slices]
    rows = samples.terms["data"]

    def loss(theta):
        params = {n: theta[a:b].view(shape) for n, shape, (a, b) in zip(names, shapes, bounds)}
        out = torch.func.functional_call(model, params, (rows[:, :2],))
        return ((out - rows[:, 2:]) ** 2).sum() / samples.counts["data"]

    return loss


def test_evaluate_on_a_given_batch_and_the_default_one():
    problem = _problem()
    sampler = Sampler(problem, batch_size=8, seed=1)
    objective = Objective(problem, sampler)
    theta = problem.params.flat.clone()
    batch = sampler.batch
    ev = objective.evaluate(theta)
    expected = _functional(problem, batch)(theta)
    assert ev.loss == pytest.approx(float(expected), rel=1e-14)
    other = problem.training_samples().select({"data": torch.arange(20, 24)})
    ev_other = objective.evaluate(theta, batch=other)
    assert ev_other.loss == pytest.approx(float(_functional(problem, other)(theta)), rel=1e-14)
    # value and gradient at two points on the same batch (SVRG, SARAH)
    theta2 = theta + 0.01
    a, b = objective.evaluate(theta, batch=other), objective.evaluate(theta2, batch=other)
    ref = torch.func.grad(_functional(problem, other))
    torch.testing.assert_close(a.grad, ref(theta), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.grad, ref(theta2), rtol=1e-12, atol=1e-14)


def test_work_counts_the_share_of_the_training_set():
    problem = _problem(rows=40)
    sampler = Sampler(problem, batch_size=10, seed=0)
    objective = Objective(problem, sampler)
    theta = problem.params.flat.clone()
    for _ in range(3):
        objective.evaluate(theta)
        sampler.advance()
    objective.evaluate(theta, grad=False)
    objective.hvp(theta, torch.ones_like(theta))
    c = objective.counters
    assert c["grad_evals"] == 3 and c["grad_work"] == pytest.approx(0.75)
    assert c["loss_evals"] == 1 and c["loss_work"] == pytest.approx(0.25)
    assert c["hess_evals"] == 1 and c["hess_work"] == pytest.approx(0.25)
    local = objective.local(None, "local_grad_evals")
    local.evaluate(theta, batch=problem.training_samples())
    assert c["local_grad_evals"] == 1 and c["local_grad_work"] == 1.0


def test_hessian_vector_product_matches_the_dense_hessian():
    problem = _problem(depth=2)
    objective = Objective(problem, problem.training_samples())
    theta = problem.params.flat.clone() + 0.05
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    hessian = torch.autograd.functional.hessian(_functional(problem, problem.training_samples()), theta)
    torch.testing.assert_close(objective.hvp(theta, v), hessian @ v, rtol=1e-11, atol=1e-12)
    # a block's Hessian times a block vector
    block = objective.restrict(10, 30)
    block.set_base(theta)
    hv = block.hvp(theta[10:30], v[10:30])
    torch.testing.assert_close(hv, hessian[10:30, 10:30] @ v[10:30], rtol=1e-11, atol=1e-12)


def test_hvp_of_a_pinn_through_the_taylor_path_falls_back_to_nested_autograd():
    raw = {"name": "burgers", "n_interior": 40, "n_boundary": 10, "n_initial": 10}
    products = []
    for derivatives in ("taylor", "autograd"):
        section = cfg.section("problem", {**raw, "derivatives": derivatives})
        torch.manual_seed(0)
        model = build("model", cfg.section("model", {"name": "mlp", "width": 6, "depth": 2}), (2,), 1)
        problem = registry.lookup("problem", "burgers").cls(
            section.options, model, device=torch.device("cpu"), dtype=F64, seed=0
        )
        objective = Objective(problem, problem.training_samples())
        theta = problem.params.flat.clone()
        v = torch.linspace(-1, 1, theta.numel(), dtype=F64)
        products.append(objective.hvp(theta, v))
        # the gradient itself still goes through the fast path when asked for
        assert problem.use_jet == (derivatives == "taylor")
    torch.testing.assert_close(products[0], products[1], rtol=0, atol=0)


def test_shifted_objective_shifts_the_value_and_the_gradient():
    """h(θ) = L(θ) + ⟨c, θ − θ₀⟩: ∇h = ∇L + c (shifting the value only is a known mistake)."""
    problem = _problem()
    base = Objective(problem, problem.training_samples())
    theta0 = problem.params.flat.clone()
    target = torch.linspace(-1, 1, theta0.numel(), dtype=F64)  # the gradient h must have at θ₀
    c = target - base.evaluate(theta0).grad
    h = ShiftedObjective(base)
    h.set_shift(c, theta0)
    at0 = h.evaluate(theta0)
    torch.testing.assert_close(at0.grad, target, rtol=1e-13, atol=1e-14)
    assert at0.loss == base.evaluate(theta0).loss
    theta = theta0 + 0.01 * target
    ev = h.evaluate(theta)
    assert ev.loss == pytest.approx(base.evaluate(theta).loss + float(c @ (theta - theta0)), rel=1e-13)
    # the gradient is that of the shifted value: a central difference along a direction agrees
    d, eps = torch.cos(torch.arange(theta.numel(), dtype=F64)), 1e-6
    slope = (h.evaluate(theta + eps * d, grad=False).loss - h.evaluate(theta - eps * d, grad=False).loss) / (2 * eps)
    assert slope == pytest.approx(float(ev.grad @ d), rel=1e-6)
    torch.testing.assert_close(h.hvp(theta, d), base.hvp(theta, d), rtol=0, atol=0)


# -- train and eval modes ----------------------------------------------------------------------

MODES: list[tuple[str, bool]] = []


@dataclasses.dataclass(frozen=True)
class _ProbeOptions:
    rows: int = option(8, "rows", min=1)


class _ModeProbe(Problem):
    """Records the model's mode when the loss and when the metrics are evaluated."""

    input_shape = (2,)
    metrics_names = ("probe",)

    def __init__(self, options, model, *, device, dtype, seed):
        super().__init__(options, model, device=device, dtype=dtype, seed=seed)
        x = torch.linspace(-1, 1, 2 * options.rows, dtype=dtype).reshape(-1, 2)
        self._samples = Samples.whole({"data": x})

    def training_samples(self, draw=0):
        return self._samples

    def loss_terms(self, samples, *, second_order=False):
        MODES.append(("loss", self.model.training))
        return {"data": self.model(samples.terms["data"]).square().sum() / samples.counts["data"]}

    def metric_parts(self, part=0, parts=1):
        MODES.append(("metrics", self.model.training))
        return {"probe": 1.0}

    def metrics_from(self, sums):
        return {"probe": sums["probe"]}


def test_losses_in_train_mode_and_metrics_in_eval_mode():
    name = "_test_mode_probe"
    registry.load_builtin_components()
    registry.register("problem", name, _ProbeOptions)(_ModeProbe)
    try:
        raw = {
            "problem": {"name": name},
            "model": {"name": "mlp", "width": 3, "depth": 1},
            "solver": {"name": "sgd", "lr": 0.1},
            "run": {"max_iter": 2, "print_every": 0, "checkpoint_every": 0},
        }
        MODES.clear()
        Run(cfg.parse(raw), SerialComm(), None, quiet=True).execute()
    finally:
        registry._REGISTRY["problem"].pop(name, None)
    assert ("loss", True) in MODES and ("metrics", False) in MODES
    assert all(training for kind, training in MODES if kind == "loss")
    assert not any(training for kind, training in MODES if kind == "metrics")
