"""Time per iteration and per evaluation: ddnn's L-BFGS against torch.optim.LBFGS.

Both run strong Wolfe line searches (c1 = 1e-4, c2 = 0.9, at most 25
evaluations per search) with the same memory on the same problem, where one
evaluation is cheap so that the optimiser's own overhead shows:

``mnist``  the seed's MNIST network 784-32-32-10 (26,506 parameters in 6
           tensors), cross-entropy with label smoothing 0.1 (so that the
           minimum is not zero and runs do not end early) on a random batch;
``pinn``   a PINN-shaped tanh MLP 2-50x10-1 (23,151 parameters in 22
           tensors) fitted to a smooth function on a small batch of points.

Each optimiser makes ``--iters`` iterations inside one ``step`` call (torch:
``max_iter``; ddnn: ``max_iter`` of :class:`ddnn.optim.LBFGS`), from the same
initial weights. Every run is repeated ``--repeats`` times, alternating
between the two, and the fastest repeat is kept (the machine may be shared).

Printed: iterations, evaluations, microseconds per iteration and per
evaluation, the overhead per evaluation (time per evaluation minus one bare
closure call), and the ratios ddnn / torch. The line searches differ, so the
number of evaluations per iteration may differ; the time per evaluation is
the fairer comparison of the optimisers' own cost.

Usage::

    python tools/bench/bench_lbfgs.py [--problem mnist|pinn|both] [--iters 50] [--memory 3]
                                      [--batch 64] [--repeats 5] [--threads 1] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import ddnn.optim


def make_problem(name: str, batch: int, dtype: torch.dtype, seed: int = 0):
    """A factory of fresh networks (same weights every time) and a closure factory for them."""
    gen = torch.Generator().manual_seed(seed)
    if name == "mnist":
        x = torch.randn(batch, 784, generator=gen, dtype=dtype)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        sizes = [784, 32, 32, 10]

        def loss_fn(out):
            return nn.functional.cross_entropy(out, labels, label_smoothing=0.1)

    else:
        x = torch.rand(batch, 2, generator=gen, dtype=dtype) * 2 - 1
        target = torch.sin(torch.pi * x[:, :1]) * torch.exp(-x[:, 1:])
        sizes = [2] + [50] * 10 + [1]

        def loss_fn(out):
            return ((out - target) ** 2).mean()

    def network() -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        return nn.Sequential(*layers[:-1]).to(dtype)

    def closure_for(model: nn.Module, opt: torch.optim.Optimizer, counter: list[int]):
        def closure():
            counter[0] += 1
            opt.zero_grad()
            loss = loss_fn(model(x))
            loss.backward()
            return loss

        return closure

    return network, closure_for


def run_torch(network, closure_for, iters: int, memory: int) -> tuple[float, int, int, float]:
    model = network()
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=iters,
        max_eval=100 * iters,
        history_size=memory,
        tolerance_grad=-1.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    counter = [0]
    closure = closure_for(model, opt, counter)
    start = time.perf_counter()
    opt.step(closure)
    seconds = time.perf_counter() - start
    state = opt.state[opt.param_groups[0]["params"][0]]
    return seconds, int(state["n_iter"]), counter[0], float(closure().detach())


def run_ddnn(network, closure_for, iters: int, memory: int) -> tuple[float, int, int, float]:
    model = network()
    opt = ddnn.optim.LBFGS(  # torch's arguments: the same limits as run_torch
        model.parameters(),
        lr=1.0,
        max_iter=iters,
        max_eval=100 * iters,
        history_size=memory,
        tolerance_grad=-1.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    counter = [0]
    closure = closure_for(model, opt, counter)
    start = time.perf_counter()
    opt.step(closure)
    seconds = time.perf_counter() - start
    return seconds, opt.solver.iteration, counter[0], float(closure().detach())


def closure_seconds(network, closure_for, repeats: int = 300) -> float:
    """Fastest of three timings of ``repeats`` bare closure calls, per call."""
    model = network()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    closure = closure_for(model, opt, [0])
    closure()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            closure()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def bench(name: str, args: argparse.Namespace) -> None:
    dtype = getattr(torch, args.dtype)
    network, closure_for = make_problem(name, args.batch, dtype)
    params = list(network().parameters())
    n = sum(p.numel() for p in params)
    print(
        f"\n[{name}] {n} parameters in {len(params)} tensors, batch {args.batch}, {args.dtype}, "
        f"{torch.get_num_threads()} thread(s); memory {args.memory}, strong Wolfe, {args.iters} iterations"
    )
    runs = {"torch": run_torch, "ddnn": run_ddnn}
    for run in runs.values():  # warm-up
        run(network, closure_for, min(args.iters, 10), args.memory)
    results: dict[str, tuple[float, int, int, float]] = {}
    for _ in range(args.repeats):
        for label, run in runs.items():
            out = run(network, closure_for, args.iters, args.memory)
            if label not in results or out[0] < results[label][0]:
                results[label] = out
    bare = closure_seconds(network, closure_for)
    print(f"one bare closure call (forward + backward): {1e6 * bare:.1f} us")
    header = ("", "iters", "evals", "final loss", "us/iter", "us/eval", "overhead/eval")
    print("{:6s} {:>6s} {:>6s} {:>11s} {:>9s} {:>9s} {:>14s}".format(*header))
    for label, (seconds, iters, evals, loss) in results.items():
        per_iter, per_eval = seconds / iters, seconds / evals
        print(
            f"{label:6s} {iters:6d} {evals:6d} {loss:11.4e} {1e6 * per_iter:9.1f} {1e6 * per_eval:9.1f}"
            f" {1e6 * (per_eval - bare):11.1f} us"
        )
    t_s, t_i, t_e, _ = results["torch"]
    d_s, d_i, d_e, _ = results["ddnn"]
    print(
        f"ratio ddnn/torch: per iteration {(d_s / d_i) / (t_s / t_i):.3f}, "
        f"per evaluation {(d_s / d_e) / (t_s / t_e):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("mnist", "pinn", "both"), default="both")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--memory", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("mnist", "pinn") if args.problem == "both" else (args.problem,):
        bench(name, args)


if __name__ == "__main__":
    main()
