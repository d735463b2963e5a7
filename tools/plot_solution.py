"""Plot a PINN's solution: prediction, reference and pointwise error, with slices at chosen times.

Examples
--------
::

    python tools/plot_solution.py runs/burgers -o burgers_solution.pdf
    python tools/plot_solution.py runs/burgers --at 0.25 0.5 0.75 -o u.png
    python tools/plot_solution.py runs/diffusion --slice-along x2 --at 0.5 0.9 -o u.png

The tool reads the group ``/solution`` of ``results.h5`` (it does not import
ddnn's problems). The run driver writes it, at the end of the run and with
the final parameters, for problems that provide their solution on an
evaluation grid. Layout::

    /solution                     group
        inputs      (N, d) float64   evaluation points, one row per point, columns in the order of input_names
        prediction  (N,)   float64   the network's output at the points
        reference   (N,)   float64   the reference solution at the points (optional: absent without one)
        attrs
          input_names   d strings, e.g. ["x", "t"] or ["x1", "x2"]
          grid_shape    d integers with product N when the points form a tensor-product grid:
                        rows in C order of numpy.meshgrid(axis_0, ..., axis_{d-1}, indexing="ij"),
                        i.e. inputs.reshape(*grid_shape, d)[i, j] == (axis_0[i], axis_1[j]);
                        absent or empty for scattered points
          output_name   optional string, default "u"

For d = 2 the figure shows heat maps of the prediction, the reference and
the pointwise error |prediction - reference| with the time (an input named
``t``, else the first input) on the horizontal axis, and below them the
prediction (dashed) and reference (solid) along the other variable at the
values ``--at`` of ``--slice-along`` (default: ``t``, else the last input;
default values: a quarter, a half and three quarters of its range; the
nearest grid line is used). Scattered points get heat maps (triangulated)
but no slices. For d = 1 the curves and the error are drawn.
"""

from __future__ import annotations

import _results as res
import h5py
import numpy as np

PROG = "plot_solution.py"


def _parser():
    p = res.argument_parser(PROG, "Plot the predicted and reference solution of a PINN run.")
    p.add_argument("run", metavar="RUN", help="run directory or results.h5")
    p.add_argument(
        "--at",
        nargs="+",
        type=float,
        metavar="VALUE",
        help="up to 3 slice positions (default: 1/4, 1/2, 3/4 of its range)",
    )
    p.add_argument("--slice-along", metavar="NAME", help="input whose values --at are (default: t, else the last)")
    p.add_argument("--cmap", default="viridis", help="colour map of the solution heat maps")
    p.add_argument("-o", "--output", default="solution.png", help="figure file (.png or .pdf)")
    return p


class Solution:
    """The ``/solution`` group of a results file, checked."""

    def __init__(self, path: str):
        with res.open_ddnn(path, kinds=("results",)) as f:
            group = f.get(res.SOLUTION_GROUP)
            if not isinstance(group, h5py.Group):
                raise res.ToolError(
                    f"{path}: this run has no /{res.SOLUTION_GROUP} group (its problem does not write its solution)"
                )
            for name in ("inputs", "prediction"):
                if not isinstance(group.get(name), h5py.Dataset):
                    raise res.ToolError(f"{path}: /{res.SOLUTION_GROUP} has no dataset {name!r}")
            self.inputs = np.asarray(group["inputs"][()], dtype=np.float64)
            self.prediction = np.asarray(group["prediction"][()], dtype=np.float64).reshape(-1)
            ref = group.get("reference")
            self.reference = None if ref is None else np.asarray(ref[()], dtype=np.float64).reshape(-1)
            attrs = {k: res.decode(v) for k, v in group.attrs.items()}
        if self.inputs.ndim == 1:
            self.inputs = self.inputs[:, None]
        n, d = self.inputs.shape
        names = attrs.get("input_names") or [f"x{i + 1}" for i in range(d)]
        self.input_names = [names] if isinstance(names, str) else [str(v) for v in names]
        self.output_name = str(attrs.get("output_name") or "u")
        shape = attrs.get("grid_shape")
        self.grid_shape = [int(v) for v in np.atleast_1d(shape)] if shape is not None and np.size(shape) else None
        problems = []
        if len(self.input_names) != d:
            problems.append(f"{len(self.input_names)} input_names for {d} input columns")
        if self.prediction.size != n:
            problems.append(f"prediction has {self.prediction.size} values for {n} points")
        if self.reference is not None and self.reference.size != n:
            problems.append(f"reference has {self.reference.size} values for {n} points")
        if self.grid_shape is not None and (len(self.grid_shape) != d or int(np.prod(self.grid_shape)) != n):
            problems.append(f"grid_shape {self.grid_shape} does not match {n} points in {d} dimensions")
        if d not in (1, 2):
            problems.append(f"{d} input dimensions (this tool draws 1 or 2)")
        if problems:
            raise res.ToolError(f"{path}: inconsistent /{res.SOLUTION_GROUP}: " + "; ".join(problems))

    @property
    def error(self) -> np.ndarray | None:
        return None if self.reference is None else np.abs(self.prediction - self.reference)

    def relative_l2(self) -> float | None:
        if self.reference is None:
            return None
        norm = float(np.linalg.norm(self.reference))
        return float(np.linalg.norm(self.prediction - self.reference)) / norm if norm > 0 else None


