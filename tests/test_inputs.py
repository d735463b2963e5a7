"""Every shipped input validates, and every one whose data is here runs an iteration."""

from __future__ import annotations

import glob
import os

import pytest

from ddnn import config as cfg
from ddnn.parallel import SerialComm
from ddnn.run import Run
from tests.helpers import REPO

INPUTS = sorted(glob.glob(os.path.join(REPO, "inputs", "*.yaml")))
FILES = {
    "mnist": ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    "cifar10": [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"],
}


def _dataset(path: str) -> str | None:
    """The data set whose files an input reads (``None``: data that is here)."""
    problem = cfg.read_yaml(path)["problem"]
    return next((name for name in FILES if problem.get("dataset") == name), None)


def test_there_are_inputs_for_every_family():
    stems = {os.path.splitext(os.path.basename(p))[0].split("_")[0] for p in INPUTS}
    assert {"quickstart", "burgers", "kg", "dt", "mnist", "cifar10", "digits", "logreg", "resnet"} <= stems


def _libsvm_override(path: str, tmp_path) -> list[str]:
    """For an input reading a LIBSVM file: a small file of the same feature count in its place."""
    problem = cfg.read_yaml(path)["problem"]
    if problem.get("dataset") != "libsvm":
        return []
    d = problem["n_features"]
    lines = [f"{1 if i % 2 else -1} 1:{0.1 * i:.2f} {d}:{-0.05 * i:.2f}" for i in range(1, 9)]
    data = tmp_path / "data.libsvm"
    data.write_text("\n".join(lines) + "\n")
    return [f"problem.path={data}"]


@pytest.mark.parametrize("path", INPUTS, ids=os.path.basename)
def test_input_validates(path, tmp_path):
    overrides = _libsvm_override(path, tmp_path)
    dataset = _dataset(path)
    if dataset is not None:  # validation checks that the data files are there (not their contents)
        for name in FILES[dataset]:
            (tmp_path / name).write_bytes(b"")
        overrides.append(f"problem.data_dir={tmp_path}")
    config = cfg.load_local(path, overrides, world_size=2)
    assert config.run.dtype in ("float32", "float64")


RUNNABLE = [p for p in INPUTS if _dataset(p) is None]


@pytest.mark.parametrize("path", RUNNABLE, ids=os.path.basename)
def test_input_runs_an_iteration(path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # L* of logistic problems: a fresh cache
    overrides = ["run.max_iter=1", "run.checkpoint_every=0", "run.print_every=0", *_libsvm_override(path, tmp_path)]
    problem = cfg.read_yaml(path)["problem"]["name"]
    if problem in ("burgers", "klein_gordon", "diffusion_transport"):  # PINNs: fewer points, same everything else
        overrides += ["problem.n_interior=200", "problem.n_boundary=40"]
    if "npc" in (cfg.read_yaml(path)["solver"] or {}):  # one local step per subdomain is enough to run
        overrides += ["solver.npc.local_iters=1"]
    elif problem == "classification" and cfg.read_yaml(path)["problem"].get("dataset") == "peaks":
        overrides += ["problem.n_train=300"]
    config = cfg.load_local(path, overrides)
    result = Run(config, SerialComm(), None, quiet=True).execute()
    assert result.iterations == 1 and result.loss == result.loss  # finite (not NaN)
