"""Multilevel training of ResNets across depth: fine-level gradient evaluations to a target accuracy.

RMTR with 2 and 3 levels (coarse ResNets of half and a quarter of the
blocks, L-SR1 trust regions on every level) and MG/OPT (L-BFGS smoothers,
line-search control) against single-level trust region, L-BFGS and Adam, on
the peaks set (a dense ResNet) and on scikit-learn's digits (a
convolutional ResNet, standing in for MNIST, which is not on this machine):
fine-level gradient evaluations and wall time until the test accuracy first
reaches the target, and the ratio to single-level TR (the published claim
for RMTR: more than 3x fewer). Coarse-level evaluations are counted apart
(``coarse_grad_evals``) and reported.

Usage::

    python tools/bench/bench_resnet.py                   # both sets (about 20 minutes on 2 cores)
    python tools/bench/bench_resnet.py --only peaks --blocks 32
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _runs import run


def reach(history: dict[str, np.ndarray], target: float) -> tuple[float, float, float]:
    """(fine gradient evaluations, coarse ones, wall time) when the test accuracy first reached ``target``."""
    hit = np.flatnonzero(history["accuracy"] >= target)
    if not hit.size:
        return (float("nan"),) * 3
    i = hit[0]
    coarse = history.get("coarse_grad_evals", np.zeros_like(history["grad_evals"]))[i]
    return float(history["grad_evals"][i]), float(coarse), float(history["wall_time"][i])


def methods(tr: dict, lbfgs: dict, coarse_steps: int) -> dict[str, dict]:
    rmtr = {
        "name": "multilevel",
        "hierarchy": "depth",
        "control": "trust_region",
        "radius": tr["radius"],
        "fine": tr,
        "fine_pre": 1,
        "fine_post": 1,
    }
    mgopt = {
        "name": "multilevel",
        "hierarchy": "depth",
        "control": "line_search",
        "fine": lbfgs,
        "fine_pre": 1,
        "fine_post": 1,
    }
    return {
        "TR (L-SR1)": tr,
        "RMTR 2 levels": {**rmtr, "levels": [{"solver": tr, "pre": coarse_steps}]},
        "RMTR 3 levels": {**rmtr, "levels": [{"solver": tr, "pre": coarse_steps}, {"solver": tr, "pre": 1, "post": 1}]},
        "L-BFGS": lbfgs,
        "MG/OPT 2 levels": {**mgopt, "levels": [{"solver": lbfgs, "pre": coarse_steps}]},
        "Adam (lr 1e-2)": {"name": "adam", "lr": 1e-2},
    }


def bench(name: str, problem: dict, model: dict, target: float, iterations: int, coarse_steps: int, tmp: str) -> None:
    tr = {"name": "trust_region", "order": 2, "hessian": "sr1", "radius": 0.5}
    lbfgs = {"name": "lbfgs", "memory": 5}
    base = {
        "problem": problem,
        "model": model,
        "run": {
            "max_iter": iterations,
            "metrics_every": 1,
            "print_every": 0,
            "checkpoint_every": 0,
            "dtype": "float64",
        },
    }
    print(
        f"\n== {name}: {model['blocks']} residual blocks; fine-level gradient evaluations to test accuracy "
        f"{target:.0%} (full batch)"
    )
    print(f"{'method':18s} {'fine evals':>10s} {'vs TR':>7s} {'coarse evals':>13s} {'wall [s]':>9s} {'final acc':>10s}")
    reference = None
    for label, solver in methods(tr, lbfgs, coarse_steps).items():
        iters = iterations if solver["name"] != "multilevel" else max(1, iterations // 3)
        h = run(
            {**base, "solver": solver, "run": {**base["run"], "max_iter": iters}},
            os.path.join(tmp, f"{name}_{len(label)}_{label[:4]}"),
        )
        fine, coarse, wall = reach(h, target)
        reference = fine if label.startswith("TR") else reference
        ratio = f"{reference / fine:6.2f}x" if reference and np.isfinite(fine) else "      -"
        shown = f"{fine:10.0f}" if np.isfinite(fine) else "   not hit"
        final = h["accuracy"][~np.isnan(h["accuracy"])][-1]
        print(f"{label:18s} {shown} {ratio} {coarse:13.0f} {wall:9.1f} {final:10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["peaks", "digits"])
    p.add_argument("--blocks", type=int, default=32)
    p.add_argument("--iterations", type=int, default=300, help="single-level iterations (a third for V-cycles)")
    p.add_argument("--coarse-steps", type=int, default=20)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "peaks"):
            bench(
                "peaks",
                {"name": "classification", "dataset": "peaks", "n_train": 2000, "n_test": 1000, "classes": 5},
                {"name": "resnet", "width": 8, "blocks": args.blocks, "final_time": 5.0},
                0.85,
                args.iterations,
                args.coarse_steps,
                tmp,
            )
        if args.only in (None, "digits"):
            bench(
                "digits",
                {"name": "classification", "dataset": "digits"},
                {
                    "name": "resnet",
                    "kind": "conv",
                    "width": 6,
                    "blocks": args.blocks // 4,
                    "final_time": 2.0,
                    "activation": "relu",
                },
                0.9,
                args.iterations,
                args.coarse_steps,
                tmp,
            )


if __name__ == "__main__":
    main()
