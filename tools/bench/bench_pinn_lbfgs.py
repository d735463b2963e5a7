"""Our L-BFGS vs torch.optim.LBFGS on a seed PINN: error after the same gradient budget.

Both start from the same network, use memory m = 3 and a strong-Wolfe line
search, and stop after the same number of loss+gradient evaluations (torch's
closure calls). Printed: relative L2 error, loss, and wall time of each, and
the ratios, measured side by side in one run.

Usage::

    python tools/bench/bench_pinn_lbfgs.py --problem burgers --points 2000 --budget 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from ddnn import config as cfg  # noqa: E402
from ddnn import registry  # noqa: E402
from ddnn.parallel import SerialComm  # noqa: E402
from ddnn.run import Run  # noqa: E402


def _raw(args: argparse.Namespace) -> dict:
    boundary = max(100, args.points // 10)
    return {
        "problem": {"name": args.problem, "n_interior": args.points, "n_boundary": boundary, "n_initial": boundary},
        "solver": {"name": "lbfgs", "memory": 3, "line_search": {"name": "strong_wolfe", "max_evals": 25}},
        "run": {
            "max_iter": 10**9,
            "max_grad_evals": args.budget,
            "dtype": args.dtype,
            "print_every": 0,
            "metrics_every": 10**9,
            "threads": args.threads,
            "seed": args.seed,
        },
    }


def ours(args: argparse.Namespace) -> dict:
    run = Run(cfg.parse(_raw(args)), SerialComm(), None, quiet=True)
    start = time.perf_counter()
    run.execute()
    wall = time.perf_counter() - start
    return {
        "error": run.problem.metrics()["rel_l2_error"],
        "loss": run.history.last("loss"),
        "evals": int(run.counters["grad_evals"]),
        "iters": run.iteration,
        "wall": wall,
    }


def reference(args: argparse.Namespace) -> dict:
    """torch.optim.LBFGS on the same problem, network and samples."""
    config = cfg.parse(_raw(args))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    entry = registry.lookup("problem", args.problem)
    model = registry.build("model", config.model, entry.cls.input_dim, entry.cls.output_dim)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    problem = entry.cls(config.problem.options, model, device="cpu", dtype=dtype, seed=args.seed)
    samples = problem.training_samples()
    params = problem.params.parameters()
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        history_size=3,
        max_iter=args.budget,
        max_eval=args.budget,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    evals = 0
    last = float("nan")

    def closure():
        nonlocal evals, last
        opt.zero_grad()
        loss = sum(problem.loss_terms(samples).values())
        loss.backward()
        evals += 1
        last = float(loss.detach())
        return loss

    start = time.perf_counter()
    opt.step(closure)
    wall = time.perf_counter() - start
    iters = opt.state[opt._params[0]]["n_iter"]
    return {"error": problem.metrics()["rel_l2_error"], "loss": last, "evals": evals, "iters": iters, "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="burgers", choices=["burgers", "klein_gordon", "diffusion_transport"])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--budget", type=int, default=1000, help="loss+gradient evaluations")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the fastest is kept")
    args = p.parse_args()
    print(f"# {args.problem}, {args.points} points, {args.dtype}, budget {args.budget} gradient evaluations, m = 3")
    # alternate the two, twice, and keep each one's faster run: the machine is shared
    runs_a, runs_b = [], []
    for _ in range(args.repeats):
        runs_a.append(ours(args))
        runs_b.append(reference(args))
    a = min(runs_a, key=lambda r: r["wall"])
    b = min(runs_b, key=lambda r: r["wall"])
    print(f"{'':16}{'rel_l2_error':>14}{'loss':>14}{'evals':>8}{'iters':>8}{'wall [s]':>10}{'s/iter':>10}")
    for name, r in (("ddnn lbfgs", a), ("torch LBFGS", b)):
        print(
            f"{name:16}{r['error']:14.4e}{r['loss']:14.4e}{r['evals']:8d}{r['iters']:8d}"
            f"{r['wall']:10.2f}{r['wall'] / max(r['iters'], 1):10.4f}"
        )
    print(
        f"error ratio ours/torch {a['error'] / b['error']:.3f} (target <= 1); "
        f"time per iteration ours/torch {(a['wall'] / a['iters']) / (b['wall'] / b['iters']):.3f}; "
        f"time per evaluation ours/torch {(a['wall'] / a['evals']) / (b['wall'] / b['evals']):.3f}"
    )


if __name__ == "__main__":
    main()
