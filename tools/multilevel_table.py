"""The seed's multilevel table: iterations, gradient, Hessian and CG cost of TR, ASTROM and SSN runs.

Examples
--------
::

    python tools/multilevel_table.py runs/logreg_gisette_*
    python tools/multilevel_table.py runs/logreg_gisette_* --format markdown

One column per run, in the seed's layout (methods as columns, cost measures
as rows). Gradient and Hessian costs are in units of the full data set, as
in the seed: a gradient on a 10 % sample counts 0.1 (``grad_work``), so does
a Hessian formed on it (``hessian_work``). CG iterations are given both as a
count (``cg_iterations``) and weighted by the sample they ran on
(``cg_work``): the seed's table mixes the two conventions.
Methods are named from the configuration: ``TR``, ``ASTROM p%``, ``SSN p%``,
``SVRG``, ``SARAH``, ``MLVRk`` (k levels); ``--label`` names them yourself.
A run that did not reach its target (``stop_reason`` other than
TARGET_METRIC/TARGET_LOSS/GRAD_TOL) is marked with ``*``.
"""

from __future__ import annotations

import _results as res

PROG = "multilevel_table.py"
ROWS = (
    ("iterations", None),
    ("∇L evals", "grad_work"),
    ("∇²L evals", "hessian_work"),
    ("CG iterations", "cg_iterations"),
    ("CG work", "cg_work"),
)
CONVERGED = {"TARGET_METRIC", "TARGET_LOSS", "GRAD_TOL"}


def method(run: res.RunData) -> str:
    """The seed's name of a run's method, from its configuration."""
    solver = run.config.get("solver", {}) or {}
    if solver.get("name") != "multilevel":
        return "TR" if solver.get("name") == "trust_region" else str(solver.get("name", "?"))
    levels = solver.get("levels") or []
    coarse = levels[-1] if levels else {}
    percent = f"{100 * float(coarse.get('fraction', 0)):g}%"
    control = solver.get("control", "none")
    smoother = (coarse.get("solver") or {}).get("name")
    if control == "trust_region":
        return f"ASTROM {percent}"
    if smoother == "newton" and len(levels) == 1:
        return f"SSN {percent}"
    if len(levels) == 1 and coarse.get("resample") == "step" and smoother == "sgd":
        return "SARAH" if coarse.get("anchor") == "step" else "SVRG"
    return f"MLVR{len(levels) + 1}"


def main(argv: list[str] | None = None) -> int:
    p = res.argument_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories or files")
    p.add_argument("--label", action="append", default=[], help="column names, in the order of the runs")
    p.add_argument("--format", choices=["text", "markdown", "csv"], default="text")
    args = p.parse_args(argv)
    runs = res.load_runs(args.runs)
    if args.label and len(args.label) != len(runs):
        raise res.ToolError(f"{len(args.label)} labels for {len(runs)} runs")
    names = args.label or [method(r) for r in runs]
    names = [n if r.stop_reason in CONVERGED else f"{n}*" for n, r in zip(names, runs)]
    rows = []
    for title, column in ROWS:
        values = []
        for run in runs:
            if column is None:
                values.append(run.rows)
            else:
                values.append(float(res.column(run, column)[-1]) if column in run.history else 0.0)
        rows.append([title, *values])
    print(res.format_table(["method", *names], rows, args.format))
    return 0


if __name__ == "__main__":
    raise SystemExit(res.main_guard(PROG, main))
