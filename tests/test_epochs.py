"""The run loop knows epochs: cadences in epochs, max_epochs, the epoch column, work in full-data units."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from ddnn import config as cfg
from ddnn.errors import ConfigError
from ddnn.io import CHECKPOINT, RESULTS, read_checkpoint
from ddnn.parallel import SerialComm
from ddnn.run import Run, StopReason

N_TRAIN, BATCH = 90, 20  # 5 batches per epoch (near-equal: 18 rows each)


def _run(tmp_path, run: dict, data: dict | None = None, solver: dict | None = None):
    raw = {
        "problem": {"name": "classification", "dataset": "blobs", "n_train": N_TRAIN, "n_test": 30},
        "model": {"name": "mlp", "width": 6, "depth": 1},
        "solver": solver or {"name": "adam", "lr": 0.05},
        "data": {"batch_size": BATCH} if data is None else data,
        "run": {"dtype": "float64", "print_every": 0, "checkpoint_every": 0, **run},
    }
    result = Run(cfg.parse(raw), SerialComm(), str(tmp_path), quiet=True).execute()
    with h5py.File(tmp_path / RESULTS, "r") as f:
        history = {k: f["history"][k][()] for k in f["history"]}
    return result, history


def test_max_epochs_and_the_epoch_column(tmp_path):
    result, h = _run(tmp_path, {"max_iter": 1000, "max_epochs": 3, "metrics_every": 1})
    assert result.reason == StopReason.MAX_EPOCHS and result.iterations == 15
    np.testing.assert_allclose(h["epoch"], np.arange(1, 16) / 5)
    # one gradient per iteration, each on a fifth of the training set
    assert np.array_equal(h["grad_evals"], np.arange(1, 16))
    np.testing.assert_allclose(h["grad_work"], np.arange(1, 16) / 5, rtol=1e-12)
    np.testing.assert_allclose(h["effective_grad_work"], h["grad_work"], rtol=0)


def test_cadences_in_epochs(tmp_path):
    run = {"max_iter": 12, "metrics_every": "1 epoch", "checkpoint_every": "2 epochs"}
    result, h = _run(tmp_path, run)
    measured = np.flatnonzero(~np.isnan(h["accuracy"][:-1])) + 1  # the last row also gets the final metrics
    assert list(measured) == [5, 10]
    assert not math.isnan(h["accuracy"][-1])
    attrs, state, _ = read_checkpoint(str(tmp_path / f"{CHECKPOINT}.bak"))
    assert attrs["iteration"] == 10 and attrs["stop_reason"] == "RUNNING"
    assert state["sampler"]["epoch"] == 1 and state["sampler"]["position"] == 4


def test_full_batch_iterations_are_epochs(tmp_path):
    result, h = _run(tmp_path, {"max_iter": 50, "max_epochs": 4}, data={}, solver={"name": "lbfgs"})
    assert result.reason == StopReason.MAX_EPOCHS and result.iterations == 4
    assert np.array_equal(h["epoch"], [1.0, 2.0, 3.0, 4.0])
    assert np.array_equal(h["grad_work"], h["grad_evals"])  # every gradient on the whole set


@pytest.mark.parametrize(
    "value, expected", [(5, (5, "iteration")), ("3 epochs", (3, "epoch")), ("1 epoch", (1, "epoch"))]
)
def test_cadence_values(value, expected):
    cadence = cfg.Cadence.from_config(value, "run.print_every", {})
    assert (cadence.count, cadence.unit) == expected
    assert cfg.Cadence.from_config(cadence.to_config(), "k", {}) == cadence


@pytest.mark.parametrize("value", ["5 weeks", "epochs", -1, True, 2.5])
def test_bad_cadences(value):
    with pytest.raises(ConfigError, match="run.print_every"):
        cfg.Cadence.from_config(value, "run.print_every", {})


def test_stop_when_all_targets_were_reached(tmp_path):
    """run.stop_when: all — a run stops once both targets were reached, not at the first one."""
    run = {"max_iter": 200, "metrics_every": 1, "target_loss": 0.5, "target_metric": "accuracy", "target_value": 0.9}
    both, h = _run(tmp_path / "all", {**run, "stop_when": "all"}, data={})
    loss_hit = int(np.flatnonzero(h["loss"] <= 0.5)[0])
    acc_hit = int(np.flatnonzero(h["accuracy"] >= 0.9)[0])
    assert loss_hit != acc_hit  # the two targets come at different iterations here
    assert both.reason in (StopReason.TARGET_LOSS, StopReason.TARGET_METRIC)
    assert both.iterations - 1 == max(loss_hit, acc_hit)
    first, _ = _run(tmp_path / "any", run, data={})
    assert first.iterations - 1 == min(loss_hit, acc_hit)
