"""Shared by the benchmarks: run ``python -m ddnn`` on an input tree and read its history.

Benchmarks launch real runs (as users do) from a dict of the input's YAML,
on one rank or several, with a given number of threads, and compare the
histories they write.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import yaml

__all__ = ["REPO", "run"]

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(raw: dict, out: str, ranks: int = 1, threads: int | None = None) -> dict[str, np.ndarray]:
    """Write ``raw`` to ``out.yaml``, run it into ``out`` and return its history columns."""
    path = out + ".yaml"
    with open(path, "w") as fh:
        yaml.safe_dump(raw, fh)
    cmd = [sys.executable, "-m", "ddnn", path, "--out", out, "--quiet"]
    if ranks > 1:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "DDNN_"))}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=3 * 3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    with h5py.File(os.path.join(out, "results.h5"), "r") as f:
        return {k: f["history"][k][()] for k in f["history"]}
