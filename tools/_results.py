"""Shared helpers of the post-processing tools: open and validate ddnn files, read histories and configs.

The tools read HDF5 files with h5py only; they never import ddnn, so they run
on a laptop that has the results but not the training stack. A run is named
on the command line by its output directory (``results.h5`` is read, or
``checkpoint.h5`` when the run has not written results yet) or by the path of
either file. Files written by ddnn carry the attribute ``format``
(``ddnn-results`` or ``ddnn-checkpoint``); see ``ddnn/io/files.py`` for the
layout.

Every problem a user can cause (a missing file, a file that is not ours, a
column the run does not have) raises :class:`ToolError`; :func:`main_guard`
turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import h5py
import numpy as np

__all__ = [
    "ToolError",
    "argument_parser",
    "main_guard",
    "RunData",
    "SOLUTION_GROUP",
    "decode",
    "open_ddnn",
    "resolve_run",
    "load_run",
    "load_runs",
    "flatten_config",
    "labels",
    "group_runs",
    "group_seeds",
    "metric_names",
    "higher_is_better",
    "column",
    "finite",
    "first_reaching",
    "check_output",
    "pyplot",
    "format_table",
    "fmt_number",
]

EXIT_INPUT = 2
RESULTS = "results.h5"
CHECKPOINT = "checkpoint.h5"
FORMATS = {"ddnn-results": "results", "ddnn-checkpoint": "checkpoint"}
SOLUTION_GROUP = "solution"

# Configuration keys that do not change what a run computes: left out of labels and seed groups.
COSMETIC_KEYS = frozenset({"output.dir", "run.print_every", "run.checkpoint_every"})
SEED_KEY = "run.seed"
RANKS_KEY = "ranks"


class ToolError(Exception):
    """A problem with the user's input; reported as one line, exit code 2."""


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser whose errors are one line on stderr and exit code 2."""

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
            raise SystemExit(EXIT_INPUT)

    return _Parser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def main_guard(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a :class:`ToolError` becomes ``PROG: error: MESSAGE`` on stderr and exit code 2."""
    try:
        return main(argv)
    except ToolError as err:
        message = " ".join(str(err).split())  # always one line
        sys.stderr.write(f"{prog}: error: {message}\n")
        return EXIT_INPUT
    except BrokenPipeError:  # e.g. piped into head
        return 0


# ---------------------------------------------------------------------------
# Files


