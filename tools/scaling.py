"""Strong scaling: speedup and parallel efficiency against the number of ranks.

Examples
--------
::

    python tools/scaling.py runs/sweep/aspqn_np*_seed* -o scaling.pdf
    python tools/scaling.py runs/sweep/* --metric rel_l2_error --target 1e-3 --format markdown

Runs are grouped into series by configuration (all options except
``run.seed``; the world size is what varies inside a series). For each
series and number of ranks p the time T(p) is the mean over its runs (seeds)
of either

- the wall time per iteration (default): final ``wall_time`` / final ``iteration``;
- with ``--target VALUE``: the wall time at which ``--metric`` (default
  ``rel_l2_error``, else the first metric) first reached VALUE; runs that
  never reached it are left out (the ``runs`` column says how many counted).

Speedup S(p) = T(p0) / T(p) and efficiency E(p) = S(p) p0 / p, with p0 the
smallest number of ranks of the series. The table is printed; ``-o`` also
draws speedup (with the ideal line) and efficiency against p.
"""

from __future__ import annotations

import math

import _results as res
import numpy as np

PROG = "scaling.py"


def _parser():
    p = res.argument_parser(PROG, "Speedup and parallel efficiency of ddnn runs against the number of ranks.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or results.h5 / checkpoint.h5")
    p.add_argument("--target", type=float, help="measure the time to reach this value of --metric")
    p.add_argument("--metric", help="metric for --target (default: rel_l2_error, else the first metric)")
    p.add_argument("--format", choices=("text", "markdown", "csv"), default="text", help="table format")
    p.add_argument("-o", "--output", help="also draw the figure (.png or .pdf)")
    return p


def _time(run: res.RunData, target: float | None, metric: str | None) -> float | None:
    """Wall time per iteration, or time to reach ``target`` (``None`` if never reached)."""
    wall = res.column(run, "wall_time")
    if target is None:
        iterations = res.column(run, "iteration")
        it, t = res.finite(iterations, wall)
        if it.size == 0 or it[-1] <= 0:
            raise res.ToolError(f"{run.path}: no iterations recorded")
        return float(t[-1] / it[-1])
    values = res.column(run, metric)
    index = res.first_reaching(values, target, res.higher_is_better(run, metric))
    return None if index is None else float(wall[index])


def scaling(args) -> int:
    if args.output:
        fmt = res.check_output(args.output)
    runs = res.load_runs(args.runs)
    metric = None
    if args.target is not None:
        names = res.metric_names(runs[0])
        metric = args.metric or ("rel_l2_error" if "rel_l2_error" in names else (names[0] if names else "loss"))
    times = [_time(run, args.target, metric) for run in runs]

    ignore = {res.SEED_KEY, res.RANKS_KEY}
    series = res.group_runs(runs, ignore)
    representatives = [runs[members[0]] for members in series]
    names = res.labels(representatives, ignore=ignore) if len(representatives) > 1 else [runs[0].solver]

    column = "time_to_target_s" if args.target is not None else "time_per_iteration_s"
    header = ["method", "ranks", "runs", column, "speedup", "efficiency"]
    rows = []
    curves = []
    for name, members in zip(names, series):
        by_ranks: dict[int, list[int]] = {}
        for i in members:
            by_ranks.setdefault(runs[i].world_size, []).append(i)
        ranks = sorted(by_ranks)
        mean = {}
        for p in ranks:
            counted = [times[i] for i in by_ranks[p] if times[i] is not None]
            mean[p] = float(np.mean(counted)) if counted else math.nan
            rows.append([name, p, f"{len(counted)}/{len(by_ranks[p])}", mean[p] if counted else None])
        p0 = ranks[0]
        speedups, efficiencies = [], []
        for row, p in zip(rows[-len(ranks) :], ranks):
            speedup = mean[p0] / mean[p] if mean[p] > 0 else math.nan
            efficiency = speedup * p0 / p
            row += [None if math.isnan(speedup) else speedup, None if math.isnan(efficiency) else efficiency]
            speedups.append(speedup)
            efficiencies.append(efficiency)
        curves.append((name, ranks, speedups, efficiencies))

    if args.format != "csv":
        what = f"time to {metric} = {res.fmt_number(args.target)}" if args.target is not None else "time per iteration"
        print(f"T(p): {what}; speedup T(p0)/T(p), efficiency speedup*p0/p, p0 = fewest ranks of each method")
        print()
    print(res.format_table(header, rows, args.format))

    if args.output:
        plt = res.pyplot()
        fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(10, 4))
        all_ranks = sorted({p for _, ranks, _, _ in curves for p in ranks})
        for k, (name, ranks, speedups, efficiencies) in enumerate(curves):
            color = f"C{k % 10}"
            ax_s.plot(ranks, speedups, "o-", color=color, label=name)
            ax_s.plot(ranks, [p / ranks[0] for p in ranks], ":", color=color, alpha=0.6)
            ax_e.plot(ranks, efficiencies, "o-", color=color, label=name)
        ax_s.set_ylabel("speedup")
        ax_e.set_ylabel("parallel efficiency")
        ax_e.axhline(1.0, color="k", linestyle=":", alpha=0.6)
        ax_e.set_ylim(bottom=0)
        for ax in (ax_s, ax_e):
            ax.set_xlabel("ranks")
            ax.set_xticks(all_ranks)
            ax.grid(True, alpha=0.3)
        ax_s.legend(fontsize="small", title="dotted: ideal", title_fontsize="small")
        fig.tight_layout()
        fig.savefig(args.output, format=fmt, dpi=150)
        plt.close(fig)
        if args.format != "csv":
            print(f"\nwrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    return res.main_guard(PROG, lambda a: scaling(_parser().parse_args(a)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
