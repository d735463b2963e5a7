"""Multilevel framework: the coherent coarse model, nested subsets, and SVRG, SARAH and SSN as special
cases of the V-cycle reproducing direct implementations of those methods; trust-region control (ASTROM)."""

from __future__ import annotations

import pytest
import torch

from ddnn import config as cfg
from ddnn import registry
from ddnn.errors import ConfigError
from ddnn.multilevel import CoarseModel, SubsetSource
from ddnn.sampler import FixedSamples
from ddnn.solvers.base import SolverContext
from ddnn.solvers.objective import Objective

F64 = torch.float64


def _logistic(n=120, d=6, reg=1e-2, seed=0):
    section = cfg.section("problem", {"name": "logistic", "n_samples": n, "features": d, "reg": reg})
    model = registry.build("model", cfg.section("model", {"name": "linear", "init": 0.1}), (d,), 1)
    problem = registry.lookup("problem", "logistic").cls(
        section.options, model.to(F64), device=torch.device("cpu"), dtype=F64, seed=seed
    )
    return problem


def _solver(problem, raw):
    context = SolverContext()
    solver = context.build_solver(cfg.section("solver", raw))
    objective = Objective(problem, problem.training_samples(), None, context.counters)
    solver.init(objective, problem.params.flat)
    return solver, objective, context


def test_coarse_model_is_first_order_coherent():
    problem = _logistic()
    fine = Objective(problem, problem.training_samples())
    source = SubsetSource(FixedSamples(problem.training_samples()), 0.1, seed=3)
    model = CoarseModel(fine.on(source))
    theta = problem.params.flat.clone()
    target = fine.evaluate(theta).grad
    model.set_anchor(theta, target)
    torch.testing.assert_close(model.evaluate(theta).grad, target, rtol=1e-13, atol=1e-15)
    # away from the anchor the model's gradient is the subset's gradient plus the fixed shift
    other = theta + 0.1
    shift = target - fine.evaluate(theta, batch=source.batch).grad
    torch.testing.assert_close(model.evaluate(other).grad, fine.evaluate(other, batch=source.batch).grad + shift)
    assert source.batch.rows == 12 and source.batch.fraction == pytest.approx(0.1)


def test_subsets_are_nested_redrawn_and_grown():
    problem = _logistic(n=100)
    parent = FixedSamples(problem.training_samples())
    small, large = SubsetSource(parent, 0.1, seed=5), SubsetSource(parent, 0.3, seed=5)

    def rows(source):
        return {tuple(r.tolist()) for r in source.batch.terms["data"][0]}

    assert rows(small) < rows(large)  # drawn together: nested
    key, before = small.key, rows(small)
    small.redraw()
    assert small.key != key and rows(small) != before
    current = rows(small)
    small.grow(2.0)
    assert current < rows(small) and len(rows(small)) == 20
    small.grow(100.0)
    assert small.fraction == 1.0 and small.batch.rows == 100


def _reference_batches(problem, fraction, count, seed=0):
    """The batches a coarse level redrawn every step sees (the same SubsetSource, drawn directly)."""
    source = SubsetSource(FixedSamples(problem.training_samples()), fraction, seed)
    batches = []
    for _ in range(count):
        source.redraw()
        batches.append(source.batch)
    return batches


@pytest.mark.parametrize("method", ["svrg", "sarah"])
def test_svrg_and_sarah_are_two_level_cycles(method):
    lr, m, cycles, fraction = 0.5, 6, 3, 0.05
    problem = _logistic()
    theta0 = problem.params.flat.clone()
    level = {"fraction": fraction, "solver": {"name": "sgd", "lr": lr}, "pre": m, "resample": "step"}
    if method == "sarah":
        level["anchor"] = "step"
    solver, objective, _ = _solver(problem, {"name": "multilevel", "levels": [level]})
    for _ in range(cycles):
        solver.step()

    # the methods written out directly
    full = problem.training_samples()
    batches = iter(_reference_batches(problem, fraction, m * cycles))

    def grad(theta, batch):
        return objective.evaluate(theta, batch=batch).grad

    snapshot = theta0.clone()
    for _ in range(cycles):
        mu = grad(snapshot, full)
        theta, previous, v = snapshot.clone(), snapshot.clone(), mu
        for k in range(m):
            batch = next(batches)
            if method == "svrg":
                v = grad(theta, batch) - grad(snapshot, batch) + mu
            elif k > 0:  # SARAH's recursive estimator
                v = grad(theta, batch) - grad(previous, batch) + v
            previous = theta.clone()
            theta = theta - lr * v
        snapshot = theta
    torch.testing.assert_close(solver.theta, snapshot, rtol=1e-10, atol=1e-12)


