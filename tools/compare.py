"""Time-to-solution table: when did each run reach the reference error, and at what cost?

Examples
--------
::

    python tools/compare.py runs/burgers_*                      # reference: the lbfgs run(s)
    python tools/compare.py runs/kg_* --reference runs/kg_lbfgs --format markdown
    python tools/compare.py runs/mnist_* --metric accuracy --target 0.97 --format csv

The reference value of ``--metric`` (default: ``rel_l2_error`` when the runs
have it, else the first metric, else the loss) is, in order of precedence,

- ``--target VALUE``;
- the value reached by the ``--reference`` run(s);
- the value reached by the run(s) whose solver is ``lbfgs`` (``--baseline-solver``).

"Reached" is the final value of the metric (``--value best``: the best value
over the run). With several reference runs (seeds) the least demanding of
their values is used, so that every reference run reaches it. Errors are
reached from above, accuracies (names containing "acc", or the file's
``higher_is_better`` attribute) from below.

For each run the table gives the method, the number of ranks, whether it
reached the reference and, at the first recorded iteration that did, the
wall time, iterations, gradient evaluations and (when recorded) effective
gradient evaluations; then the final metric and the speedup: the mean time
of the reference runs to the reference value divided by the run's time.
``--format csv`` prints every number exactly as stored.
"""

from __future__ import annotations

import math

import _results as res
import numpy as np

PROG = "compare.py"


def _parser():
    p = res.argument_parser(PROG, "Time-to-solution table of ddnn runs against an L-BFGS reference.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or results.h5 / checkpoint.h5")
    p.add_argument("--metric", help="history column compared (default: rel_l2_error, else the first metric)")
    p.add_argument("--reference", action="append", default=[], metavar="RUN", help="reference run(s)")
    p.add_argument("--baseline-solver", default="lbfgs", help="solver of the reference runs when no --reference")
    p.add_argument("--target", type=float, help="reference value of the metric (overrides the reference runs)")
    p.add_argument("--value", choices=("final", "best"), default="final", help="which value a reference run reached")
    p.add_argument("--format", choices=("text", "markdown", "csv"), default="text", help="table format")
    return p


def _default_metric(runs: list[res.RunData]) -> str:
    names = res.metric_names(runs[0])
    if "rel_l2_error" in names:
        return "rel_l2_error"
    return names[0] if names else "loss"


def _reached_value(run: res.RunData, metric: str, which: str, higher: bool) -> float:
    values = res.column(run, metric)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise res.ToolError(f"{run.path}: the metric {metric!r} was never evaluated")
    if which == "final":
        return float(values[-1])
    return float(values.max() if higher else values.min())


def _row(run: res.RunData, label: str, metric: str, target: float, higher: bool, effective: bool) -> dict:
    values = res.column(run, metric)
    index = res.first_reaching(values, target, higher)
    finite = values[np.isfinite(values)]
    row = {
        "run": run.name,
        "method": label,
        "ranks": run.world_size,
        "reached": index is not None,
        "time_s": None,
        "iterations": None,
        "grad_evals": None,
        "effective_grad_evals": None,
        f"final_{metric}": float(finite[-1]) if finite.size else math.nan,
        "speedup": None,
    }
    if index is not None:
        row["time_s"] = float(res.column(run, "wall_time")[index])
        row["iterations"] = float(res.column(run, "iteration")[index])
        row["grad_evals"] = float(res.column(run, "grad_evals")[index])
        if effective and "effective_grad_evals" in run.history:
            row["effective_grad_evals"] = float(run.history["effective_grad_evals"][index])
    if not effective:
        del row["effective_grad_evals"]
    return row


def compare(args) -> int:
    runs = res.load_runs(args.runs)
    references = [res.load_run(r) for r in args.reference]
    metric = args.metric or _default_metric(runs)
    for run in runs + references:
        res.column(run, metric)
    higher = res.higher_is_better(runs[0], metric)
    if not references:
        references = [r for r in runs if r.solver == args.baseline_solver]

    if args.target is not None:
        target = args.target
        source = "--target"
    elif references:
        reached = [_reached_value(r, metric, args.value, higher) for r in references]
        target = min(reached) if higher else max(reached)
        source = f"{args.value} value of {', '.join(r.name for r in references)}"
    else:
        raise res.ToolError(
            f"no reference: no run uses solver {args.baseline_solver!r}; give --reference RUN or --target VALUE"
        )

    effective = any("effective_grad_evals" in r.history for r in runs)
    labels = res.labels(runs)
    rows = [_row(run, label, metric, target, higher, effective) for run, label in zip(runs, labels)]

    reference_times = []
    for ref in references:
        index = res.first_reaching(res.column(ref, metric), target, higher)
        if index is not None:
            reference_times.append(float(res.column(ref, "wall_time")[index]))
    reference_time = float(np.mean(reference_times)) if reference_times else None
    for row in rows:
        if reference_time is not None and row["time_s"]:
            row["speedup"] = reference_time / row["time_s"]

    header = list(rows[0])
    table = res.format_table(header, [[row[h] for h in header] for row in rows], args.format)
    if args.format != "csv":
        sign = ">=" if higher else "<="
        print(f"reference: {metric} {sign} {res.fmt_number(target)} ({source})")
        if reference_time is not None:
            print(f"reference time: {res.fmt_number(reference_time)} s")
        print()
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    return res.main_guard(PROG, lambda a: compare(_parser().parse_args(a)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
