"""Plot history columns of one or more runs: loss, error or accuracy against iterations, cost or time.

Examples
--------
::

    python tools/plot_history.py runs/lbfgs runs/aspqn -o burgers.pdf
    python tools/plot_history.py runs/*/ --y loss rel_l2_error --x grad_evals -o cost.png
    python tools/plot_history.py runs/apts_np*_seed* --group-seeds --x effective_grad_evals -o apts.png

Each RUN is a run directory (its ``results.h5``, else its ``checkpoint.h5``)
or the path of either file. One panel per ``--y`` column (default: the loss
and every metric of the first run), all sharing the ``--x`` axis. Legend
labels name the solver and the options that differ between the runs.

With ``--group-seeds`` runs whose configurations differ only in ``run.seed``
(same world size) are drawn as one line, the mean over the seeds, with a
band from the minimum to the maximum. Seeds are compared on a common grid:
the iterations that every run recorded for ``--x iteration``, otherwise 200
points spanning the range of ``--x`` that all runs cover (values linearly
interpolated).
"""

from __future__ import annotations

import _results as res
import numpy as np

PROG = "plot_history.py"
X_CHOICES = ("iteration", "grad_evals", "effective_grad_evals", "local_grad_evals", "wall_time")
AXIS_LABELS = {
    "iteration": "iterations",
    "grad_evals": "gradient evaluations",
    "effective_grad_evals": "effective gradient evaluations",
    "local_grad_evals": "local gradient evaluations",
    "wall_time": "wall time [s]",
}
GRID_POINTS = 200


def _parser():
    p = res.argument_parser(PROG, "Plot history columns (loss, metrics, any column) of ddnn runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or results.h5 / checkpoint.h5")
    p.add_argument("--y", nargs="+", metavar="COLUMN", help="columns to plot (default: loss and the metrics)")
    p.add_argument("--x", default="iteration", help=f"x axis column, e.g. {', '.join(X_CHOICES)}")
    p.add_argument("--log", choices=("none", "x", "y", "both"), default="y", help="logarithmic axes")
    p.add_argument("--group-seeds", action="store_true", help="mean and min/max band over runs differing in seed")
    p.add_argument("--title", help="figure title")
    p.add_argument("-o", "--output", default="history.png", help="figure file (.png or .pdf)")
    return p


def _default_columns(runs: list[res.RunData]) -> list[str]:
    columns = ["loss"]
    for run in runs:
        columns += [m for m in res.metric_names(run) if m not in columns]
    return columns


def _common_grid(series: list[tuple[np.ndarray, np.ndarray]], x_name: str, logx: bool) -> np.ndarray:
    """The x values on which seeds are averaged (see the module docstring)."""
    if x_name == "iteration":
        common = set(series[0][0].tolist())
        for x, _ in series[1:]:
            common &= set(x.tolist())
        if common:
            return np.array(sorted(common))
    lo = max(float(x.min()) for x, _ in series)
    hi = min(float(x.max()) for x, _ in series)
    if not hi > lo:
        return np.array([lo]) if hi == lo else np.array([])
    if logx and lo > 0:
        return np.geomspace(lo, hi, GRID_POINTS)
    return np.linspace(lo, hi, GRID_POINTS)


def _band(series: list[tuple[np.ndarray, np.ndarray]], x_name: str, logx: bool):
    grid = _common_grid(series, x_name, logx)
    if grid.size == 0:
        return None
    values = np.vstack([np.interp(grid, x, y) for x, y in series])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def plot(args) -> int:
    fmt = res.check_output(args.output)
    runs = res.load_runs(args.runs)
    columns = args.y or _default_columns(runs)
    for run in runs:  # every error before any drawing
        res.column(run, args.x)
        for name in columns:
            res.column(run, name)

    if args.group_seeds:
        groups = res.group_seeds(runs)
        representatives = [runs[g[0]] for g in groups]
        names = res.labels(representatives, ignore={res.SEED_KEY})
        names = [f"{n} ({len(g)} seeds)" if len(g) > 1 else n for n, g in zip(names, groups)]
    else:
        groups = [[i] for i in range(len(runs))]
        names = res.labels(runs)

    logx = args.log in ("x", "both")
    logy = args.log in ("y", "both")
    plt = res.pyplot()
    fig, axes = plt.subplots(len(columns), 1, sharex=True, figsize=(7, 2.6 * len(columns) + 0.8), squeeze=False)
    for ax, name in zip(axes[:, 0], columns):
        positive = True
        for k, (group, label) in enumerate(zip(groups, names)):
            color = f"C{k % 10}"
            series = [res.finite(res.column(runs[i], args.x), res.column(runs[i], name)) for i in group]
            series = [(x, y) for x, y in series if x.size]
            if not series:
                continue
            positive &= all(bool((y > 0).all()) for _, y in series)
            if len(series) == 1:
                x, y = series[0]
                ax.plot(x, y, color=color, label=label, marker="." if x.size == 1 else None)
                continue
            band = _band(series, args.x, logx)
            if band is None:
                raise res.ToolError(f"the runs of {label!r} do not overlap in {args.x}; plot without --group-seeds")
            grid, mean, low, high = band
            ax.plot(grid, mean, color=color, label=label)
            ax.fill_between(grid, low, high, color=color, alpha=0.25, linewidth=0)
        if logy and positive:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set_ylabel(name)
        ax.grid(True, which="major", alpha=0.3)
    axes[-1, 0].set_xlabel(AXIS_LABELS.get(args.x, args.x))
    axes[0, 0].legend(fontsize="small")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.output, format=fmt, dpi=150)
    plt.close(fig)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    return res.main_guard(PROG, lambda a: plot(_parser().parse_args(a)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
