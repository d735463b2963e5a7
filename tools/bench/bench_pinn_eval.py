"""Time one loss-and-gradient evaluation of the seed's PINNs: Taylor-mode jets against nested autograd.

For each problem (Burgers, Klein–Gordon, diffusion–transport) with its seed
network, two problem instances share the same parameters and the same
``--points`` interior collocation points (boundary and initial terms keep
1,000 points each): one with ``derivatives: taylor`` (forward Taylor jets,
:func:`ddnn.problems.pinn.derivatives.mlp_jet`), one with
``derivatives: autograd`` (nested ``torch.autograd.grad``, the reference).
One evaluation is ``loss_terms`` + ``loss.backward()`` into the flat
gradient, exactly what :class:`ddnn.solvers.objective.Objective` does. The
two variants alternate, ``--repeat`` times each after a warm-up, and the
best and median times are printed with their ratio (autograd / taylor).
The loss values and gradients of the two are checked to agree.

Usage::

    python tools/bench/bench_pinn_eval.py [--points 10000] [--dtype float64] [--repeat 10] [--threads N]
        [--flush-denormal] [--clock wall|cpu] [--problems burgers klein_gordon diffusion_transport]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from ddnn.models.mlp import MLP, MLPOptions
from ddnn.registry import lookup

PROBLEMS = ("burgers", "klein_gordon", "diffusion_transport")


def build(name: str, derivatives: str, points: int, dtype: torch.dtype):
    entry = lookup("problem", name)
    options = replace(entry.options(), n_interior=points, derivatives=derivatives)
    model_options = MLPOptions(**{k: v for k, v in entry.cls.default_model.items() if k != "name"})
    torch.manual_seed(0)
    model = MLP(model_options, entry.cls.input_dim, entry.cls.output_dim)
    return entry.cls(options, model, device="cpu", dtype=dtype, seed=0)


def evaluate(problem, samples) -> torch.Tensor:
    problem.params.zero_grad()
    loss = sum(problem.loss_terms(samples).values())
    loss.backward()
    return loss.detach()


def bench(name: str, points: int, dtype: torch.dtype, repeat: int, clock=time.perf_counter) -> dict:
    fast = build(name, "taylor", points, dtype)
    ref = build(name, "autograd", points, dtype)
    assert fast.use_jet, "the seed network should take the Taylor path"
    samples = fast.training_samples()
    loss_fast, loss_ref = evaluate(fast, samples), evaluate(ref, samples)
    grad_diff = float((fast.params.grad - ref.params.grad).norm() / ref.params.grad.norm())
    times = {"taylor": [], "autograd": []}
    for _ in range(repeat):
        for label, problem in (("taylor", fast), ("autograd", ref)):
            start = clock()
            evaluate(problem, samples)
            times[label].append(clock() - start)
    return {
        "problem": name,
        "params": fast.params.numel,
        "taylor_best": min(times["taylor"]),
        "taylor_median": statistics.median(times["taylor"]),
        "autograd_best": min(times["autograd"]),
        "autograd_median": statistics.median(times["autograd"]),
        "loss_rel_diff": abs(float(loss_fast - loss_ref)) / abs(float(loss_ref)),
        "grad_rel_diff": grad_diff,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10000, help="interior collocation points")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--repeat", type=int, default=10, help="timed evaluations of each variant")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter; cpu: process CPU time (steadier on a shared machine, sums over threads)",
    )
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    dtype = getattr(torch, args.dtype)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(
        f"{args.points} interior points, {args.dtype}, {torch.get_num_threads()} threads, "
        f"{args.repeat} repetitions, {args.clock} clock"
    )
    header = (
        f"{'problem':<20} {'params':>7} {'taylor ms':>10} {'(median)':>9} {'autograd ms':>12} {'(median)':>9}"
        f" {'speed-up':>9} {'(median)':>9} {'|dL|/L':>8} {'|dg|/|g|':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in args.problems:
        r = bench(name, args.points, dtype, args.repeat, clock)
        print(
            f"{r['problem']:<20} {r['params']:>7} {1e3 * r['taylor_best']:>10.1f} {1e3 * r['taylor_median']:>9.1f}"
            f" {1e3 * r['autograd_best']:>12.1f} {1e3 * r['autograd_median']:>9.1f}"
            f" {r['autograd_best'] / r['taylor_best']:>8.2f}x {r['autograd_median'] / r['taylor_median']:>8.2f}x"
            f" {r['loss_rel_diff']:>8.1e} {r['grad_rel_diff']:>9.1e}"
        )


if __name__ == "__main__":
    main()
