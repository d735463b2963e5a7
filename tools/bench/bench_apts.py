"""Trust region and APTS on classification: parallel speed, accuracy without a learning rate, variants.

Three measurements, each side by side in one run (this machine is shared and noisy):

1. **Speed.** APTS in data with 2 chunks per batch, run on 2 ranks (one chunk
   each) against 1 rank solving both chunks in turn, one thread per rank:
   wall time per epoch and the ratio (target on 2 cores: >= 1.6x).
2. **Accuracy.** TR of order 1 and 2 (L-SR1), APTS in data and in weights on
   2 and 4 ranks, and Adam with its learning rate tuned on a grid, on digits
   (scikit-learn's bundled set) and a synthetic image set: test accuracy after
   a fixed number of epochs and the epochs to reach a target accuracy (median
   over seeds). The seed's claims to test: APTS reaches Adam's accuracy
   without a learning rate; APTS in weights stays within about a point of TR.
3. **Variants.** APTS in weights against its inexact stochastic variant
   (local solves on the rank's data chunk) and the non-monotone variant
   (windowed acceptance with global steps): wall time, rejected steps, accuracy.

Usage::

    python tools/bench/bench_apts.py                  # everything (about 10 minutes on 2 cores)
    python tools/bench/bench_apts.py --only speed --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from _runs import run


def problem(dataset: str) -> dict:
    if dataset == "digits":
        return {"name": "classification", "dataset": "digits"}
    return {
        "name": "classification",
        "dataset": "images",
        "n_train": 6000,
        "n_test": 1500,
        "image_size": 12,
        "classes": 10,
        "channels": 1,
    }


MODEL = {"name": "mlp", "width": 32, "depth": 2, "activation": "relu"}


def apts(decomposition: str, **schwarz) -> dict:
    norm = "inf" if decomposition == "layers" else 2
    return {
        "name": "trust_region",
        "order": 1,
        "norm": norm,
        "radius": 0.01 if norm == "inf" else 0.1,
        "global_steps": 1,
        "npc": {
            "name": "schwarz",
            "decomposition": decomposition,
            **({"blocks": "slices"} if decomposition == "layers" else {}),
            "local_iters": 5,
            "local": {"name": "trust_region", "order": 1, "norm": norm},
            **schwarz,
        },
    }


METHODS = {
    "TR o=1": ({"name": "trust_region", "order": 1, "radius": 0.1}, 1),
    "TR o=2 (SR1)": ({"name": "trust_region", "order": 2, "hessian": "sr1", "radius": 0.1}, 1),
    "APTS data ws=2": (apts("samples"), 2),
    "APTS data ws=4": (apts("samples"), 4),
    "APTS weights ws=2": (apts("layers"), 2),
    "APTS weights ws=4": (apts("layers"), 4),
}


def first_epoch_reaching(history: dict, target: float) -> float:
    acc = history["accuracy"]
    hit = np.flatnonzero(acc >= target)
    return float(history["epoch"][hit[0]]) if hit.size else float("nan")


_BUSY = """
import sys, time, torch
torch.set_num_threads(1)
a, w = torch.randn(2000, 256), torch.randn(256, 256)
start = time.perf_counter()
for _ in range(300):
    (a @ w).relu_()
