"""ResNets across depth: forward-Euler networks, depth transfers (I, R = Iᵀ, P), and RMTR / MG-OPT cycles."""

from __future__ import annotations

import math

import pytest
import torch

from ddnn import config as cfg
from ddnn import registry
from ddnn.flat import FlatParams
from ddnn.models.resnet import ResNet, ResNetOptions
from ddnn.multilevel import DepthTransfer
from ddnn.solvers.base import SolverContext
from ddnn.solvers.objective import Objective

F64 = torch.float64


def _pair(blocks=4, kind="dense", mode="copy", projection="average", width=5):
    options = ResNetOptions(kind=kind, width=width, blocks=2 * blocks)
    shape = (3,) if kind == "dense" else (2, 6, 6)
    torch.manual_seed(0)
    fine = ResNet(options, shape, 4).to(F64)
    coarse = fine.coarsened(2).to(F64)
    n_fine, n_coarse = FlatParams(fine).numel, FlatParams(coarse).numel
    transfer = DepthTransfer(coarse.block_span(), fine.block_span(), n_coarse, n_fine, mode, projection)
    return fine, coarse, transfer, shape


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_block_span_is_where_the_blocks_are(kind):
    fine, _, _, _ = _pair(kind=kind)
    params = FlatParams(fine)
    offset, per, blocks = fine.block_span()
    starts = [s.start for s in params.slices if s.name.startswith("blocks.") and s.name.endswith(".weight")]
    assert starts == [offset + j * per for j in range(blocks)]
    assert params.numel == offset + blocks * per + sum(p.numel() for p in fine.out.parameters())


@pytest.mark.parametrize("mode", ["copy", "linear"])
@pytest.mark.parametrize("projection", ["average", "injection"])
def test_restriction_is_the_transpose_of_prolongation(mode, projection):
    _, _, transfer, _ = _pair(mode=mode, projection=projection)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(transfer.n_coarse, generator=gen, dtype=F64)
    y = torch.randn(transfer.n_fine, generator=gen, dtype=F64)
    assert float(transfer.prolong(x) @ y) == pytest.approx(float(x @ transfer.restrict(y)), rel=1e-12)
    if projection == "average" or mode == "copy":  # P I = identity
        torch.testing.assert_close(transfer.project(transfer.prolong(x)), x, rtol=1e-12, atol=1e-12)
    norm_ratio = float(torch.linalg.vector_norm(transfer.prolong(x)) / torch.linalg.vector_norm(x))
    assert norm_ratio <= transfer.gain + 1e-12


def _smooth_resnet(blocks: int, width: int = 4) -> ResNet:
    """A ResNet whose block j discretises W(t) = A + t B, b(t) = c sin(t) at t_j = j h on [0, 1]."""
    net = ResNet(ResNetOptions(width=width, blocks=blocks, final_time=1.0), (2,), 3).to(F64)
    gen = torch.Generator().manual_seed(7)
    a, b = torch.randn(2, width, width, generator=gen, dtype=F64) / math.sqrt(width)
    c = torch.randn(width, generator=gen, dtype=F64)
    with torch.no_grad():
        for j, block in enumerate(net.blocks):
            t = j / blocks
            block.weight.copy_(a + t * b)
            block.bias.copy_(c * math.sin(t))
        net.inp.weight.copy_(torch.randn(width, 2, generator=gen, dtype=F64))
        net.out.weight.copy_(torch.randn(3, width, generator=gen, dtype=F64))
        net.inp.bias.zero_()
        net.out.bias.zero_()
    return net


def test_prolongated_coarse_network_is_the_same_function_to_first_order():
    x = torch.linspace(-1, 1, 40, dtype=F64).reshape(20, 2)
    errors = []
    for blocks in (4, 8, 16, 32):
        coarse = _smooth_resnet(blocks)
        fine = ResNet(ResNetOptions(width=4, blocks=2 * blocks, final_time=1.0), (2,), 3).to(F64)
        coarse_flat, fine_flat = FlatParams(coarse, dtype=F64), FlatParams(fine, dtype=F64)
        transfer = DepthTransfer(coarse.block_span(), fine.block_span(), coarse_flat.numel, fine_flat.numel)
        fine_flat.flat.copy_(transfer.prolong(coarse_flat.flat))
        with torch.no_grad():
            errors.append(float((fine(x) - coarse(x)).abs().max()))
            scale = float(coarse(x).abs().max())
    assert errors[-1] < 0.05 * scale
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(1.6 < r < 2.5 for r in ratios), ratios  # halving h halves the difference: O(h)


def _problem(blocks=8):
    section = cfg.section(
        "problem",
        {"name": "classification", "dataset": "spirals", "n_train": 200, "n_test": 50, "classes": 2, "noise": 0.1},
    )
    torch.manual_seed(0)
    model = registry.build(
        "model", cfg.section("model", {"name": "resnet", "width": 6, "blocks": blocks, "final_time": 2.0}), (2,), 2
    )
    return registry.lookup("problem", "classification").cls(
        section.options, model, device=torch.device("cpu"), dtype=F64, seed=0
    )


@pytest.mark.parametrize("control", ["trust_region", "line_search"])
def test_rmtr_and_mgopt_cycles_across_depth_decrease_the_loss(control):
    problem = _problem()
    fine_solver = {"name": "trust_region", "order": 1, "radius": 0.5} if control == "trust_region" else "lbfgs"
    coarse_solver = {"name": "trust_region", "order": 1} if control == "trust_region" else "lbfgs"
    raw = {
        "name": "multilevel",
        "hierarchy": "depth",
        "control": control,
        "radius": 0.5,
        "fine": fine_solver,
        "fine_pre": 1,
        "fine_post": 1,
        "levels": [{"solver": coarse_solver, "pre": 3}, {"solver": coarse_solver, "pre": 1, "post": 1}],
    }
    context = SolverContext()
    solver = context.build_solver(cfg.section("solver", raw))
    objective = Objective(problem, problem.training_samples(), None, context.counters)
    solver.init(objective, problem.params.flat)
    assert [lvl.model.n for lvl in solver.levels[:-1]] == [
        FlatParams(problem.model.coarsened(4)).numel,
        FlatParams(problem.model.coarsened(2)).numel,
    ]
    start = objective.evaluate(problem.params.flat).loss
    losses = [solver.step().loss for _ in range(5)]
    assert losses[-1] < 0.9 * start
    c = context.counters
    assert c["coarse_grad_evals"] > 0 and c["grad_evals"] > 0  # fine and coarse evaluations counted apart
    assert c["accepted_coarse_corrections"] > 0


def test_depth_needs_a_resnet():
    raw = {
        "problem": {"name": "regression", "n_samples": 20},
        "solver": {"name": "multilevel", "hierarchy": "depth", "levels": [{"solver": "sgd"}]},
    }
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse(raw)
    assert info.value.key == "solver.hierarchy"
