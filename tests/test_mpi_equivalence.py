"""Parallel equals serial under mpiexec: data-parallel L-BFGS on PINNs, ASPQN/MSPQN; impossible rank counts."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from tests.helpers import REPO, subprocess_env

LOCAL = {"name": "lbfgs", "memory": 3, "line_search": "strong_wolfe"}


def _input(tmp_path, variant: str, subdomains: int, name: str) -> str:
    raw = {
        "problem": {"name": "regression", "n_samples": 240, "n_test": 8},
        "model": {"name": "mlp", "width": 6, "depth": 3},  # 4 layers
        "solver": {
            "name": "lbfgs",
            "memory": 3,
            "npc": {
                "name": "schwarz",
                "variant": variant,
                "subdomains": subdomains,
                "local_iters": 3,
                "local": LOCAL,
                "line_search": "armijo",
            },
        },
        "run": {"max_iter": 4, "dtype": "float64", "device": "cpu", "print_every": 0, "checkpoint_every": 0},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _run(path: str, out: str, ranks: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ddnn", path, "--out", out, "--quiet"]
    if ranks > 1:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120, cwd=REPO)


def _params_and_history(out: str):
    with h5py.File(os.path.join(out, "results.h5")) as f:
        return f["params"][()], {k: f["history"][k][()] for k in ("loss", "effective_grad_evals", "grad_evals")}


@pytest.mark.mpi
@pytest.mark.parametrize(
    "variant,subdomains,ranks", [("additive", 4, 2), ("additive", 4, 4), ("additive", 2, 4), ("multiplicative", 4, 2)]
)
def test_parallel_iterates_equal_serial(tmp_path, variant, subdomains, ranks):
    path = _input(tmp_path, variant, subdomains, "in")
    serial = _run(path, str(tmp_path / "serial"), 1)
    assert serial.returncode == 0, serial.stderr
    parallel = _run(path, str(tmp_path / "parallel"), ranks)
    assert parallel.returncode == 0, parallel.stderr
    p1, h1 = _params_and_history(str(tmp_path / "serial"))
    pn, hn = _params_and_history(str(tmp_path / "parallel"))
    # only the order of the data-parallel sums differs: round-off
    np.testing.assert_allclose(pn, p1, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(hn["loss"], h1["loss"], rtol=1e-9)
    # the cost measures do not depend on the number of ranks
    np.testing.assert_array_equal(hn["effective_grad_evals"], h1["effective_grad_evals"])
    np.testing.assert_array_equal(hn["grad_evals"], h1["grad_evals"])
    assert h1["loss"][-1] < h1["loss"][0]


@pytest.mark.mpi
def test_blocks_that_cannot_be_shared_evenly_are_an_input_error(tmp_path):
    path = _input(tmp_path, "additive", 2, "bad")
    proc = _run(path, str(tmp_path / "out"), 3)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "solver.npc.subdomains" in lines[0] and "bad.yaml" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.mpi
@pytest.mark.parametrize("problem", ["burgers", "klein_gordon", "diffusion_transport"])
def test_data_parallel_lbfgs_on_pinns_matches_serial(tmp_path, problem):
    """L-BFGS on a PINN, data parallel over the points: 1 and 4 ranks take the same steps."""
    raw = {
        "problem": {"name": problem, "n_interior": 300, "n_boundary": 40},
        "model": {"name": "mlp", "width": 8, "depth": 2},
        "solver": {"name": "lbfgs", "memory": 3},
        "run": {"max_iter": 5, "dtype": "float64", "device": "cpu", "print_every": 0, "checkpoint_every": 0},
    }
    path = tmp_path / "pinn.yaml"
    path.write_text(yaml.safe_dump(raw))
    serial = _run(str(path), str(tmp_path / "serial"), 1)
    assert serial.returncode == 0, serial.stderr
    parallel = _run(str(path), str(tmp_path / "parallel"), 4)
    assert parallel.returncode == 0, parallel.stderr
    p1, h1 = _params_and_history(str(tmp_path / "serial"))
    p4, h4 = _params_and_history(str(tmp_path / "parallel"))
    np.testing.assert_allclose(p4, p1, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(h4["loss"], h1["loss"], rtol=1e-9)
    np.testing.assert_array_equal(h4["grad_evals"], h1["grad_evals"])
    assert h1["loss"][-1] < h1["loss"][0]


@pytest.mark.mpi
@pytest.mark.parametrize("decomposition", ["samples", "layers"])
def test_apts_takes_the_same_steps_on_1_2_and_4_ranks(tmp_path, decomposition):
    """APTS with 4 subdomains: chunks (or blocks) solved 4, 2 or 1 per rank give the same global steps."""
    norm = "inf" if decomposition == "layers" else 2
    raw = {
        "problem": {"name": "classification", "dataset": "blobs", "n_train": 160, "n_test": 40},
        "model": {"name": "mlp", "width": 6, "depth": 3},  # 4 layers
        "solver": {
            "name": "trust_region",
            "norm": norm,
            "global_steps": 1,
            "npc": {
                "name": "schwarz",
                "decomposition": decomposition,
                "subdomains": 4,
                "local_iters": 2,
                "local": {"name": "trust_region", "norm": norm},
            },
        },
        "run": {"max_iter": 4, "dtype": "float64", "device": "cpu", "print_every": 0, "checkpoint_every": 0},
    }
    path = tmp_path / "apts.yaml"
    path.write_text(yaml.safe_dump(raw))
    results = {}
    for ranks in (1, 2, 4):
        proc = _run(str(path), str(tmp_path / f"np{ranks}"), ranks)
        assert proc.returncode == 0, proc.stderr
        results[ranks] = _params_and_history(str(tmp_path / f"np{ranks}"))
    p1, h1 = results[1]
    for ranks in (2, 4):
        pn, hn = results[ranks]
        np.testing.assert_allclose(pn, p1, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(hn["loss"], h1["loss"], rtol=1e-9)
        np.testing.assert_array_equal(hn["effective_grad_evals"], h1["effective_grad_evals"])
    assert h1["loss"][-1] < h1["loss"][0]
