"""ASPQN and MSPQN vs L-BFGS: cost to reach the error L-BFGS reaches (the seed's table).

For each PINN, L-BFGS (m = 3, strong Wolfe) runs for a budget of iterations;
its best relative L2 error is the target. ASPQN and MSPQN (L-BFGS right
preconditioned by additive / multiplicative Schwarz over S layer blocks) then
run until they reach that error or their own budget. Printed per method:
iterations, effective gradient evaluations (global + local, additive local
solves counted once per outer iteration as they run concurrently — the
seed's #g_e), wall time on this machine, and the ratios to L-BFGS. All runs
are serial and in one process, so the wall times compare side by side; the
parallel efficiency of the local solves is measured separately with
``--ranks``: ASPQN on 1 and on N ranks (mpirun), same iterations.

Usage::

    python tools/bench/bench_aspqn.py --problem burgers --points 2000 --lbfgs-iters 300
    python tools/bench/bench_aspqn.py --problem klein_gordon --subdomains 2 4 6
    python tools/bench/bench_aspqn.py --ranks 2          # wall time, 2 ranks vs 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from ddnn import config as cfg  # noqa: E402
from ddnn.parallel import SerialComm  # noqa: E402
from ddnn.run import Run  # noqa: E402

LAYERS = {"burgers": 9, "klein_gordon": 7, "diffusion_transport": 11}


def _raw(problem: str, points: int, solver: dict, max_iter: int, target: float | None) -> dict:
    run = {"max_iter": max_iter, "dtype": "float64", "print_every": 0, "metrics_every": 1, "threads": 2}
    if target is not None:
        run.update(target_metric="rel_l2_error", target_value=target)
    boundary = max(100, points // 10)
    return {
        "problem": {"name": problem, "n_interior": points, "n_boundary": boundary, "n_initial": boundary},
        "solver": solver,
        "run": run,
    }


def _lbfgs() -> dict:
    return {"name": "lbfgs", "memory": 3, "line_search": {"name": "strong_wolfe"}}


def _preconditioned(variant: str, subdomains: int, local_iters: int) -> dict:
    return {
        **_lbfgs(),
        "npc": {
            "name": "schwarz",
            "variant": variant,
            "subdomains": subdomains,
            "local_iters": local_iters,
            "local": {"name": "lbfgs", "memory": 3, "line_search": "armijo"},
            "line_search": "armijo",
        },
    }


def _train(raw: dict) -> dict:
    config = cfg.parse(raw)
    start = time.perf_counter()
    run = Run(config, SerialComm(), None, quiet=True)
    result = run.execute()
    wall = time.perf_counter() - start
    h = run.history.arrays()
    return {"result": result, "history": h, "wall": wall}


def _first_reach(h: dict, target: float) -> int | None:
    err = h["rel_l2_error"]
    hits = np.nonzero(np.nan_to_num(err, nan=np.inf) <= target)[0]
    return int(hits[0]) if hits.size else None


def _training_time(h: dict, i: int) -> float:
    """Wall time up to row i without the time spent evaluating metrics (runs differ in iterations)."""
    return float(h["wall_time"][i] - h.get("time_metrics", np.zeros_like(h["wall_time"]))[i])


def _row(name: str, out: dict, target: float, base: dict | None) -> list[str]:
    h = out["history"]
    i = _first_reach(h, target)
    best = float(np.nanmin(h["rel_l2_error"]))
    if i is None:
        return [name, "no", "-", "-", "-", f"{best:.3e}", "-", "-"]
    iters = int(h["iteration"][i])
    evals = float(h["effective_grad_evals"][i])
    wall = _training_time(h, i)
    cells = [name, "yes", str(iters), f"{evals:.0f}", f"{wall:.1f}", f"{best:.3e}"]
    if base is None:
        return cells + ["1.0", "1.0"]
    return cells + [f"{base['evals'] / evals:.1f}x", f"{base['wall'] / wall:.1f}x"]


def _table(rows: list[list[str]]) -> str:
    head = [
        "method",
        "reached",
        "iters",
        "eff. grad evals",
        "wall [s]",
        "best error",
        "evals: lbfgs/this",
        "time: lbfgs/this",
    ]
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def compare(args: argparse.Namespace) -> None:
    print(f"# {args.problem}: {args.points} interior points, float64, serial, L-BFGS budget {args.lbfgs_iters} iters")
    lbfgs = _train(_raw(args.problem, args.points, _lbfgs(), args.lbfgs_iters, None))
    target = float(np.nanmin(lbfgs["history"]["rel_l2_error"]))
    i = _first_reach(lbfgs["history"], target)
    h = lbfgs["history"]
    base = {"evals": float(h["effective_grad_evals"][i]), "wall": _training_time(h, i)}
    print(f"# target = best L-BFGS error {target:.3e}", flush=True)
    rows = [_row("lbfgs", lbfgs, target, None)]
    for variant, label in (("additive", "aspqn"), ("multiplicative", "mspqn")):
        for s in args.subdomains:
            if s > LAYERS[args.problem]:
                continue
            solver = _preconditioned(variant, s, args.local_iters)
            out = _train(_raw(args.problem, args.points, solver, args.max_iter, target))
            rows.append(_row(f"{label} S={s}", out, target, base))
            print(_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(_table(rows))


def ranks(args: argparse.Namespace) -> None:
    """ASPQN with S = N blocks: wall time on N ranks vs 1 rank, same iterations (local solves in parallel)."""
    n = args.ranks
    solver = _preconditioned("additive", n, args.local_iters)
    raw = _raw(args.problem, args.points, solver, args.rank_iters, None)
    raw["run"].pop("threads")
    raw["run"]["metrics_every"] = 10**6
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(raw, fh)
        # 1 rank with every core as threads, 1 rank with one thread, n ranks (cores / n threads each)
        for label, p, threads in (("1 rank", 1, None), ("1 rank, 1 thread", 1, "1"), (f"{n} ranks", n, None)):
            out = os.path.join(tmp, f"np{p}_{threads}")
            cmd = ["mpirun", "-n", str(p), sys.executable, "-m", "ddnn", path, "--out", out, "--quiet"]
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            env["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..", "..")
            if threads:
                env["OMP_NUM_THREADS"] = threads
            subprocess.run(cmd, check=True, env=env)
            import h5py

            with h5py.File(os.path.join(out, "results.h5")) as f:
                times[label] = float(f["history/wall_time"][-1])
    print(f"# ASPQN S={n}, {args.rank_iters} iterations, {args.problem} {args.points} points (cores: {os.cpu_count()})")
    for label, t in times.items():
        print(f"{label:>18}: {t:.2f} s")
    for label in ("1 rank", "1 rank, 1 thread"):
        speedup = times[label] / times[f"{n} ranks"]
        print(f"speedup {n} ranks vs {label}: {speedup:.2f}x (efficiency {speedup / n:.0%})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="burgers", choices=sorted(LAYERS))
    p.add_argument("--points", type=int, default=2000, help="interior collocation points")
    p.add_argument("--lbfgs-iters", type=int, default=300, help="L-BFGS budget that sets the target error")
    p.add_argument("--max-iter", type=int, default=300, help="budget of every preconditioned run")
    p.add_argument("--subdomains", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--local-iters", type=int, default=10)
    p.add_argument("--ranks", type=int, default=0, help="only measure ASPQN wall time on this many ranks vs 1")
    p.add_argument("--rank-iters", type=int, default=20)
    args = p.parse_args()
    if args.ranks:
        ranks(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
