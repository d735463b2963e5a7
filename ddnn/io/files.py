"""Results and checkpoint files, written atomically.

Layout of ``results.h5``::

    attrs    config (resolved YAML), ddnn_version, torch_version, world_size,
             device, host, started, finished, stop_reason, stop_code,
             problem, solver, metrics (names), higher_is_better (names),
             format = "ddnn-results"
    /history/<name>   1-D float64: iteration, loss, grad_evals, wall_time,
                      loss terms (loss_<term>), metrics (e.g. rel_l2_error;
                      NaN where not evaluated), counters, timers (time_<phase>)
    /params           the final flat parameter vector
    /solution         for problems with a reference on a grid: inputs (N, d),
                      prediction (N,), reference (N,); attrs input_names,
                      grid_shape (C-order meshgrid, indexing="ij"), output_name

``checkpoint.h5`` carries the same attributes (format = "ddnn-checkpoint",
plus ``iteration``) and the groups ``/state/...`` (parameters, solver state
tree, problem state, counters, timers, RNG states of every rank, history).

A file is written to a temporary name in the same directory, flushed and
fsynced, the previous file is kept as ``NAME.bak`` and the new one renamed
into place, so that a run killed at any moment leaves a readable file. A
write that fails (a full disk) removes its temporary file; for tests,
``DDNN_FAIL_WRITE=n`` makes the n-th write of a process fail that way.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from ddnn.io.h5tree import read_tree, write_tree

__all__ = ["atomic_h5", "write_results", "write_checkpoint", "read_checkpoint", "CHECKPOINT", "RESULTS"]

CHECKPOINT = "checkpoint.h5"
RESULTS = "results.h5"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_writes = 0


def _inject_write_fault(path: str) -> None:
    """Fault-injection hook for tests: ``DDNN_FAIL_WRITE=n`` makes the n-th file write of this process fail.

    The write fails as on a full disk (``ENOSPC``), after part of the temporary file was written.
    """
    global _writes
    if os.environ.get("DDNN_FAIL_WRITE") is None:
        return
    _writes += 1
    if _writes == int(os.environ["DDNN_FAIL_WRITE"]):
        raise OSError(errno.ENOSPC, "No space left on device", path)


def atomic_h5(path: str, fill: Callable[[h5py.File], None], keep_backup: bool = True) -> None:
    """Write an HDF5 file atomically: temp file, fsync, ``.bak`` of the old one, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            fill(f)
            _inject_write_fault(tmp)  # after a partial write, as a disk that fills up
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        # a full or read-only disk: leave no partial file behind (the previous file is untouched)
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if keep_backup and os.path.exists(path):
        os.replace(path, f"{path}.bak")
    os.replace(tmp, path)
    _fsync_dir(directory)


def _set_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        if value is None:
            value = ""
        elif isinstance(value, str):
            value = str(value)  # plain str: h5py refuses numpy and other str subclasses
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = _strings(value)
        f.attrs[key] = value


def _strings(values: Any) -> np.ndarray:
    """A list of str as an HDF5 variable-length string array."""
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def write_results(
    path: str,
    attrs: dict[str, Any],
    history: dict[str, np.ndarray],
    params: np.ndarray,
    solution: dict[str, Any] | None = None,
) -> None:
    """Write ``results.h5`` (see the module docstring for the layout)."""

    def fill(f: h5py.File) -> None:
        _set_attrs(f, {"format": "ddnn-results", **attrs})
        group = f.create_group("history", track_order=True)
        for name, values in history.items():
            group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
        f.create_dataset("params", data=params)
        if solution is not None:
            _write_solution(f.create_group("solution"), solution)

    atomic_h5(path, fill, keep_backup=False)


def _write_solution(group: h5py.Group, solution: dict[str, Any]) -> None:
    for name in ("inputs", "prediction", "reference"):
        if solution.get(name) is not None:
            group.create_dataset(name, data=np.asarray(solution[name], dtype=np.float64))
    group.attrs["input_names"] = _strings(solution.get("input_names", ()))
    if solution.get("grid_shape") is not None:
        group.attrs["grid_shape"] = np.asarray(solution["grid_shape"], dtype=np.int64)
    group.attrs["output_name"] = str(solution.get("output_name", "u"))


def write_checkpoint(path: str, attrs: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``checkpoint.h5``: attributes and the state tree under ``/state``."""

    def fill(f: h5py.File) -> None:
        _set_attrs(f, {"format": "ddnn-checkpoint", **attrs})
        write_tree(f.create_group("state", track_order=True), state)

    atomic_h5(path, fill, keep_backup=True)


def read_checkpoint(path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Attributes, state tree and the file read: ``path``, or its ``.bak`` when ``path`` is unreadable.

    Raises ``OSError``/``ValueError`` when neither is a ddnn checkpoint.
    """
    errors = []
    for candidate in (path, f"{path}.bak"):
        if not os.path.exists(candidate):
            errors.append(f"{candidate}: not found")
            continue
        try:
            with h5py.File(candidate, "r") as f:
                if f.attrs.get("format") != "ddnn-checkpoint":
                    raise ValueError("not a ddnn checkpoint")
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
                return attrs, read_tree(f["state"]), candidate
        except (OSError, ValueError, KeyError) as err:
            errors.append(f"{candidate}: {err}")
    raise ValueError("; ".join(errors))
