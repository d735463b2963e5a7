"""Schwarz methods from library code: blocks, equivalence with the solvers and with ``python -m ddnn``, ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO, least_squares_objective, make_mlp, subprocess_env
from torch import nn

import ddnn.optim as O
from ddnn import config
from ddnn.optim.blocks import layout
from ddnn.parallel.comm import SerialComm
from ddnn.solvers.trust_region import TrustRegion

SCRIPT = os.path.join(REPO, "tests", "mpi_scripts", "optim_aspqn.py")
X = torch.rand(30, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1
Y = torch.cos(2 * X[:, :1]) * X[:, 1:]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Net(nn.Module):
    """Nested blocks: two children that own layers, and a parameter of its own."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh())
        self.head = nn.Linear(4, 1)
        self.scale = nn.Parameter(torch.ones(1))  # its own parameters come first in parameters()
        self.double()

    def forward(self, x):
        return self.scale * self.head(self.encoder(x))


def sizes(lay):
    return [b - a for a, b in lay.units]


def closure_for(model, opt):
    def closure():
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        return loss

    return closure


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- blocks ----------------------------------------------------------------------------------------


def test_blocks_from_layers_children_names_and_groups():
    net = Net()
    params = [list(net.parameters())]
    assert sizes(layout(params, net, "layers")) == [1, 12, 20, 5]  # scale, then every Linear
    assert sizes(layout(params, net, "children")) == [1, 32, 5]
    assert sizes(layout(params, net, ["encoder", ["head", "scale"]])) == [32, 6]
    assert sizes(layout(params, net, [["encoder.0", "encoder.2"], "head.weight", ["head.bias", "scale"]])) == [32, 4, 2]
    assert sizes(layout([list(net.encoder.parameters()), [net.scale, *net.head.parameters()]])) == [32, 6]
    assert sizes(layout(params, net)) == [1, 12, 20, 5]  # a module: its layers
    assert sizes(layout(params)) == [1, 8, 4, 16, 4, 4, 1]  # no module: every tensor
    lay = layout(params, net, ["head", "encoder", "scale"])  # the flat order follows the blocks
    assert lay.names[:2] == ["head.weight", "head.bias"]


@pytest.mark.parametrize(
    "blocks,message",
    [
        ("layers", "needs the module"),
        (["encoder", "head"], "need the module"),
        ("rows", "expected 'layers'"),
    ],
)
def test_blocks_without_what_they_need_raise(blocks, message):
    net = Net()
    with pytest.raises(ValueError, match=message):
        O.ASPQN(net.parameters(), blocks=blocks)


@pytest.mark.parametrize(
    "blocks,message",
    [
        (["encoder", "decoder"], "no submodule or parameter 'decoder'"),
        (["encoder", "head"], "in no block: scale"),
        (["encoder", ["head", "encoder.0"], "scale"], "in two blocks"),
    ],
)
def test_bad_blocks_raise_naming_the_parameters(blocks, message):
    with pytest.raises(ValueError, match=message):
        O.ASPQN(Net(), blocks=blocks)


def test_named_blocks_equal_layer_blocks_and_the_generic_form():
    runs = []
    for build in (
        lambda m: O.ASPQN(m, blocks=["scale", "encoder.0", "encoder.2", "head"], subdomains=2),
        lambda m: O.ASPQN(m, blocks="layers", subdomains=2),
        lambda m: O.SolverOptimizer(m, "lbfgs", blocks="layers", npc={"name": "schwarz", "subdomains": 2}),
    ):
        net = Net()
        opt = build(net)
        closure = closure_for(net, opt)
        for _ in range(2):
            opt.step(closure)
        runs.append(flat(net))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert not torch.equal(runs[0], flat(Net()))


def test_too_many_subdomains_for_the_blocks_raise():
    with pytest.raises(ValueError, match="subdomains"):
        O.ASPQN(Net(), blocks="children", subdomains=4)


def test_communicators_resolve_to_serial_here():
    assert O.resolve_comm(None) is None and O.resolve_comm(SerialComm()) is None
    assert O.resolve_comm("world") is None  # no MPI launcher, no torch.distributed: serial
    with pytest.raises(ValueError, match="comm"):
        O.resolve_comm(42)
    with pytest.raises(ValueError, match="comm"):
        O.ASPQN(Net(), comm="everyone")


# -- the solvers on a closure equal the solvers on ddnn's objective ---------------------------------


@pytest.mark.parametrize("apts", [False, True], ids=["trust_region", "apts"])
def test_trust_region_and_apts_on_a_closure_take_the_iterates_of_the_objective(apts):
    objective, problem = least_squares_objective(depth=3)
    raw = {"name": "trust_region", "order": 1, "norm": "inf", "radius": 0.05} if apts else {"name": "trust_region"}
    if apts:
        raw["npc"] = {"name": "schwarz", "subdomains": 2, "local_iters": 3, "local": {"name": "trust_region"}}
        raw["npc"]["local"].update(order=1, norm="inf")
    solver = TrustRegion(config.section("solver", raw).options)
    solver.init(objective, problem.params.flat)

    model = make_mlp(depth=3)
    if apts:
        opt = O.APTS(model, subdomains=2, local_iters=3, order=1, radius=0.05)
    else:
        opt = O.TrustRegion(model)
    rows = problem.training_samples().terms["data"]

    def closure():
        opt.zero_grad()
        loss = ((model(rows[:, :2]) - rows[:, 2:]) ** 2).sum() / rows.shape[0]
        loss.backward()
        return loss

    for k in range(4):
        solver.step()
        opt.step(closure)
        assert torch.equal(flat(model), solver.theta), f"iterate {k + 1}"
    assert not torch.equal(flat(model), flat(make_mlp(depth=3)))


# -- python -m ddnn on 1 and 2 ranks ----------------------------------------------------------------


def test_aspqn_from_library_code_equals_the_program_on_one_rank(tmp_path):
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        import optim_aspqn
    finally:
        sys.path.remove(os.path.dirname(SCRIPT))
    result = optim_aspqn.compare(str(tmp_path))
    assert result["ranks"] == 1 and result["moved"] > 0.1
    assert result["aspqn_vs_program"] <= 1e-9


@pytest.mark.mpi
def test_aspqn_from_library_code_equals_the_program_on_two_ranks(tmp_path):
    """MPI and torch.distributed (gloo), blocks on different ranks and shared by ranks; plain closures."""
    cmd = ["mpiexec", "-n", "2", sys.executable, SCRIPT, str(tmp_path)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ranks"] == 2 and result["moved"] > 0.1
    assert result["aspqn_vs_program"] <= 1e-9  # data-parallel sums of the same order: equal in fact
    assert result["gloo_vs_mpi"] <= 1e-9 and result["gloo_vs_mpi_shared"] <= 1e-9
    assert result["shared_vs_serial"] <= 1e-9 and result["mspqn_own_rows_vs_serial"] <= 1e-9
    assert "closure(shard)" in result["aspqn_own_rows_error"]
