"""ASPQN and MSPQN vs L-BFGS at the paper's protocol: cost to reach L-BFGS's *final* error and loss.

Protocol (Kopaničáková, Kothari, Karniadakis & Krause, SISC 2024, and the
seed): L-BFGS with m = 3 and strong Wolfe runs until its error stalls; its
error and loss there are the targets. The **plateau rule**: L-BFGS has
stalled at iteration i when its best error over the next ``--window``
iterations improves on its best error up to i by less than ``--stall``
(relative); the run is cut at the first such i (or at ``--lbfgs-iters``).
ASPQN (S blocks, additive, one block per rank) and MSPQN (multiplicative)
then run until they reach both targets or their budget. For every method,
under both counts of gradient evaluations:

* **ours** — every evaluation, local ones of concurrent blocks once per outer
  iteration (``effective_grad_evals``), line-search trials included;
* **the seed's** — 1 per L-BFGS iteration, 2 + k per ASPQN and 2 + S·k per
  MSPQN outer iteration (k local steps), line-search trials apart;

the evaluations to reach the target error and the target loss, and the
ratio L-BFGS / method, over ``--seeds`` seeds (median [min, max]). Ratios of
an error on a plateau are unstable: read the loss ratios beside them.

The default is CPU-sized (Burgers, 1,000 points, float64, serial: about 40
minutes on 2 cores); ``--points 10000`` is the seed's size (a GPU or a night).

Usage::

    python tools/bench/bench_aspqn.py                               # Burgers, S = 8, 3 seeds
    python tools/bench/bench_aspqn.py --problem klein_gordon --subdomains 6
    python tools/bench/bench_aspqn.py --constraints hard            # initial and boundary conditions built in
    python tools/bench/bench_aspqn.py --ranks 2                     # wall time of ASPQN on 2 ranks vs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np
from _runs import run

LAYERS = {"burgers": 9, "klein_gordon": 7, "diffusion_transport": 11}


def problem(args: argparse.Namespace) -> dict:
    boundary = max(100, args.points // 10)
    raw = {"name": args.problem, "n_interior": args.points, "n_boundary": boundary}
    if args.problem != "diffusion_transport":
        raw["n_initial"] = boundary
    if args.constraints != "penalty":
        raw["constraints"] = args.constraints
    return raw


def lbfgs() -> dict:
    return {"name": "lbfgs", "memory": 3, "line_search": {"name": "strong_wolfe"}}


def preconditioned(variant: str, subdomains: int, local_iters: int) -> dict:
    return {
        **lbfgs(),
        "npc": {
            "name": "schwarz",
            "variant": variant,
            "subdomains": subdomains,
            "local_iters": local_iters,
            "local": {"name": "lbfgs", "memory": 10, "line_search": "armijo"},
            "line_search": "armijo",
        },
    }


def plateau(history: dict[str, np.ndarray], window: int, stall: float) -> int:
    """The row where L-BFGS stalled (see the module docstring), else the last row."""
    err = np.nan_to_num(history["rel_l2_error"], nan=np.inf)
    best = np.minimum.accumulate(err)
    iters = history["iteration"]
    for i in range(len(iters)):
        later = np.flatnonzero((iters > iters[i]) & (iters <= iters[i] + window))
        if later.size and iters[later[-1]] >= iters[i] + window and best[later[-1]] > (1 - stall) * best[i]:
            return i
    return len(iters) - 1


def seed_count(history: dict[str, np.ndarray], solver: dict) -> np.ndarray:
    """The seed's gradient evaluations per row: 1 per L-BFGS iteration, 2 + k (ASPQN), 2 + S k (MSPQN)."""
    npc = solver.get("npc")
    if npc is None:
        return history["iteration"].astype(float)
    k = npc["local_iters"]
    per = 2 + k if npc["variant"] == "additive" else 2 + npc["subdomains"] * k
    return history["iteration"] * per