print(time.perf_counter() - start)
"""


def attainable() -> float:
    """What two ranks can gain at most here: one compute loop alone vs two at once (fastest of 3)."""
    alone, both = [], []
    for _ in range(3):
        alone.append(float(subprocess.run([sys.executable, "-c", _BUSY], capture_output=True, text=True).stdout))
        procs = [subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        both.append(max(float(p.communicate()[0]) for p in procs))
    return 2 * min(alone) / min(both)


def speed(args: argparse.Namespace, tmp: str) -> None:
    raw = {
        "problem": {
            "name": "classification",
            "dataset": "images",
            "n_train": 20000,
            "n_test": 500,
            "image_size": 16,
            "classes": 10,
        },
        "model": {"name": "mlp", "width": 256, "depth": 2, "activation": "relu"},
        "solver": {**apts("samples", subdomains=2)},
        "data": {"batch_size": 5000},
        "run": {
            "max_epochs": args.epochs,
            "max_iter": 10**6,
            "metrics_every": "100 epochs",
            "print_every": 0,
            "checkpoint_every": 0,
            "threads": 1,
        },
    }
    times: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeat):
        for ranks in (1, 2):  # alternate, keep the fastest of each
            h = run(raw, os.path.join(tmp, f"speed_np{ranks}_{repeat}"), ranks, threads=1)
            times[ranks].append(h["wall_time"][-1] / h["epoch"][-1])
    one, two = min(times[1]), min(times[2])
    print(f"\n== APTS in data, 2 chunks per batch: wall time per epoch (one thread per rank, fastest of {args.repeat})")
    print(
        f"1 rank (both chunks in turn) {one:.3f} s   2 ranks (one chunk each) {two:.3f} s   "
        f"speed-up {one / two:.2f}x (target >= 1.6x)"
    )
    print(
        f"this machine: two single-thread compute loops at once run {attainable():.2f}x as fast as one after the other"
    )


def accuracy(args: argparse.Namespace, tmp: str) -> None:
    for dataset, target in (("digits", 0.95), ("images", 0.95)):
        batch = 450 if dataset == "digits" else 2000
        base = {
            "problem": problem(dataset),
            "model": MODEL,
            "data": {"batch_size": batch},
            "run": {
                "max_epochs": args.epochs,
                "max_iter": 10**6,
                "metrics_every": 1,
                "print_every": 0,
                "checkpoint_every": 0,
            },
        }
        rows = []
        # Adam with its learning rate tuned on a grid (best median final accuracy)
        best = None
        for lr in (1e-3, 3e-3, 1e-2, 3e-2):
            results = [
                run(
                    {**base, "solver": {"name": "adam", "lr": lr}, "run": {**base["run"], "seed": s}},
                    os.path.join(tmp, f"{dataset}_adam_{lr}_{s}"),
                )
                for s in range(args.seeds)
            ]
            final = statistics.median(r["accuracy"][-1] for r in results)
            if best is None or final > best[0]:
                best = (final, lr, results)
        rows.append((f"Adam (lr {best[1]:g}, tuned)", best[2]))
        for name, (solver, ranks) in METHODS.items():
            results = [
                run(
                    {**base, "solver": solver, "run": {**base["run"], "seed": s}},
                    os.path.join(tmp, f"{dataset}_{name.replace(' ', '_')}_{s}"),
                    ranks,
                )
                for s in range(args.seeds)
            ]
            rows.append((name, results))
        print(
            f"\n== {dataset}: test accuracy after {args.epochs} epochs and epochs to {target:.0%} "
            f"(median [min, max] over {args.seeds} seeds; no learning rate in TR and APTS)"
        )
        print(f"{'method':28s} {'accuracy':>24s} {'epochs to target':>18s} {'grad work':>10s}")
        for name, results in rows:
            acc = [r["accuracy"][-1] for r in results]
            epochs = [first_epoch_reaching(r, target) for r in results]
            work = statistics.median(r["effective_grad_work"][-1] for r in results)
            reached = [e for e in epochs if e == e]
            shown = (
                f"{statistics.median(reached):.1f}"
                if len(reached) == len(epochs)
                else f"{len(reached)}/{len(epochs)} runs"
            )
            print(
                f"{name:28s} {statistics.median(acc):8.4f} [{min(acc):.4f}, {max(acc):.4f}] {shown:>18s} {work:10.1f}"
            )


def variants(args: argparse.Namespace, tmp: str) -> None:
    base = {
        "problem": problem("digits"),
        "model": MODEL,
        "data": {"batch_size": 450},
        "run": {
            "max_epochs": args.epochs,
            "max_iter": 10**6,
            "metrics_every": 1,
            "print_every": 0,
            "checkpoint_every": 0,
            "threads": 1,
        },
    }
    cases = {
        "APTS weights": apts("layers"),
        "inexact stochastic (chunk data)": apts("layers", local_data="chunk"),
        "non-monotone (window 5, 2 global steps)": {**apts("layers"), "window": 5, "global_steps": 2},
    }
    print(
        f"\n== APTS in weights and its variants, digits, 2 ranks, {args.epochs} epochs (median over {args.seeds} seeds)"
    )
    print(f"{'variant':42s} {'wall time':>10s} {'rejected':>9s} {'accuracy':>9s}")
    for name, solver in cases.items():
        results = [
            run(
                {**base, "solver": solver, "run": {**base["run"], "seed": s}},
                os.path.join(tmp, f"var_{len(name)}_{s}"),
                2,
                threads=1,
            )
            for s in range(args.seeds)
        ]
        wall = statistics.median(r["wall_time"][-1] for r in results)
        rejected = statistics.median(r.get("tr_rejected", np.zeros(1))[-1] for r in results)
        acc = statistics.median(r["accuracy"][-1] for r in results)
        print(f"{name:42s} {wall:9.2f}s {rejected:9.0f} {acc:9.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["speed", "accuracy", "variants"], help="one measurement only")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="speed: alternating repetitions")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "speed"):
            speed(argparse.Namespace(**{**vars(args), "epochs": min(args.epochs, 3)}), tmp)
        if args.only in (None, "accuracy"):
            accuracy(args, tmp)
        if args.only in (None, "variants"):
            variants(args, tmp)


if __name__ == "__main__":
    main()