def _plot_1d(plt, sol: Solution):
    order = np.argsort(sol.inputs[:, 0])
    x = sol.inputs[order, 0]
    fig, axes = plt.subplots(1, 2 if sol.reference is not None else 1, figsize=(10, 3.8), squeeze=False)
    ax = axes[0, 0]
    if sol.reference is not None:
        ax.plot(x, sol.reference[order], "k-", label="reference")
    ax.plot(x, sol.prediction[order], "r--", label="prediction")
    ax.set_xlabel(sol.input_names[0])
    ax.set_ylabel(sol.output_name)
    ax.legend(fontsize="small")
    if sol.reference is not None:
        axes[0, 1].semilogy(x, np.maximum(sol.error[order], np.finfo(float).tiny), "b-")
        axes[0, 1].set_xlabel(sol.input_names[0])
        axes[0, 1].set_ylabel("pointwise error")
    return fig


def _slice_axis(sol: Solution, name: str | None) -> int:
    if name is None:
        return sol.input_names.index("t") if "t" in sol.input_names else len(sol.input_names) - 1
    if name not in sol.input_names:
        raise res.ToolError(f"--slice-along {name}: no such input (inputs: {', '.join(sol.input_names)})")
    return sol.input_names.index(name)


def _plot_2d(plt, sol: Solution, args):
    horizontal = sol.input_names.index("t") if "t" in sol.input_names else 0
    vertical = 1 - horizontal
    maps = [("prediction", sol.prediction)]
    if sol.reference is not None:
        maps += [("reference", sol.reference), ("|prediction - reference|", sol.error)]
    slice_axis = _slice_axis(sol, args.slice_along)
    gridded = sol.grid_shape is not None
    rows = 2 if gridded else 1
    fig, axes = plt.subplots(rows, 3, figsize=(14, 4.2 * rows), squeeze=False)
    shown = sol.prediction if sol.reference is None else np.concatenate([sol.prediction, sol.reference])
    low, high = float(np.nanmin(shown)), float(np.nanmax(shown))  # one colour scale for both solutions

    positions: list[float] = []
    if gridded:
        points = sol.inputs.reshape(*sol.grid_shape, 2)
        axis_values = [points[:, 0, 0], points[0, :, 1]]
        values = axis_values[slice_axis]
        lo, hi = float(values.min()), float(values.max())
        wanted = args.at if args.at else [lo + f * (hi - lo) for f in (0.25, 0.5, 0.75)]
        indices = [int(np.argmin(np.abs(values - w))) for w in wanted]
        positions = [float(values[i]) for i in indices]
    elif args.at:
        raise res.ToolError("--at needs points on a grid (this /solution has no grid_shape)")

    for k, (title, data) in enumerate(maps):
        ax = axes[0, k]
        is_error = title.startswith("|")
        color = {"cmap": "magma"} if is_error else {"cmap": args.cmap, "vmin": low, "vmax": high}
        if gridded:
            h = points[..., horizontal]
            v = points[..., vertical]
            mesh = ax.pcolormesh(h, v, data.reshape(sol.grid_shape), shading="auto", **color)
        else:
            mesh = ax.tripcolor(sol.inputs[:, horizontal], sol.inputs[:, vertical], data, shading="gouraud", **color)
        fig.colorbar(mesh, ax=ax)
        for position in positions:
            draw = ax.axvline if slice_axis == horizontal else ax.axhline
            draw(position, color="w", linestyle="--", linewidth=0.8)
        ax.set_title(f"{title}" if is_error else f"{sol.output_name}: {title}")
        ax.set_xlabel(sol.input_names[horizontal])
        ax.set_ylabel(sol.input_names[vertical])
    for k in range(len(maps), 3):
        axes[0, k].set_visible(False)

    if gridded:
        other = 1 - slice_axis
        axes[1, 0].set_ylabel(sol.output_name)
        for k in range(3):
            axes[1, k].set_visible(k < len(positions))
        for k, (index, position) in enumerate(zip(indices[:3], positions[:3])):
            ax = axes[1, k]
            take = (slice(None), index) if slice_axis == 1 else (index, slice(None))
            x = points[take][:, other]
            if sol.reference is not None:
                ax.plot(x, sol.reference.reshape(sol.grid_shape)[take], "k-", label="reference")
            ax.plot(x, sol.prediction.reshape(sol.grid_shape)[take], "r--", label="prediction")
            ax.set_title(f"{sol.input_names[slice_axis]} = {position:.3g}")
            ax.set_xlabel(sol.input_names[other])
            ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
            ax.grid(True, alpha=0.3)
        if positions:
            axes[1, 0].legend(fontsize="small")
    return fig


def plot(args) -> int:
    fmt = res.check_output(args.output)
    path = res.resolve_run(args.run)
    sol = Solution(path)
    if args.at and len(args.at) > 3:
        raise res.ToolError("--at: at most 3 slice positions")
    plt = res.pyplot()
    fig = _plot_1d(plt, sol) if sol.inputs.shape[1] == 1 else _plot_2d(plt, sol, args)
    error = sol.relative_l2()
    if error is not None:
        fig.suptitle(f"relative L2 error {error:.3e}")
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