def decode(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes decoded, arrays as lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_ddnn(path: str, kinds: Iterable[str] = ("results", "checkpoint")) -> h5py.File:
    """Open a ddnn file read-only after checking that it exists, is HDF5 and has the right ``format``.

    Parameters
    ----------
    path : the file
    kinds : the accepted kinds, ``"results"`` and/or ``"checkpoint"``

    Returns
    -------
    h5py.File, open for reading (use it as a context manager)
    """
    kinds = tuple(kinds)
    if not os.path.exists(path):
        raise ToolError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        raise ToolError(f"{path}: is a directory, not a file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise ToolError(f"{path}: cannot read: {err}") from None
    if not is_hdf5:
        raise ToolError(f"{path}: not an HDF5 file (expected a ddnn results.h5 or checkpoint.h5)")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ToolError(f"{path}: cannot open: {err}") from None
    fmt = decode(handle.attrs.get("format", ""))
    kind = FORMATS.get(fmt)
    if kind is None or kind not in kinds:
        handle.close()
        wanted = " or ".join(f"ddnn-{k}" for k in kinds)
        found = f"format {fmt!r}" if fmt else "no 'format' attribute"
        raise ToolError(f"{path}: not a ddnn {' or '.join(kinds)} file ({found}, expected {wanted})")
    return handle


def resolve_run(arg: str) -> str:
    """The file to read for a RUN argument: a results/checkpoint file, or a run directory."""
    if os.path.isdir(arg):
        for name in (RESULTS, CHECKPOINT):
            candidate = os.path.join(arg, name)
            if os.path.exists(candidate):
                return candidate
        raise ToolError(f"{arg}: no {RESULTS} or {CHECKPOINT} in this directory")
    if not os.path.exists(arg):
        raise ToolError(f"{arg}: no such file or directory")
    return arg


@dataclass
class RunData:
    """What the tools need from one run: attributes, parsed configuration and history columns."""

    path: str
    kind: str
    attrs: dict[str, Any]
    config: dict[str, Any]
    history: dict[str, np.ndarray]
    has_solution: bool = False
    flat: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run directory's name (the file's name when it is not the usual one)."""
        base = os.path.basename(self.path)
        if base in (RESULTS, CHECKPOINT):
            return os.path.basename(os.path.dirname(os.path.abspath(self.path)))
        return base

    @property
    def solver(self) -> str:
        return str(self.attrs.get("solver") or self.flat.get("solver.name") or "?")

    @property
    def problem(self) -> str:
        return str(self.attrs.get("problem") or self.flat.get("problem.name") or "?")

    @property
    def world_size(self) -> int:
        return int(self.attrs.get("world_size", 1) or 1)

    @property
    def stop_reason(self) -> str:
        return str(self.attrs.get("stop_reason") or "?")

    @property
    def rows(self) -> int:
        return max((len(v) for v in self.history.values()), default=0)


def _read_config(text: str, path: str) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        raise ToolError(f"{path}: the 'config' attribute is not valid YAML") from None
    return config if isinstance(config, dict) else {}


def _read_history(group: h5py.Group | None) -> dict[str, np.ndarray]:
    if group is None:
        return {}
    return {
        name: np.asarray(node[()], dtype=np.float64).reshape(-1)
        for name, node in group.items()
        if isinstance(node, h5py.Dataset)
    }


def load_run(arg: str) -> RunData:
    """Read a run: its attributes, configuration (parsed YAML) and history (``/history`` or ``/state/history``)."""
    path = resolve_run(arg)
    with open_ddnn(path) as f:
        kind = FORMATS[decode(f.attrs["format"])]
        attrs = {key: decode(value) for key, value in f.attrs.items()}
        group = f.get("history") if kind == "results" else f.get("state/history")
        history = _read_history(group)
        has_solution = isinstance(f.get(SOLUTION_GROUP), h5py.Group)
    config = _read_config(str(attrs.get("config", "")), path)
    return RunData(path, kind, attrs, config, history, has_solution, flatten_config(config))


def load_runs(args: Sequence[str]) -> list[RunData]:
    """:func:`load_run` for every argument; at least one is required."""
    if not args:
        raise ToolError("no run given")
    return [load_run(a) for a in args]


# ---------------------------------------------------------------------------
# Configurations and labels


def flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"solver": {"lr": 0.1}}`` -> ``{"solver.lr": 0.1}`` (lists become tuples)."""
    flat: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                flat.update(flatten_config(value, name))
            else:
                flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def _identity(run: RunData, ignore: Iterable[str]) -> dict[str, Any]:
    ignored = set(COSMETIC_KEYS) | set(ignore)
    keys = {k: v for k, v in run.flat.items() if k not in ignored}
    if RANKS_KEY not in ignored:
        keys[RANKS_KEY] = run.world_size
    return keys


_MISSING = object()


def _differing(flats: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    out = []
    for key in keys:
        values = {repr(flat.get(key, _MISSING)) for flat in flats}
        if len(values) > 1:
            out.append(key)
    return out


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def labels(runs: Sequence[RunData], ignore: Iterable[str] = ()) -> list[str]:
    """Legend labels: the solver's name and the options that differ between the runs.

    Solver options are compared among runs of the same solver only (the
    options of different solvers differ anyway); every other option is
    compared across all runs. ``ranks`` (the world size) counts as an option.
    Identical labels get the run's directory name appended.
    """
    ignore = set(ignore) | {"solver.name"}
    flats = [_identity(r, ignore) for r in runs]
    general = [k for k in _differing(flats) if not k.startswith("solver.")]
    by_solver: dict[str, list[str]] = {}
    for solver in {r.solver for r in runs}:
        members = [f for f, r in zip(flats, runs) if r.solver == solver]
        by_solver[solver] = [k for k in _differing(members) if k.startswith("solver.")]
    shown_keys = general + [k for keys in by_solver.values() for k in keys]

    def short(key: str) -> str:
        if key.startswith("solver."):
            return key[len("solver.") :]
        last = key.rsplit(".", 1)[-1]
        clashes = [k for k in shown_keys if k.rsplit(".", 1)[-1] == last]
        return last if len(clashes) == 1 else key

    out = []
    for run, flat in zip(runs, flats):
        parts = [run.solver]
        for key in by_solver[run.solver] + general:
            if key in flat:
                parts.append(f"{short(key)}={_show(flat[key])}")
        out.append(" ".join(parts))
    counts = {label: out.count(label) for label in out}
    return [f"{label} ({run.name})" if counts[label] > 1 else label for label, run in zip(out, runs)]


def group_runs(runs: Sequence[RunData], ignore: Iterable[str]) -> list[list[int]]:
    """Indices of runs whose configurations agree on every option but those in ``ignore``, in input order.

    ``ranks`` (the world size) counts as an option unless ignored.
    """
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        key = repr(sorted(_identity(run, ignore).items(), key=lambda kv: kv[0]))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def group_seeds(runs: Sequence[RunData]) -> list[list[int]]:
    """Indices of runs whose configurations (and world sizes) differ only in ``run.seed``, in input order."""
    return group_runs(runs, {SEED_KEY})


# ---------------------------------------------------------------------------
# History columns

# Columns the driver records that are not quality metrics of the trained network.
_NOT_METRICS = frozenset(
    {"iteration", "loss", "grad_evals", "wall_time", "grad_norm", "step_norm", "step_size", "radius", "accepted"}
)
_METRIC_PATTERN = re.compile(r"(error|accuracy|acc)$|^(error|accuracy|acc)_")


def metric_names(run: RunData) -> list[str]:
    """History columns that are metrics: the file's ``metrics`` attribute, else names ending in error/accuracy."""
    declared = run.attrs.get("metrics")
    if declared:
        names = [declared] if isinstance(declared, str) else list(declared)
        return [n for n in names if n in run.history]
    return [
        name
        for name in run.history
        if name not in _NOT_METRICS and not name.startswith(("loss_", "time_")) and _METRIC_PATTERN.search(name)
    ]


def higher_is_better(run: RunData, metric: str) -> bool:
    """Whether ``metric`` improves upwards: the file's ``higher_is_better`` attribute, else an accuracy name."""
    declared = run.attrs.get("higher_is_better")
    if declared is not None and declared != "":
        names = [declared] if isinstance(declared, str) else list(declared)
        return metric in names
    return "acc" in metric


def column(run: RunData, name: str) -> np.ndarray:
    """A history column; :class:`ToolError` listing the available ones when the run does not have it."""
    if name not in run.history:
        available = ", ".join(run.history) or "none: the history is empty"
        raise ToolError(f"{run.path}: no history column {name!r} (available: {available})")
    return run.history[name]


def finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows where both ``x`` and ``y`` are finite (metrics are NaN where not evaluated)."""
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def first_reaching(values: np.ndarray, target: float, higher: bool) -> int | None:
    """Index of the first row whose value reaches ``target`` (``>=`` if ``higher`` else ``<=``), or ``None``."""
    with np.errstate(invalid="ignore"):
        hit = values >= target if higher else values <= target
    hit &= np.isfinite(values)
    indices = np.flatnonzero(hit)
    return int(indices[0]) if indices.size else None


# ---------------------------------------------------------------------------
# Output


def check_output(path: str) -> str:
    """The figure format from the extension of ``path`` (png or pdf); the directory must exist."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("png", "pdf"):
        raise ToolError(f"{path}: the output must end in .png or .pdf")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ToolError(f"{path}: directory {directory} does not exist")
    return ext


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (clear error when matplotlib is missing)."""
    try:
        import matplotlib
    except ImportError:
        raise ToolError("matplotlib is required for figures: pip install 'ddnn[tools]' (or matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def fmt_number(value: Any, exact: bool = False) -> str:
    """A table cell: integers as integers, floats with 4 significant digits (``exact``: round-trip repr)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan" if exact else "-"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value) if exact else f"{value:.4g}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Render rows as ``text`` (aligned columns), ``markdown`` or ``csv`` (numbers in full precision)."""
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([fmt_number(v, exact=True) if v is not None else "" for v in row])
        return buffer.getvalue().rstrip("\n")
    cells = [[fmt_number(v) for v in row] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in cells])
