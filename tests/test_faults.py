"""Output trouble and numerical failure in real, tiny runs: one clear line and exit code 2, or a clean stop.

Every scenario is a fresh ``python -m ddnn`` (or ``mpiexec -n 2``); they run two at a time in one fixture.
``DDNN_FAIL_WRITE=n`` (see :mod:`ddnn.io.files`) makes the n-th file write of rank 0 fail as a full disk.
"""

from __future__ import annotations

import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import torch

from ddnn.io import read_checkpoint
from tests.helpers import subprocess_env
from tests.test_bad_inputs import WORKERS, run_command

TINY = """\
problem: {name: regression, n_samples: 100, n_test: 8}
model: {name: mlp, width: 4, depth: 1}
solver: {name: adam, lr: 0.01}
run: {max_iter: 4, checkpoint_every: 2, print_every: 0, dtype: float64}
"""


def ddnn(tmp, *args: str, ranks: int = 0, **env: str) -> dict:
    """``python -m ddnn tiny.yaml ARGS`` in ``tmp`` (under ``mpiexec -n ranks`` when ``ranks``)."""
    cmd = [sys.executable, "-m", "ddnn", "tiny.yaml", *args]
    if ranks:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    result = run_command(cmd, tmp, env=subprocess_env(**env), timeout=120)
    result["where"] = f"{result['cmd']}\nstdout: {result['stdout'][-3000:]!r}\nstderr: {result['stderr'][-3000:]!r}"
    assert not result["timed_out"], f"hung: {result['where']}"
    return result


def refused(result: dict, prefix: str, *names: str) -> str:
    """Exit code 2, no traceback, and one line on stderr: ``ddnn: error: PREFIX...`` holding ``names``."""
    where = result["where"]
    assert result["rc"] == 2, where
    assert "Traceback" not in result["stdout"] + result["stderr"], where
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ddnn: error: {prefix}"), where
    for name in names:
        assert name in lines[0], f"{name!r} missing: {where}"
    return lines[0]


def _prepare(tmp) -> str:
    os.makedirs(tmp)
    with open(os.path.join(tmp, "tiny.yaml"), "w") as fh:
        fh.write(TINY)
    return str(tmp)


def out_is_a_file(tmp) -> dict:
    with open(os.path.join(tmp, "file.txt"), "w") as fh:
        fh.write("keep me\n")
    return ddnn(tmp, "--out", "file.txt")


def out_under_a_file(tmp) -> dict:
    with open(os.path.join(tmp, "file.txt"), "w") as fh:
        fh.write("keep me\n")
    return ddnn(tmp, "--out", "file.txt/out")


def disk_full(tmp, ranks: int = 0) -> dict:
    # writes: checkpoint and results at iteration 2, then the checkpoint at iteration 4 fails
    return ddnn(tmp, "--out", "out", ranks=ranks, DDNN_FAIL_WRITE="3")


def bad_thread_variable(tmp, ranks: int = 0) -> dict:
    return ddnn(tmp, "--out", "out", ranks=ranks, OMP_NUM_THREADS="abc")


def resume_from_backup(tmp) -> dict:
    first = ddnn(tmp, "--out", "out")
    assert first["rc"] == 0, first["where"]
    path = os.path.join(tmp, "out", "checkpoint.h5")
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # a checkpoint cut short (a full disk, a crash of the file system)
        fh.truncate(size // 2)
    return ddnn(tmp, "--out", "out", "--resume", "out/checkpoint.h5", "--set", "run.max_iter=6")


def diverging(tmp) -> dict:
    return ddnn(
        tmp,
        "--out",
        "out",
        "--set",
        "solver={name: sgd, lr: 1.0e+30}",
        "--set",
        "run.max_iter=50",
        "--set",
        "run.checkpoint_every=1",
    )


@pytest.fixture(scope="module")
def faults(tmp_path_factory, request):
    """Every selected scenario, two at a time (the mpiexec ones first: they take longest)."""
    root = tmp_path_factory.mktemp("faults")
    wanted = {
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "module", None) is sys.modules[__name__] and item.originalname == "test_fault"
    }
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {}
        for name in sorted(wanted, key=lambda n: n not in MPI):
            scenario, kwargs = SCENARIOS[name]
            futures[name] = pool.submit(scenario, _prepare(root / name), **kwargs)
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
                results[name]["tmp"] = str(root / name)
            except AssertionError as err:  # a failed first step: reported by the scenario's test
                results[name] = err
    return results


