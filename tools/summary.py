"""Readable summary of a ddnn results or checkpoint file.

Examples
--------
::

    python tools/summary.py runs/burgers/results.h5
    python tools/summary.py runs/burgers/checkpoint.h5 --depth 4
    python tools/summary.py runs/burgers                # the directory: its results.h5

Prints the run (problem, solver, ranks, device, versions, times), why it
stopped (``RUNNING`` means an interrupted run that can be resumed with
``--resume``), the number of iterations, the final loss and metrics, every
history column with its last, smallest and largest value, the configuration,
and the groups and datasets of the file with their shapes and sizes.
"""

from __future__ import annotations

import os

import _results as res
import h5py
import numpy as np

PROG = "summary.py"
RUN_ATTRS = ("problem", "solver", "world_size", "device", "host", "input", "started", "finished")


def _parser():
    p = res.argument_parser(PROG, "Summarise a ddnn results.h5 or checkpoint.h5.")
    p.add_argument("file", metavar="FILE", help="results.h5, checkpoint.h5 or a run directory")
    p.add_argument("--depth", type=int, default=2, help="levels of groups listed under contents")
    p.add_argument("--no-config", action="store_true", help="leave out the configuration")
    return p


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def _stored(node: h5py.Group | h5py.Dataset) -> tuple[int, int]:
    """Bytes and number of datasets below ``node``."""
    if isinstance(node, h5py.Dataset):
        return int(node.size * node.dtype.itemsize), 1
    total, count = 0, 0
    for child in node.values():
        nbytes, n = _stored(child)
        total += nbytes
        count += n
    return total, count


def _contents(group: h5py.Group, depth: int, indent: str = "  ") -> list[str]:
    lines = []
    for node in group.values():
        if isinstance(node, h5py.Dataset):
            shape = "x".join(str(s) for s in node.shape) or "scalar"
            nbytes = node.size * node.dtype.itemsize
            lines.append(f"{indent}{node.name}  dataset {shape} {node.dtype}, {_size(nbytes)}")
            continue
        nbytes, count = _stored(node)
        lines.append(f"{indent}{node.name}/  group, {count} dataset(s), {_size(nbytes)}")
        if depth > 1:
            lines += _contents(node, depth - 1, indent + "  ")
    return lines


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4e}"


def _history(run: res.RunData) -> list[str]:
    if not run.history:
        return ["history: none recorded"]
    lines = [f"history: {run.rows} rows, {len(run.history)} columns"]
    width = max(len(n) for n in run.history)
    lines.append(f"  {'column'.ljust(width)}  {'last':>11}  {'min':>11}  {'max':>11}  evaluated")
    for name, values in run.history.items():
        ok = values[np.isfinite(values)]
        last, low, high = (ok[-1], ok.min(), ok.max()) if ok.size else (np.nan, np.nan, np.nan)
        lines.append(
            f"  {name.ljust(width)}  {_fmt(last):>11}  {_fmt(low):>11}  {_fmt(high):>11}  {ok.size}/{values.size}"
        )
    return lines


def summary(args) -> str:
    path = res.resolve_run(args.file)
    run = res.load_run(path)
    a = run.attrs
    lines = [f"{path}: ddnn {run.kind} file, {_size(os.path.getsize(path))}"]
    lines.append(
        f"run: problem {run.problem}, solver {run.solver}, {run.world_size} rank(s) on {a.get('device', '?')}"
        f", host {a.get('host', '?')}"
    )
    lines.append(f"versions: ddnn {a.get('ddnn_version', '?')}, torch {a.get('torch_version', '?')}")
    lines.append(
        f"input: {a.get('input', '?')}; started {a.get('started') or '?'}, finished {a.get('finished') or '-'}"
    )
    iterations = a.get("iteration")
    if iterations is None and "iteration" in run.history and run.rows:
        iterations = int(np.nanmax(run.history["iteration"]))
    reason = run.stop_reason
    note = " (interrupted or still running: continue with --resume CHECKPOINT)" if reason == "RUNNING" else ""
    code = f", code {a['stop_code']}" if "stop_code" in a else ""
    lines.append(f"stop: {reason}{code}{note}; {iterations if iterations is not None else '?'} iterations")
    final = []
    for name in ["loss", *res.metric_names(run), "grad_evals", "effective_grad_evals", "wall_time"]:
        if name in run.history:
            ok = run.history[name][np.isfinite(run.history[name])]
            if ok.size:
                final.append(f"{name} {_fmt(ok[-1])}")
    if final:
        lines.append("final: " + ", ".join(final))
    lines += _history(run)
    if not args.no_config:
        lines.append("config:")
        text = str(a.get("config", "")).rstrip()
        lines += [f"  {line}" for line in text.splitlines()] if text else ["  (none)"]
    other = sorted(set(a) - set(RUN_ATTRS) - {"config", "format", "ddnn_version", "torch_version"})
    other = [k for k in other if k not in ("stop_reason", "stop_code", "iteration")]
    if other:
        lines.append("other attributes: " + ", ".join(f"{k}={a[k]}" for k in other))
    lines.append("contents:")
    with res.open_ddnn(path) as f:
        lines += _contents(f, max(args.depth, 1))
    return "\n".join(lines)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    print(summary(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    return res.main_guard(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
