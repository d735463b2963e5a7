"""Schwarz preconditioning (ASPQN, MSPQN): composition, block algebra, and consistency."""

import pytest
import torch

from ddnn.config import section
from ddnn.solvers.base import SolverContext
from ddnn.solvers.lbfgs import LBFGS
from ddnn.solvers.objective import Objective
from tests.helpers import LeastSquaresProblem, make_mlp

LOCAL = {"name": "lbfgs", "memory": 3, "line_search": {"name": "strong_wolfe"}}


def _problem(seed=0, depth=3):
    return LeastSquaresProblem(make_mlp(width=6, depth=depth, seed=seed), rows=40)


def _solver(problem, raw):
    context = SolverContext(problem)
    solver = context.build_solver(section("solver", raw))
    objective = Objective(problem, problem.training_samples(), None, context.counters)
    solver.init(objective, problem.params.flat)
    return solver, objective, context


def _aspqn(variant, subdomains, local_iters=3, line_search="fixed", **schwarz):
    return {
        "name": "lbfgs",
        "memory": 3,
        "npc": {
            "name": "schwarz",
            "variant": variant,
            "subdomains": subdomains,
            "local_iters": local_iters,
            "local": LOCAL,
            "line_search": line_search,
            **schwarz,
        },
    }


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
def test_one_block_is_lbfgs_after_local_lbfgs_steps(variant):
    """ASPQN/MSPQN with S = 1: k local L-BFGS steps on the whole vector, then one global L-BFGS step."""
    k = 3
    problem = _problem()
    theta0 = problem.params.flat.clone()
    aspqn, _, _ = _solver(problem, _aspqn(variant, 1, k, reset_local=True))
    reference_global, objective, _ = _solver(problem, {"name": "lbfgs", "memory": 3})
    theta = theta0.clone()
    for _ in range(3):
        aspqn.step()
        local = LBFGS(section("solver", LOCAL).options)
        local.init(objective, theta)
        for _ in range(k):
            local.step()
        reference_global.set_point(local.theta)
        reference_global.step()
        theta = reference_global.theta.clone()
    torch.testing.assert_close(aspqn.theta, reference_global.theta, rtol=1e-10, atol=1e-12)


def test_additive_correction_gathers_the_block_solutions():
    """With disjoint blocks and α = 1, G(θ) is the concatenation of the local solutions."""
    problem = _problem()
    theta = problem.params.flat.clone()
    schwarz_raw = {
        "name": "schwarz",
        "variant": "additive",
        "subdomains": 3,
        "local_iters": 2,
        "local": LOCAL,
        "line_search": "fixed",
    }
    schwarz, objective, _ = _solver(problem, schwarz_raw)
    half, ev, alpha = schwarz.apply(theta, None)
    assert alpha == 1.0
    dec = schwarz.decomposition
    for s, block in enumerate(dec.blocks):
        local = LBFGS(section("solver", LOCAL).options)
        block_objective = objective.restrict(block.start, block.stop)
        block_objective.set_base(theta)
        local.init(block_objective, dec.restrict(theta, s))
        for _ in range(2):
            local.step()
        torch.testing.assert_close(dec.restrict(half, s), local.theta, rtol=0, atol=1e-15)
    reference = objective.evaluate(half)
    assert ev.loss == pytest.approx(reference.loss, rel=1e-12)
    torch.testing.assert_close(ev.grad, reference.grad)


def test_multiplicative_sweep_uses_updated_blocks():
    """Block s of the multiplicative sweep starts from blocks 0..s-1 already updated."""
    problem = _problem()
    theta = problem.params.flat.clone()
    raw = {"name": "schwarz", "variant": "multiplicative", "subdomains": 2, "local_iters": 2, "local": LOCAL}
    schwarz, objective, _ = _solver(problem, raw)
    half, _, _ = schwarz.apply(theta, None)
    dec = schwarz.decomposition
    current = theta.clone()
    for s, block in enumerate(dec.blocks):
        local = LBFGS(section("solver", LOCAL).options)
        block_objective = objective.restrict(block.start, block.stop)
        block_objective.set_base(current)
        local.init(block_objective, dec.restrict(current, s))
        for _ in range(2):
            local.step()
        dec.restrict(current, s).copy_(local.theta)
    torch.testing.assert_close(half, current, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
def test_preconditioned_lbfgs_decreases_the_loss_and_counts_local_work(variant):
    problem = _problem(depth=4)
    solver, objective, context = _solver(problem, _aspqn(variant, 3, 2, line_search="armijo", overlap=1))
    start = objective.evaluate(problem.params.flat).loss
    losses = [solver.step().loss for _ in range(8)]
    assert losses[-1] < 0.5 * start
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))
    local = context.counters["local_grad_evals"]
    effective = context.counters["effective_local_grad_evals"]
    assert local > 0
    if variant == "multiplicative":  # a sequential sweep: every local evaluation counts
        assert effective == local
    else:  # concurrent blocks: each outer iteration costs its slowest block (the seed's #g_e)
        assert local / 3 <= effective < local


def test_preconditioner_state_resumes_bit_for_bit():
    raw = _aspqn("additive", 2, 2, line_search="armijo", reset_local=False)
    problem = _problem()
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


def test_more_blocks_than_layers_is_an_input_error():
    from ddnn.errors import ConfigError

    problem = _problem(depth=1)  # 2 layers
    with pytest.raises(ConfigError, match="subdomains"):
        _solver(problem, {"name": "schwarz", "subdomains": 3})