def check_out_is_a_file(result: dict) -> None:
    """--out names an existing regular file: refused, and the file is untouched."""
    tmp = result["tmp"]
    refused(result, "file.txt: ", "the output directory is a file")
    assert sorted(os.listdir(tmp)) == ["file.txt", "tiny.yaml"], result["where"]
    with open(os.path.join(tmp, "file.txt")) as fh:
        assert fh.read() == "keep me\n"


def check_out_under_a_file(result: dict) -> None:
    refused(result, "file.txt/out: ", "cannot create the output directory", "Not a directory")
    assert sorted(os.listdir(result["tmp"])) == ["file.txt", "tiny.yaml"], result["where"]


def check_disk_full(result: dict) -> None:
    """The disk fills up while the checkpoint of iteration 4 is written (under mpiexec: every rank stops)."""
    out = os.path.join(result["tmp"], "out")
    refused(result, "out: ", "No space left on device")
    assert glob.glob(os.path.join(out, "*.tmp")) == [], os.listdir(out)
    # the checkpoint of iteration 2 is intact and is the one to resume from
    attrs, state, used = read_checkpoint(os.path.join(out, "checkpoint.h5"))
    assert used == os.path.join(out, "checkpoint.h5")
    assert int(attrs["iteration"]) == 2 and attrs["stop_reason"] == "RUNNING"
    assert torch.isfinite(torch.as_tensor(state["params"])).all()
    assert sorted(os.listdir(out)) == ["checkpoint.h5", "results.h5"]


def check_bad_thread_variable(result: dict) -> None:
    """OMP_NUM_THREADS=abc: one line (also the OpenMP runtime of every rank stays quiet), nothing written."""
    refused(result, "OMP_NUM_THREADS: ", "'abc'")
    assert sorted(os.listdir(result["tmp"])) == ["tiny.yaml"]


def check_resume_from_backup(result: dict) -> None:
    """A truncated checkpoint.h5 next to a good .bak: one warning, the run continues from the .bak."""
    assert result["rc"] == 0, result["where"]
    lines = result["stderr"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddnn: warning: out/checkpoint.h5"), result["where"]
    assert "checkpoint.h5.bak" in lines[0], result["where"]
    assert "resumed at iteration 2" in result["stdout"], result["where"]
    with h5py.File(os.path.join(result["tmp"], "out", "results.h5"), "r") as f:
        assert f.attrs["stop_reason"] == "MAX_ITER" and int(f.attrs["iteration"]) == 6
        assert f["history/iteration"][:].tolist() == [1, 2, 3, 4, 5, 6]


def check_diverging(result: dict) -> None:
    """SGD with a step of 1e30 overflows: DIVERGED_NAN, and no checkpoint holds a non-finite parameter."""
    assert result["rc"] == 0 and "Traceback" not in result["stderr"], result["where"]
    out = os.path.join(result["tmp"], "out")
    with h5py.File(os.path.join(out, "results.h5"), "r") as f:
        assert f.attrs["stop_reason"] == "DIVERGED_NAN", result["where"]
        assert int(f.attrs["stop_code"]) < 0
        last = int(f.attrs["iteration"])
        assert not np.isfinite(f["history/loss"][-1])
    # checkpoints were written from iteration 1 on
    for path in (os.path.join(out, "checkpoint.h5"), os.path.join(out, "checkpoint.h5.bak")):
        with h5py.File(path, "r") as f:
            assert 1 <= int(f.attrs["iteration"]) <= last
            assert np.isfinite(f["state/params"][:]).all(), path


SCENARIOS = {
    "out_is_a_file": (out_is_a_file, {}),
    "out_under_a_file": (out_under_a_file, {}),
    "disk_full": (disk_full, {}),
    "disk_full_mpi": (disk_full, {"ranks": 2}),
    "bad_thread_variable": (bad_thread_variable, {}),
    "bad_thread_variable_mpi": (bad_thread_variable, {"ranks": 2}),
    "resume_from_backup": (resume_from_backup, {}),
    "diverging": (diverging, {}),
}
CHECKS = {name: globals()["check_" + name.removesuffix("_mpi")] for name in SCENARIOS}
MPI = {"disk_full_mpi", "bad_thread_variable_mpi"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.mpi) if n in MPI else n for n in SCENARIOS])
def test_fault(faults, name):
    result = faults[name]
    if isinstance(result, AssertionError):
        raise result
    CHECKS[name](result)
