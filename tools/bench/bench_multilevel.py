"""Multilevel methods in samples on logistic regression: the seed's gisette table and its convergence figure.

1. **Table** (gisette-shaped: 6000 × 5000, synthetic; the real file with
   ``--gisette PATH``): TR with exact Hessian-vector products against ASTROM
   and SSN with 1/10/25/50 % coarse sets, to L − L* ≤ 1e-8: iterations,
   gradient, Hessian and CG cost in units of the full data (the seed's
   layout, printed by ``tools/multilevel_table.py``). The seed's ordering to
   test: ASTROM 1 % needs about a third of TR's CG iterations; SSN 1 % more
   than ten times TR's.
2. **Figure** (breast cancer, and a synthetic australian-shaped set 690 × 14):
   effective gradient evaluations (full-gradient units) for L − L* to reach
   1e-6, for SVRG and SARAH (learning rates tuned on a grid), SSN, MLVR2 and
   MLVR3. The seed's claim to test: MLVR3 needs fewer than SVRG and SARAH.

Usage::

    python tools/bench/bench_multilevel.py                 # both (about 10 minutes on 2 cores)
    python tools/bench/bench_multilevel.py --only figure
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from _runs import REPO, run


def work_to(history: dict[str, np.ndarray], target: float) -> float:
    """Gradient work (full-data units) when L − L* first reached ``target`` (nan: never)."""
    hit = np.flatnonzero(history["suboptimality"] <= target)
    return float(history["grad_work"][hit[0]]) if hit.size else float("nan")


def table(args: argparse.Namespace, tmp: str) -> None:
    if args.gisette:
        problem = {"name": "logistic", "dataset": "libsvm", "path": args.gisette, "n_features": 5000, "reg": 1e-3}
    else:
        problem = {"name": "logistic", "n_samples": args.rows, "features": args.features, "reg": 1e-3}
    base = {
        "problem": problem,
        "model": {"name": "linear"},
        "run": {
            "max_iter": 300,
            "target_metric": "suboptimality",
            "target_value": 1e-8,
            "metrics_every": 1,
            "print_every": 0,
            "checkpoint_every": 0,
            "dtype": "float64",
        },
    }
    tr = {"name": "trust_region", "hessian": "exact", "radius": 1.0, "max_radius": 100.0}
    runs = {"TR": tr}
    for pct in (1, 10, 25, 50):
        f = pct / 100
        runs[f"ASTROM {pct}%"] = {
            "name": "multilevel",
            "control": "trust_region",
            "radius": 1.0,
            "max_radius": 100.0,
            "eta": 0.1,
            "grow": 2.0,
            "levels": [{"fraction": f, "resample": "fixed", "pre": 1, "solver": tr}],
        }
    for pct in (1, 10, 25, 50):
        runs[f"SSN {pct}%"] = {
            "name": "multilevel",
            "control": "line_search",
            "levels": [
                {
                    "fraction": pct / 100,
                    "resample": "cycle",
                    "pre": 1,
                    "solver": {"name": "newton", "line_search": "fixed", "cg_iters": 10},
                }
            ],
        }
    outs = []
    for name, solver in runs.items():
        out = os.path.join(tmp, "table_" + name.replace(" ", "_").replace("%", ""))
        run({**base, "solver": solver}, out)
        outs.append(out)
    shape = "gisette" if args.gisette else f"synthetic {args.rows} x {args.features}"
    print(f"\n== logistic regression, {shape}, to L - L* <= 1e-8 (the seed's gisette table)")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "multilevel_table.py"), *outs], check=True)


def figure(args: argparse.Namespace, tmp: str) -> None:
    sets = {
        "breast cancer": {"name": "logistic", "dataset": "breast_cancer", "standardize": True, "reg": 1e-3},
        "australian-shaped": {"name": "logistic", "n_samples": 690, "features": 14, "reg": 1e-3},
    }
    target = 1e-6
    for label, problem in sets.items():
        base = {
            "problem": problem,
            "model": {"name": "linear"},
            "run": {
                "max_iter": 2000,
                "target_metric": "suboptimality",
                "target_value": target,
                "metrics_every": 1,
                "print_every": 0,
                "checkpoint_every": 0,
                "dtype": "float64",
            },
        }
        results: dict[str, float] = {}
        for method in ("SVRG", "SARAH"):
            best = float("inf")
            for lr in (0.1, 0.3, 1.0, 3.0):
                level = {"fraction": 0.02, "resample": "step", "pre": 50, "solver": {"name": "sgd", "lr": lr}}
                if method == "SARAH":
                    level["anchor"] = "step"
                h = run(
                    {**base, "solver": {"name": "multilevel", "levels": [level]}},
                    os.path.join(tmp, f"fig_{label[:4]}_{method}_{lr}"),
                )
                best = min(best, work_to(h, target) if np.isfinite(work_to(h, target)) else float("inf"))
            results[f"{method} (best lr)"] = best
        lbfgs = {"name": "lbfgs", "memory": 5}
        others = {
            "SSN 10%": {
                "name": "multilevel",
                "control": "line_search",
                "levels": [
                    {
                        "fraction": 0.1,
                        "resample": "cycle",
                        "pre": 1,
                        "solver": {"name": "newton", "line_search": "fixed", "cg_iters": 10},
                    }
                ],
            },
            "MLVR2": {
                "name": "multilevel",
                "control": "line_search",
                "levels": [{"fraction": 0.1, "resample": "cycle", "pre": 10, "solver": lbfgs}],
            },
            "MLVR3": {
                "name": "multilevel",
                "control": "line_search",
                "levels": [
                    {"fraction": 0.2, "resample": "cycle", "pre": 10, "solver": lbfgs},
                    {"fraction": 0.1, "resample": "cycle", "pre": 3, "post": 3, "solver": lbfgs},
                ],
            },
        }
        for name, solver in others.items():
            results[name] = work_to(
                run({**base, "solver": solver}, os.path.join(tmp, f"fig_{label[:4]}_{name}")), target
            )
        print(f"\n== {label}: effective gradient evaluations (full-gradient units) to L - L* <= {target:g}")
        mlvr3 = results["MLVR3"]
        for name, value in results.items():
            ratio = f"  {value / mlvr3:5.2f}x MLVR3's" if np.isfinite(value) and np.isfinite(mlvr3) else ""
            shown = f"{value:10.1f}" if np.isfinite(value) else "   not reached"
            print(f"{name:18s} {shown}{ratio}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["table", "figure"])
    p.add_argument("--gisette", help="LIBSVM gisette file (default: a synthetic set of its shape)")
    p.add_argument("--rows", type=int, default=6000)
    p.add_argument("--features", type=int, default=5000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "figure"):
            figure(args, tmp)
        if args.only in (None, "table"):
            table(args, tmp)


if __name__ == "__main__":
    main()
