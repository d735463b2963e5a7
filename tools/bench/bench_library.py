"""A user's plain-PyTorch Burgers PINN: torch.optim.LBFGS vs ddnn.optim.LBFGS vs ddnn.optim.ASPQN.

The PINN is written here the way a user writes one, in plain PyTorch (not
with ddnn's problem classes): the 8 x 20 tanh network of Raissi et al. (2019)
and of the seed, Xavier-normal weights and zero biases from one seed, float64,
2,000 interior collocation points in [-1, 1] x [0, 1] plus boundary and
initial points, and a closure that takes u_x, u_t and u_xx by nested autograd.
The three optimisers start from the same weights and get the same budget of
closure calls:

* ``torch.optim.LBFGS(params, line_search_fn="strong_wolfe", history_size=..., max_iter=...)``;
* ``ddnn.optim.LBFGS`` with the same arguments (the import swapped);
* ``ddnn.optim.ASPQN(model, blocks="layers", subdomains=S, ...)``: L-BFGS
  right-preconditioned by additive Schwarz over S blocks of layers, serial.

A step never spends more than the budget left (``max_eval`` of the L-BFGS
steps is cut to it; an ASPQN step is one outer iteration and may end past it:
the calls column says what each spent). Printed per optimiser: the final
loss, the relative L2 error against the Cole–Hopf solution on the 256 x 100
grid of Raissi et al. (:func:`ddnn.problems.pinn.references.burgers_reference`),
closure calls (for ASPQN also the calls of S ranks solving the blocks at the
same time: global calls plus the slowest block's), wall time and time per
closure call, with the ratios to torch. The optimisers run side by side in
one process, alternating, and every time is the fastest of ``--repeats`` runs.

Usage::

    python tools/bench/bench_library.py                      # budget 1500 closure calls
    python tools/bench/bench_library.py --budget 3000 --subdomains 4 --local-iters 5

References
----------
M. Raissi, P. Perdikaris, G. E. Karniadakis, Physics-informed neural networks,
J. Comput. Phys. 378 (2019) 686-707 (the Burgers problem and network).
A. Kopaničáková, H. Kothari, G. E. Karniadakis, R. Krause, Enhancing training
of physics-informed neural networks using domain decomposition-based
preconditioning strategies, SIAM J. Sci. Comput. 46 (2024) (ASPQN).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import ddnn.optim  # noqa: E402
from ddnn.problems.pinn.references import burgers_reference  # noqa: E402

NU = 0.01 / math.pi

__all__ = ["burgers_problem", "burgers_closure", "relative_error", "train", "main"]


# -- the user's PINN, in plain PyTorch ------------------------------------------------------------------


def burgers_problem(interior: int = 2000, boundary: int = 200, initial: int = 200, seed: int = 0):
    """The user's network and points, drawn as the README example draws them: ``(net, data)``.

    8 hidden layers of 20 tanh neurons, (x, t) -> u, Xavier-normal weights and
    zero biases (float64); interior points (x, t) in [-1, 1] x [0, 1], boundary
    points (±1, t) with u = 0, initial points (x, 0) with u = -sin(πx).
    """
    torch.manual_seed(seed)
    sizes = [2] + [20] * 8 + [1]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    net = nn.Sequential(*layers[:-1]).double()
    for m in net[::2]:
        nn.init.xavier_normal_(m.weight), nn.init.zeros_(m.bias)
    xt = torch.rand(interior, 2, dtype=torch.float64) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])
    t = torch.rand(boundary, dtype=torch.float64)
    xb = torch.stack([torch.arange(boundary) % 2 * 2.0 - 1, t], 1).double()
    x0 = torch.rand(initial, dtype=torch.float64) * 2 - 1
    data = {
        "interior": xt,
        "boundary": xb,
        "initial": torch.stack([x0, torch.zeros_like(x0)], 1),
        "u0": -torch.sin(math.pi * x0),
    }
    return net, data


def burgers_closure(model: nn.Module, opt: torch.optim.Optimizer, data: dict, calls: list) -> callable:
    """The closure a user writes: PDE residual by nested autograd, plus boundary and initial misfits."""

    def closure():
        calls.append(1)
        opt.zero_grad()
        xt = data["interior"].clone().requires_grad_(True)
        u = model(xt)
        du = torch.autograd.grad(u.sum(), xt, create_graph=True)[0]
        u_x, u_t = du[:, :1], du[:, 1:]
        u_xx = torch.autograd.grad(u_x.sum(), xt, create_graph=True)[0][:, :1]
        residual = u_t + u * u_x - NU * u_xx
        loss = (
            residual.pow(2).mean()
            + model(data["boundary"]).pow(2).mean()
            + (model(data["initial"]).squeeze(1) - data["u0"]).pow(2).mean()
        )
        loss.backward()
        return loss

    return closure


def relative_error(model: nn.Module) -> float:
    """‖u − u_ref‖ / ‖u_ref‖ on x = linspace(−1, 1, 256) × t = linspace(0, 0.99, 100)."""
    xx, tt = np.meshgrid(np.linspace(-1.0, 1.0, 256), np.linspace(0.0, 0.99, 100), indexing="ij")
    reference = burgers_reference(xx.reshape(-1), tt.reshape(-1))
    with torch.no_grad():
        u = model(torch.from_numpy(np.stack([xx.reshape(-1), tt.reshape(-1)], 1))).squeeze(1).numpy()
    return float(np.linalg.norm(u - reference) / np.linalg.norm(reference))


# -- the optimisers ---------------------------------------------------------------------------------


def build(method: str, model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    lbfgs = {"line_search_fn": "strong_wolfe", "history_size": args.history, "max_iter": args.max_iter}
    if method == "torch LBFGS":
        return torch.optim.LBFGS(model.parameters(), **lbfgs)
    if method == "ddnn LBFGS":
        return ddnn.optim.LBFGS(model.parameters(), **lbfgs)
    return ddnn.optim.ASPQN(
        model,
        blocks="layers",
        subdomains=args.subdomains,
        memory=args.history,
        line_search="strong_wolfe",
        local_iters=args.local_iters,
        local={"name": "lbfgs", "memory": 3, "line_search": "armijo"},
    )


def train(method: str, args: argparse.Namespace) -> dict:
    """One run of ``method`` from the seed's weights until ``args.budget`` closure calls are spent."""
    model, data = burgers_problem(args.points, seed=args.seed)
    opt = build(method, model, args)
    calls: list = []
    closure = burgers_closure(model, opt, data, calls)
    lbfgs_like = "max_eval" in opt.param_groups[0]
    start = time.perf_counter()
    while len(calls) < args.budget:
        if lbfgs_like:  # never past the budget: the step's own closure budget is what is left
            opt.param_groups[0]["max_eval"] = min(args.max_iter * 5 // 4, args.budget - len(calls))
        opt.step(closure)
    wall = time.perf_counter() - start
    loss = float(closure().detach())  # the loss at the final weights (one call more, not counted)
    effective = len(calls) - 1
    if method == "ASPQN":  # S ranks: the global calls plus, per outer iteration, the slowest block's
        c = opt.counters
        effective = int(c["grad_evals"] + c["loss_evals"] + c["effective_local_grad_evals"])
    return {
        "loss": loss,
        "error": relative_error(model),
        "calls": len(calls) - 1,
        "effective": effective,
        "wall": wall,
    }


def table(rows: list[tuple[str, dict]], subdomains: int) -> str:
    base = rows[0][1]
    head = [
        "method",
        "final loss",
        "rel. L2 error",
        "closure calls",
        f"calls on {subdomains} ranks",
        "time [s]",
        "ms/call",
        "error / torch",
        "ms/call / torch",
    ]
    lines = [head]
    for name, r in rows:
        per_call = 1e3 * r["wall"] / r["calls"]
        base_per_call = 1e3 * base["wall"] / base["calls"]
        lines.append(
            [
                name,
                f"{r['loss']:.3e}",
                f"{r['error']:.3e}",
                str(r["calls"]),
                str(r["effective"]),
                f"{r['wall']:.1f}",
                f"{per_call:.2f}",
                f"{r['error'] / base['error']:.2f}",
                f"{per_call / base_per_call:.2f}",
            ]
        )
    widths = [max(len(line[c]) for line in lines) for c in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=1500, help="closure calls per optimiser")
    p.add_argument("--points", type=int, default=2000, help="interior collocation points")
    p.add_argument("--history", type=int, default=3, help="L-BFGS memory (history_size)")
    p.add_argument("--max-iter", type=int, default=20, help="L-BFGS iterations per step()")
    p.add_argument("--subdomains", type=int, default=4, help="ASPQN: blocks of layers")
    p.add_argument("--local-iters", type=int, default=5, help="ASPQN: local L-BFGS steps per block")
    p.add_argument("--repeats", type=int, default=2, help="runs per optimiser (alternating); the fastest counts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = ["torch LBFGS", "ddnn LBFGS", "ASPQN"]
    best: dict[str, dict] = {}
    print(
        f"# Burgers PINN (plain PyTorch), 8x20 tanh, float64, {args.points} interior points, budget {args.budget} "
        f"closure calls, L-BFGS m={args.history} max_iter={args.max_iter} strong Wolfe, ASPQN S={args.subdomains} "
        f"local_iters={args.local_iters}, {torch.get_num_threads()} threads, best of {args.repeats}",
        flush=True,
    )
    for r in range(args.repeats):
        for method in methods if r % 2 == 0 else methods[::-1]:
            out = train(method, args)
            print(f"#   run {r + 1} {method}: {out['wall']:.1f} s, error {out['error']:.3e}", flush=True)
            if method in best and (out["error"], out["calls"]) != (best[method]["error"], best[method]["calls"]):
                raise RuntimeError(f"{method}: runs differ")
            if method not in best or out["wall"] < best[method]["wall"]:
                best[method] = out
    print(table([(m, best[m]) for m in methods], args.subdomains))


if __name__ == "__main__":
    main()