def test_ssn_is_a_newton_step_on_the_subsampled_hessian():
    fraction = 0.25
    problem = _logistic(n=160, d=5)
    theta0 = problem.params.flat.clone()
    raw = {
        "name": "multilevel",
        "control": "line_search",
        "levels": [
            {
                "fraction": fraction,
                "solver": {"name": "newton", "cg_rtol": 1e-12, "cg_iters": 100, "line_search": "fixed"},
                "pre": 1,
            }
        ],
    }
    solver, objective, context = _solver(problem, raw)
    for _ in range(3):
        solver.step()
    full = problem.training_samples()
    batches = iter(_reference_batches(problem, fraction, 3))
    theta = theta0.clone()
    for _ in range(3):
        batch = next(batches)
        g = objective.evaluate(theta, batch=full).grad
        hessian = torch.stack([objective.hvp(theta, e, batch=batch) for e in torch.eye(theta.numel(), dtype=F64)])
        theta = theta - torch.linalg.solve(hessian, g)  # the full step passes the line search here
    torch.testing.assert_close(solver.theta, theta, rtol=1e-8, atol=1e-10)
    assert context.counters["hessian_work"] == pytest.approx(3 * fraction)
    assert context.counters["accepted_coarse_corrections"] == 3


def test_three_levels_decrease_the_loss():
    problem = _logistic(n=300, d=8)
    raw = {
        "name": "multilevel",
        "levels": [
            {"fraction": 0.1, "solver": {"name": "sgd", "lr": 0.5}, "pre": 5, "resample": "step"},
            {"fraction": 0.4, "solver": {"name": "sgd", "lr": 0.5}, "pre": 2, "post": 2},
        ],
    }
    solver, objective, context = _solver(problem, raw)
    start = objective.evaluate(problem.params.flat).loss
    losses = [solver.step().loss for _ in range(10)]
    assert losses[-1] < 0.7 * start
    # work is counted in units of the full set: coarse gradients count their fraction
    assert 0 < context.counters["grad_work"] < context.counters["grad_evals"]


def test_astrom_grows_the_coarse_set_until_it_is_batch_trust_region():
    problem = _logistic(n=200, d=6, reg=1e-3)
    raw = {
        "name": "multilevel",
        "control": "trust_region",
        "grow": 4.0,
        "radius": 1.0,
        "eta": 0.5,  # demanding: coarse corrections from a tiny set are rejected
        "shrink_below": 0.5,
        "levels": [
            {
                "fraction": 0.01,
                "resample": "fixed",
                "solver": {"name": "trust_region", "hessian": "exact", "radius": 1.0},
                "pre": 3,
            }
        ],
    }
    solver, objective, context = _solver(problem, raw)
    start = objective.evaluate(problem.params.flat).loss
    reports = [solver.step() for _ in range(12)]
    coarse = solver.levels[0].source
    rejected = context.counters["rejected_coarse_corrections"]
    assert rejected >= 1 and coarse.fraction == pytest.approx(min(1.0, 0.01 * 4.0**rejected))
    assert reports[-1].loss < start and context.counters["accepted_coarse_corrections"] >= 1
    assert all(r.radius is not None for r in reports)
    # once the coarse set is the whole batch the coarse model is the loss itself: every correction passes
    coarse.grow(1e6)
    before = context.counters["rejected_coarse_corrections"]
    for _ in range(3):
        solver.step()
    assert context.counters["rejected_coarse_corrections"] == before


def test_multilevel_state_round_trip_continues_bit_for_bit():
    raw = {
        "name": "multilevel",
        "levels": [{"fraction": 0.1, "solver": {"name": "sgd", "lr": 0.3}, "pre": 3, "resample": "step"}],
    }
    problem = _logistic()
    theta0 = problem.params.flat.clone()
    straight, _, _ = _solver(problem, raw)
    for _ in range(4):
        straight.step()
    problem.params.flat.copy_(theta0)
    first, _, _ = _solver(problem, raw)
    for _ in range(2):
        first.step()
    state = first.state_dict()
    problem.params.flat.copy_(theta0)
    second, _, _ = _solver(problem, raw)
    second.load_state_dict(state)
    for _ in range(2):
        second.step()
    assert torch.equal(second.theta, straight.theta)


def test_multilevel_needs_levels_and_a_coarse_trust_region_for_trust_region_control():
    raw = {"problem": {"name": "logistic", "n_samples": 20, "reference": False}}
    with pytest.raises(ConfigError) as info:
        cfg.parse({**raw, "solver": {"name": "multilevel"}})
    assert info.value.key == "solver.levels"
    with pytest.raises(ConfigError) as info:
        cfg.parse({**raw, "solver": {"name": "multilevel", "control": "trust_region", "levels": [{"solver": "sgd"}]}})
    assert info.value.key == "solver.levels[0].solver.name"
