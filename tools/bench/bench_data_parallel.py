"""Data-parallel speedup of one global gradient evaluation: N ranks vs 1.

Launches itself under ``mpirun -n 1`` and ``mpirun -n N``; every rank
evaluates its shard of the PINN loss and gradient and one allreduce combines
them (:class:`ddnn.solvers.objective.Objective`). Prints the time per
evaluation of both and the speedup (target on 2 cores: >= 1.6x at N = 2).

Usage::

    python tools/bench/bench_data_parallel.py --problem burgers --points 10000 --ranks 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, REPO)


def worker(args: argparse.Namespace) -> None:
    """Collective. Time ``--repeat`` global loss+gradient evaluations on this job's ranks."""
    import torch

    from ddnn import config as cfg
    from ddnn import parallel
    from ddnn.run import Run

    comm = parallel.init()
    raw = {
        "problem": {"name": args.problem, "n_interior": args.points},
        "solver": {"name": "lbfgs"},
        "run": {"dtype": args.dtype, "print_every": 0},
    }
    run = Run(cfg.parse(raw, comm.size), comm, None, quiet=True)
    theta = run.problem.params.flat.clone()
    run.objective.evaluate(theta)  # warm-up
    times = []
    for _ in range(args.repeat):
        comm.barrier()
        start = time.perf_counter()
        run.objective.evaluate(theta)
        times.append(time.perf_counter() - start)
    best = comm.allreduce_value(min(times), "max")
    if comm.rank == 0:
        print(f"{comm.size} {best:.6f} {torch.get_num_threads()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="burgers", choices=["burgers", "klein_gordon", "diffusion_transport"])
    p.add_argument("--points", type=int, default=10000)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    results = {}
    # 1 rank with all cores as threads, 1 rank with one thread, N ranks with cores / N threads each
    for label, n, threads in (
        ("1 rank", 1, None),
        ("1 rank, 1 thread", 1, "1"),
        (f"{args.ranks} ranks", args.ranks, None),
    ):
        cmd = ["mpirun", "-n", str(n), sys.executable, __file__, "--worker", "--problem", args.problem]
        cmd += ["--points", str(args.points), "--repeat", str(args.repeat), "--dtype", args.dtype]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        if threads:
            env["OMP_NUM_THREADS"] = threads
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, env=env).stdout.split()
        results[label] = (float(out[1]), int(out[2]))
    print(f"# {args.problem}, {args.points} points, {args.dtype}, best of {args.repeat} (cores: {os.cpu_count()})")
    for label, (t, th) in results.items():
        print(f"{label:>18} ({th} thread(s) per rank): {t * 1e3:8.1f} ms per gradient evaluation")
    tn = results[f"{args.ranks} ranks"][0]
    for label in ("1 rank", "1 rank, 1 thread"):
        t1 = results[label][0]
        print(f"speedup {args.ranks} ranks vs {label}: {t1 / tn:.2f}x (efficiency {t1 / tn / args.ranks:.0%})")


if __name__ == "__main__":
    main()
