"""ASPQN and MSPQN from library code against ``python -m ddnn`` on the regression problem, on 1 or N ranks.

Run as ``mpiexec -n N python tests/mpi_scripts/optim_aspqn.py OUT_DIR`` (or
without mpiexec for one rank; :func:`compare` is also imported by the tests).
Every rank runs:

* the program (``ddnn.cli.main``, the code of ``python -m ddnn``) on an input
  with ASPQN over 4 layer blocks, writing ``results.h5``;
* the same method from library code: a plain PyTorch model and a closure
  written by a user, ``ddnn.optim.ASPQN(model, blocks="layers", subdomains=4,
  comm=...)``, with ddnn's communicator and (on several ranks) with a
  ``torch.distributed`` gloo process group;
* MSPQN with a closure without arguments (each rank its own rows) against
  the same MSPQN serially, and ASPQN with such a closure (refused).

Rank 0 prints one JSON line: the largest relative differences and the messages.
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import yaml  # noqa: E402

import ddnn.optim  # noqa: E402
from ddnn import parallel, registry  # noqa: E402
from ddnn.config import section  # noqa: E402

N_SAMPLES, SEED, ITERS, LOCAL_ITERS = 240, 0, 4, 3
MODEL = {"name": "mlp", "width": 6, "depth": 3}  # 4 layers
LOCAL = {"name": "lbfgs", "memory": 3, "line_search": "strong_wolfe"}


def program_input(path: str, subdomains: int) -> None:
    """The input file of the equivalent ``python -m ddnn`` run."""
    raw = {
        "problem": {"name": "regression", "n_samples": N_SAMPLES, "n_test": 8},
        "model": MODEL,
        "solver": {
            "name": "lbfgs",
            "memory": 3,
            "npc": {
                "name": "schwarz",
                "variant": "additive",
                "subdomains": subdomains,
                "local_iters": LOCAL_ITERS,
                "local": LOCAL,
                "line_search": "armijo",
            },
        },
        "run": {
            "max_iter": ITERS,
            "seed": SEED,
            "dtype": "float64",
            "device": "cpu",
            "threads": 1,
            "print_every": 0,
            "checkpoint_every": 0,
        },
    }
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)


def user_model() -> torch.nn.Module:
    """The network a user would build: the same MLP and seed (float64)."""
    torch.manual_seed(SEED)
    return registry.build("model", section("model", MODEL), (2,), 1).double()


def user_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The regression problem's samples: uniform in [-1, 1]^2, target sin(pi x) cos(pi y)."""
    gen = torch.Generator().manual_seed(SEED)
    x = torch.rand(N_SAMPLES, 2, generator=gen, dtype=torch.float64) * 2 - 1
    return x, torch.sin(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


def train(cls, comm, subdomains: int, sharded: bool, data=None) -> torch.Tensor:
    """Library training: ``cls(model, blocks="layers", ...)`` on a plain closure; the final parameters."""
    model = user_model()
    x, y = data if data is not None else user_data()
    opt = cls(model, blocks="layers", subdomains=subdomains, comm=comm, local_iters=LOCAL_ITERS, local=LOCAL)
    n = N_SAMPLES

    def closure(shard):  # every rank holds all rows; the optimiser says which to evaluate
        opt.zero_grad()
        loss = (model(shard(x)).squeeze(-1) - shard(y)).pow(2).sum() / n
        loss.backward()
        return loss

    def own_rows():  # each rank its own rows, its share of the loss
        opt.zero_grad()
        loss = (model(x).squeeze(-1) - y).pow(2).sum() / n
        loss.backward()
        return loss

    for _ in range(ITERS):
        opt.step(closure if sharded else own_rows)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def program(out: str, subdomains: int) -> torch.Tensor:
    """``python -m ddnn`` on the equivalent input (in this process, on this job's ranks)."""
    import h5py

    from ddnn import cli

    path = os.path.join(out, f"aspqn{subdomains}.yaml")
    comm = parallel.init()
    if comm.rank == 0:
        os.makedirs(out, exist_ok=True)
        program_input(path, subdomains)
    comm.barrier()
    code = cli.main([path, "--out", os.path.join(out, f"program{subdomains}"), "--quiet"])
    if code != 0:
        raise RuntimeError(f"python -m ddnn failed with {code}")
    comm.barrier()
    with h5py.File(os.path.join(out, f"program{subdomains}", "results.h5")) as f:
        return torch.from_numpy(f["params"][()])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def compare(out: str) -> dict:
    """Every comparison of the module docstring on this job's ranks."""
    comm = parallel.init()
    torch.set_num_threads(1)
    result: dict = {"ranks": comm.size, "rank": comm.rank}
    reference = program(out, 4)
    library = train(ddnn.optim.ASPQN, comm, 4, sharded=True)
    result["aspqn_vs_program"] = rel(library, reference)
    start = torch.cat([p.detach().reshape(-1) for p in user_model().parameters()])
    result["moved"] = float((library - start).abs().max())
    if comm.size > 1:
        import torch.distributed as dist

        port = comm.bcast_object(_free_port() if comm.rank == 0 else None)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=comm.rank, world_size=comm.size)
        try:
            result["gloo_vs_mpi"] = rel(train(ddnn.optim.ASPQN, dist.group.WORLD, 4, sharded=True), library)
            # one subdomain shared by all ranks: split() builds process groups
            shared_mpi = train(ddnn.optim.ASPQN, comm, 1, sharded=True)
            shared_gloo = train(ddnn.optim.ASPQN, dist.group.WORLD, 1, sharded=True)
            result["gloo_vs_mpi_shared"] = rel(shared_gloo, shared_mpi)
            result["shared_vs_serial"] = rel(shared_mpi, train(ddnn.optim.ASPQN, None, 1, sharded=True))
        finally:
            dist.destroy_process_group()
        # a closure of each rank's own rows: right for MSPQN, refused by ASPQN's single-rank local problems
        x, y = user_data()
        rows = slice((N_SAMPLES * comm.rank) // comm.size, (N_SAMPLES * (comm.rank + 1)) // comm.size)
        own = train(ddnn.optim.MSPQN, comm, 4, sharded=False, data=(x[rows], y[rows]))
        result["mspqn_own_rows_vs_serial"] = rel(own, train(ddnn.optim.MSPQN, None, 4, sharded=True))
        try:
            train(ddnn.optim.ASPQN, comm, 4, sharded=False, data=(x[rows], y[rows]))
            result["aspqn_own_rows_error"] = None
        except ValueError as err:
            result["aspqn_own_rows_error"] = str(err)
    return result


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    result = compare(sys.argv[1])
    if result["rank"] == 0:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