def first(values: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(np.nan_to_num(values, nan=np.inf) <= target)
    return int(hit[0]) if hit.size else None


def summary(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "not reached"
    text = f"{statistics.median(finite):.1f} [{min(finite):.1f}, {max(finite):.1f}]"
    return text + ("" if len(finite) == len(values) else f" ({len(finite)}/{len(values)})")


def compare(args: argparse.Namespace, tmp: str) -> None:
    base_run = {"dtype": "float64", "print_every": 0, "checkpoint_every": 0, "metrics_every": 10, "threads": 2}
    methods = {"L-BFGS (m = 3)": lbfgs()}
    for s in args.subdomains:
        if s <= LAYERS[args.problem]:
            methods[f"ASPQN S = {s}"] = preconditioned("additive", s, args.local_iters)
            methods[f"MSPQN S = {s}"] = preconditioned("multiplicative", s, args.local_iters)
    # ratios[method][measure] over seeds
    ratios: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    targets = []
    for seed in range(args.seeds):
        raw = {"problem": problem(args), "run": {**base_run, "seed": seed, "max_iter": args.lbfgs_iters}}
        h = run({**raw, "solver": lbfgs()}, os.path.join(tmp, f"lbfgs_{seed}"))
        i = plateau(h, args.window, args.stall)
        error = float(np.nanmin(h["rel_l2_error"][: i + 1]))
        loss = float(np.min(h["loss"][: i + 1]))
        targets.append((int(h["iteration"][i]), error, loss))
        reference = None
        for name, solver in methods.items():
            if name.startswith("L-BFGS"):
                hist = {k: v[: i + 1] for k, v in h.items()}
            else:
                budget = {
                    **base_run,
                    "seed": seed,
                    "max_iter": args.max_iter,
                    "target_loss": loss,
                    "target_metric": "rel_l2_error",
                    "target_value": error,
                    "stop_when": "all",
                }
                hist = run({**raw, "solver": solver, "run": budget}, os.path.join(tmp, f"{name[:5]}_{seed}"))
            cost = {}
            for target_name, column, target in (("error", "rel_l2_error", error), ("loss", "loss", loss)):
                j = first(hist[column], target)
                for count, values in (("ours", hist["effective_grad_evals"]), ("seed", seed_count(hist, solver))):
                    cost[f"{count} {target_name}"] = float(values[j]) if j is not None else np.inf
            reference = cost if reference is None else reference
            for measure, value in cost.items():
                ratios[name].setdefault(measure, []).append(reference[measure] / value)
                ratios[name].setdefault(f"evals {measure}", []).append(value)
    stalled = ", ".join(f"it {it}: error {e:.3e}, loss {lo:.3e}" for it, e, lo in targets)
    print(f"\n== {args.problem}, {args.points} points, float64, constraints {args.constraints}")
    print(f"L-BFGS stalled at {stalled}")
    print("evaluations to reach L-BFGS's final error / loss (median [min, max] over seeds), and L-BFGS / method")
    header = f"{'method':16s} {'count':5s} {'evals to error':>26s} {'ratio':>22s} {'evals to loss':>26s} {'ratio':>22s}"
    print(header)
    for name in methods:
        for count in ("ours", "seed"):
            r = ratios[name]
            print(
                f"{name:16s} {count:5s} {summary(r[f'evals {count} error']):>26s} {summary(r[f'{count} error']):>22s} "
                f"{summary(r[f'evals {count} loss']):>26s} {summary(r[f'{count} loss']):>22s}"
            )


def ranks(args: argparse.Namespace, tmp: str) -> None:
    """ASPQN with S = N blocks: wall time on N ranks vs 1 rank, the same iterations (local solves in parallel)."""
    n = args.ranks
    raw = {
        "problem": problem(args),
        "solver": preconditioned("additive", n, args.local_iters),
        "run": {
            "max_iter": args.rank_iters,
            "dtype": "float64",
            "print_every": 0,
            "checkpoint_every": 0,
            "metrics_every": 10**6,
        },
    }
    times = {}
    for label, p, threads in (("1 rank", 1, None), ("1 rank, 1 thread", 1, 1), (f"{n} ranks", n, None)):
        times[label] = float(run(raw, os.path.join(tmp, f"np{p}_{threads}"), p, threads)["wall_time"][-1])
    print(f"# ASPQN S={n}, {args.rank_iters} iterations, {args.problem} {args.points} points (cores: {os.cpu_count()})")
    for label, t in times.items():
        print(f"{label:>18}: {t:.2f} s")
    for label in ("1 rank", "1 rank, 1 thread"):
        speedup = times[label] / times[f"{n} ranks"]
        print(f"speedup {n} ranks vs {label}: {speedup:.2f}x (efficiency {speedup / n:.0%})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="burgers", choices=sorted(LAYERS))
    p.add_argument("--points", type=int, default=1000, help="interior collocation points")
    p.add_argument("--constraints", default="penalty", choices=["penalty", "hard"])
    p.add_argument("--lbfgs-iters", type=int, default=25000, help="most L-BFGS iterations before the plateau")
    p.add_argument("--window", type=int, default=3000, help="plateau rule: iterations looked ahead")
    p.add_argument("--stall", type=float, default=0.01, help="plateau rule: relative improvement deemed none")
    p.add_argument("--max-iter", type=int, default=1500, help="outer iterations of every preconditioned run")
    p.add_argument("--subdomains", type=int, nargs="+", default=[8])
    p.add_argument("--local-iters", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ranks", type=int, default=0, help="only measure ASPQN wall time on this many ranks vs 1")
    p.add_argument("--rank-iters", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.ranks:
            ranks(args, tmp)
        else:
            compare(args, tmp)


if __name__ == "__main__":
    main()
