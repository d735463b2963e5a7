"""Every solver resumes bit for bit on many ranks: rank-local states, samplers, mini-batches, resampling.

A run of 2K iterations checkpoints at K (kept as ``checkpoint.h5.bak`` once
the final checkpoint is written); resuming from that checkpoint to 2K must
give the same parameters, every history column and every rank's
checkpointed state, bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from ddnn.io import CHECKPOINT, read_checkpoint
from tests.test_run import _assert_tensors_equal, assert_histories_equal, ddnn, results

BURGERS = {"name": "burgers", "n_interior": 96, "n_boundary": 16, "n_initial": 16}
SMALL_NET = {"name": "mlp", "width": 6, "depth": 4}
RUN = {"dtype": "float64", "device": "cpu", "print_every": 0, "metrics_every": 2}


def aspqn(variant: str, subdomains: int) -> dict:
    return {
        "name": "lbfgs",
        "memory": 3,
        "npc": {
            "name": "schwarz",
            "variant": variant,
            "subdomains": subdomains,
            "local_iters": 2,
            "local": {"name": "lbfgs", "memory": 3, "line_search": "armijo"},
        },
    }


CASES = {
    # name: (ranks, input, K: the run takes 2K iterations and is resumed from K)
    "aspqn_1rank": (1, {"problem": BURGERS, "model": SMALL_NET, "solver": aspqn("additive", 3)}, 2),
    "aspqn_2ranks": (2, {"problem": BURGERS, "model": SMALL_NET, "solver": aspqn("additive", 2)}, 2),
    "aspqn_4ranks": (4, {"problem": BURGERS, "model": SMALL_NET, "solver": aspqn("additive", 4)}, 2),
    "aspqn_shared_blocks": (4, {"problem": BURGERS, "model": SMALL_NET, "solver": aspqn("additive", 2)}, 2),
    "mspqn_2ranks": (2, {"problem": BURGERS, "model": SMALL_NET, "solver": aspqn("multiplicative", 3)}, 2),
    "apts_data_like_2ranks": (
        2,
        {
            "problem": BURGERS,
            "model": SMALL_NET,
            "solver": {**aspqn("additive", 2), "npc": {**aspqn("additive", 2)["npc"], "decomposition": "samples"}},
        },
        2,
    ),
    "apts_data_2ranks": (
        2,
        {
            "problem": BURGERS,
            "model": SMALL_NET,
            "solver": {
                "name": "trust_region",
                "global_steps": 1,
                "npc": {
                    "name": "schwarz",
                    "decomposition": "samples",
                    "local_iters": 2,
                    "local": {"name": "trust_region"},
                },
            },
        },
        2,
    ),
    "apts_weights_inexact_2ranks": (
        2,
        {
            "problem": {"name": "classification", "dataset": "blobs", "n_train": 120, "n_test": 40},
            "model": {"name": "mlp", "width": 8, "depth": 2},
            "solver": {
                "name": "trust_region",
                "norm": "inf",
                "npc": {
                    "name": "schwarz",
                    "subdomains": 3,
                    "local_data": "chunk",
                    "local_iters": 2,
                    "local": {"name": "trust_region", "norm": "inf"},
                },
            },
            "data": {"batch_size": 50},
        },
        3,
    ),
    "svrg_2ranks": (
        2,
        {
            "problem": {"name": "logistic", "n_samples": 200, "features": 6, "reference": False},
            "solver": {
                "name": "multilevel",
                "levels": [{"fraction": 0.05, "resample": "step", "pre": 4, "solver": {"name": "sgd", "lr": 0.3}}],
            },
        },
        2,
    ),
    "astrom_1rank": (
        1,
        {
            "problem": {"name": "logistic", "n_samples": 200, "features": 6, "reference": False},
            "solver": {
                "name": "multilevel",
                "control": "trust_region",
                "grow": 2.0,
                "eta": 0.3,
                "shrink_below": 0.3,
                "levels": [
                    {
                        "fraction": 0.05,
                        "resample": "fixed",
                        "pre": 2,
                        "solver": {"name": "trust_region", "hessian": "exact"},
                    }
                ],
            },
        },
        3,
    ),
    "rmtr_depth_2ranks": (
        2,
        {
            "problem": {"name": "classification", "dataset": "peaks", "n_train": 120, "n_test": 40},
            "model": {"name": "resnet", "width": 4, "blocks": 4},
            "solver": {
                "name": "multilevel",
                "hierarchy": "depth",
                "control": "trust_region",
                "fine": {"name": "trust_region"},
                "fine_pre": 1,
                "levels": [{"solver": {"name": "trust_region"}, "pre": 2}],
            },
            "data": {"batch_size": 50},
        },
        2,
    ),
    # resumed between two resamples (draws at iterations 3 and 6)
    "resample_2ranks": (
        2,
        {"problem": BURGERS, "model": SMALL_NET, "solver": {"name": "lbfgs"}, "data": {"resample_every": 3}},
        4,
    ),
    # resumed in the middle of an epoch of shuffled, overlapping mini-batches
    "minibatch_2ranks": (
        2,
        {
            "problem": {"name": "classification", "dataset": "blobs", "n_train": 120, "n_test": 40},
            "model": {"name": "mlp", "width": 8, "depth": 1},
            "solver": {"name": "adam", "lr": 0.02},
            "data": {"batch_size": 25, "overlap": 10.0},
        },
        7,
    ),
}


def _input(directory, raw: dict, k: int) -> str:
    path = os.path.join(str(directory), "in.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump({**raw, "run": {**RUN, "max_iter": 2 * k, "checkpoint_every": k}}, fh)
    return path


@pytest.mark.mpi
@pytest.mark.parametrize("name", sorted(CASES))
def test_resume_is_bit_exact(tmp_path, name):
    ranks, raw, k = CASES[name]
    mpi = ranks if ranks > 1 else 0
    inp = _input(tmp_path, raw, k)
    ddnn([inp, "--out", tmp_path / "straight", "--quiet"], tmp_path, mpi, 180)
    middle = tmp_path / "straight" / f"{CHECKPOINT}.bak"
    attrs, _, _ = read_checkpoint(str(middle))
    assert attrs["iteration"] == k and attrs["stop_reason"] == "RUNNING"
    ddnn([inp, "--resume", middle, "--out", tmp_path / "res", "--quiet"], tmp_path, mpi, 180)
    _, hist_s, params_s = results(tmp_path / "straight")
    _, hist_r, params_r = results(tmp_path / "res")
    assert np.array_equal(params_r, params_s)
    assert_histories_equal(hist_r, hist_s)
    _, state_s, _ = read_checkpoint(str(tmp_path / "straight" / CHECKPOINT))
    _, state_r, _ = read_checkpoint(str(tmp_path / "res" / CHECKPOINT))
    assert len(state_s["ranks"]) == ranks
    for key in ("solver", "sampler"):
        _assert_tensors_equal(state_r[key], state_s[key], key)
    for r in range(ranks):
        _assert_tensors_equal(state_r["ranks"][r]["solver"], state_s["ranks"][r]["solver"], f"rank {r}")
    if "npc" in raw["solver"]:  # every rank's blocks keep their local L-BFGS histories in the checkpoint
        assert all(state_s["ranks"][r]["solver"]["npc"] for r in range(ranks))
