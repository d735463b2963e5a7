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
    context = SolverContext()
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
    result = schwarz.apply(theta, None)
    half, ev = result.theta, result.evaluation
    assert result.alpha == 1.0 and result.failed == 0 and result.predicted_decrease > 0
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
    half = schwarz.apply(theta, None).theta
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
    state, local = first.state_dict(), first.rank_state_dict()
    assert local["npc"], "the blocks' local L-BFGS histories are rank-local state"
    problem.params.flat.copy_(theta0)
    second, _, _ = _solver(problem, raw)
    second.load_state_dict(state)
    second.load_rank_state_dict(local)
    for _ in range(2):
        second.step()
    assert torch.equal(second.theta, straight.theta)


def test_more_blocks_than_layers_is_an_input_error():
    from ddnn.errors import ConfigError

    problem = _problem(depth=1)  # 2 layers
    with pytest.raises(ConfigError, match="subdomains"):
        _solver(problem, {"name": "schwarz", "subdomains": 3})


def test_sample_chunk_subproblems_are_consistent_with_the_batch_gradient():
    """At θ₀ the shifted chunk objective h_s has the batch gradient (APTS in data)."""
    from ddnn.decomposition import SampleDecomposition

    problem = _problem()
    objective = Objective(problem, problem.training_samples())
    theta = problem.params.flat.clone()
    current = objective.evaluate(theta)
    dec = SampleDecomposition(3)
    for s in range(3):
        local = dec.local_objective(objective.local(None, "local_grad_evals"), s)
        chunk_alone = local.base.evaluate(theta)
        assert not torch.allclose(chunk_alone.grad, current.grad)  # the chunk loss differs ...
        start = dec.begin(s, local, theta, current)
        assert torch.equal(start, theta)
        torch.testing.assert_close(local.evaluate(theta).grad, current.grad, rtol=1e-12, atol=1e-14)  # ... h_s not


@pytest.mark.parametrize("variant", ["additive", "multiplicative"])
def test_one_sample_chunk_is_the_same_as_one_layer_block(variant):
    """With S = 1 both decompositions solve the whole problem: the same ASPQN iterates."""
    runs = []
    for decomposition in ("layers", "samples"):
        problem = _problem()
        solver, _, _ = _solver(problem, _aspqn(variant, 1, 2, decomposition=decomposition))
        for _ in range(3):
            solver.step()
        runs.append(solver.theta)
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-12, atol=1e-14)


def test_local_problems_follow_the_samplers_batches():
    """After a resample the local objectives of the blocks see the new samples (not the first set)."""
    from ddnn.sampler import Sampler
    from ddnn.samples import Samples

    class Resampling(LeastSquaresProblem):
        def training_samples(self, draw=0):
            base = super().training_samples()
            return base if draw == 0 else Samples({"data": base.terms["data"] * 0.5}, base.counts)

    problem = Resampling(make_mlp(width=6, depth=3), rows=40)
    sampler = Sampler(problem, resample_every=1)
    context = SolverContext()
    solver = context.build_solver(section("solver", _aspqn("additive", 2, 1)))
    objective = Objective(problem, sampler, None, context.counters)
    solver.init(objective, problem.params.flat)
    solver.step()
    sampler.advance()
    theta = solver.theta.clone()
    new_loss = objective.evaluate(theta).loss
    old_loss = objective.evaluate(theta, batch=problem.training_samples(0)).loss
    assert new_loss != pytest.approx(old_loss)
    dec = solver.npc.decomposition
    for s, local in solver.npc.local_objectives.items():
        assert local.batch is sampler.batch and local.key == sampler.key == 1
        local.set_base(theta)
        assert local.evaluate(dec.restrict(theta, s)).loss == pytest.approx(new_loss, rel=1e-14)


def test_inexact_weight_blocks_on_a_data_chunk_are_first_order_consistent():
    """Inexact stochastic APTS in weights: block s on this rank's chunk of the batch, shifted so that its
    gradient at θ₀ is the restricted batch gradient."""
    from ddnn.decomposition import LayerDecomposition

    problem = _problem()
    objective = Objective(problem, problem.training_samples())
    theta = problem.params.flat.clone()
    current = objective.evaluate(theta)
    dec = LayerDecomposition(problem.params.layer_bounds(), [[0, 1], [2, 3]], data_chunk=(1, 3))
    for s in range(2):
        local = dec.local_objective(objective.local(None, "local_grad_evals"), s)
        start = dec.begin(s, local, theta, current)
        on_chunk = local.base.evaluate(start).grad
        assert not torch.allclose(on_chunk, dec.restrict(current.grad, s))
        torch.testing.assert_close(local.evaluate(start).grad, dec.restrict(current.grad, s), rtol=1e-12, atol=1e-14)
        assert local.batch.rows == 13  # the second of three chunks of 40 rows
