"""End to end: ``python -m ddnn`` runs, serial and under mpiexec.

Results layout, data-parallel equivalence of rank counts, stop rules,
bit-exact resume, resume errors, SIGKILL/SIGTERM robustness, one failing
rank ending the job, and the default output directory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import yaml

from ddnn import config as cfg
from ddnn.io import CHECKPOINT, RESULTS, read_checkpoint
from tests.helpers import subprocess_env

N = 6  # iterations of the reference runs

BASE = {
    "problem": {"name": "regression", "n_samples": 200, "n_test": 16},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "solver": {"name": "adam", "lr": 0.01},
    "run": {"max_iter": N, "dtype": "float64", "device": "cpu", "print_every": 0, "checkpoint_every": N // 2},
}

FINAL_REASONS = {"MAX_ITER", "MAX_GRAD_EVALS", "TARGET_LOSS", "TARGET_METRIC", "WALL_TIME"}


def write_input(directory, name: str = "in", **sections) -> str:
    """An input file: BASE with ``sections`` merged in (one level deep)."""
    raw = {k: dict(v) for k, v in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and key in raw:
            raw[key].update(value)
        else:
            raw[key] = value
    path = os.path.join(str(directory), f"{name}.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(raw, fh)
    return path


def command(args, ranks: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "ddnn", *map(str, args)]
    return ["mpiexec", "-n", str(ranks), *cmd] if ranks else cmd


def ddnn(args, cwd, ranks: int = 0, timeout: float = 60, check: bool = True, **extra_env):
    proc = subprocess.run(
        command(args, ranks),
        cwd=str(cwd),
        env=subprocess_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def start(args, cwd, ranks: int = 0, **extra_env) -> subprocess.Popen:
    return subprocess.Popen(
        command(args, ranks),
        cwd=str(cwd),
        env=subprocess_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results(out) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    with h5py.File(os.path.join(str(out), RESULTS), "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        history = {k: f["history"][k][()] for k in f["history"]}
        params = f["params"][()]
    return attrs, history, params


def deterministic(history: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """History columns that do not measure time."""
    return {k: v for k, v in history.items() if k != "wall_time" and not k.startswith("time_")}


def assert_histories_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    a, b = deterministic(a), deterministic(b)
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), f"history column {name} differs"


def one_line_error(proc) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------
# reference runs shared by several tests


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("run")


STOP_RULES = {
    "max_grad_evals": ({"max_iter": 1000, "max_grad_evals": 3}, "MAX_GRAD_EVALS"),
    "target_loss": ({"max_iter": 1000, "target_loss": 0.4}, "TARGET_LOSS"),
    "target_metric": ({"max_iter": 1000, "target_metric": "rel_l2_error", "target_value": 1.2}, "TARGET_METRIC"),
    "wall_time": ({"max_iter": 10**7, "wall_time": 0.5, "checkpoint_every": 0}, "WALL_TIME"),
}


@pytest.fixture(scope="module")
def serial_runs(work):
    """The independent one-rank runs, two at a time (one per core): name -> output directory.

    ``serial``: N iterations, checkpoint every N/2; ``half``: N/2 iterations (the
    start of a resumed run); one run per stop rule.
    """
    jobs = {"serial": write_input(work, "serial"), "half": write_input(work, "half", run={"max_iter": N // 2})}
    jobs.update({rule: write_input(work, rule, run=run) for rule, (run, _) in STOP_RULES.items()})
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(ddnn, [inp, "--out", work / f"{name}_out"], work) for name, inp in jobs.items()]
        for future in futures:
            future.result()
    return {name: work / f"{name}_out" for name in jobs}


@pytest.fixture(scope="module")
def serial_run(serial_runs):
    return serial_runs["serial"]


@pytest.fixture(scope="module")
def serial_half(serial_runs):
    return serial_runs["half"]


@pytest.fixture(scope="module")
def two_rank_run(work):
    inp = write_input(work, "two")
    ddnn([inp, "--out", work / "two_out", "--quiet"], work, ranks=2)
    return work / "two_out"


def test_results_layout(serial_run):
    assert sorted(os.listdir(serial_run)) == [CHECKPOINT, CHECKPOINT + ".bak", RESULTS]  # in --out, nothing else
    attrs, history, params = results(serial_run)
    for key in (
        "config",
        "ddnn_version",
        "torch_version",
        "world_size",
        "device",
        "host",
        "started",
        "finished",
        "stop_reason",
        "stop_code",
        "problem",
        "solver",
    ):
        assert key in attrs, key
    assert attrs["format"] == "ddnn-results"
    assert attrs["world_size"] == 1 and attrs["device"] == "cpu"
    assert attrs["stop_reason"] == "MAX_ITER" and attrs["stop_code"] == 1 and attrs["finished"]
    assert (attrs["problem"], attrs["solver"]) == ("regression", "adam")
    # the resolved configuration, every default filled in, parses back to itself
    config = cfg.parse(yaml.safe_load(attrs["config"]))
    assert config.run.max_iter == N and config.solver.lr == 0.01 and config.problem.noise == 0.0
    assert cfg.to_yaml(config) == attrs["config"]
    for name in ("iteration", "loss", "grad_evals", "wall_time", "rel_l2_error", "loss_data"):
        assert name in history, name
        assert history[name].dtype == np.float64 and history[name].shape == (N,), name
    assert np.array_equal(history["iteration"], np.arange(1, N + 1))
    assert np.array_equal(history["grad_evals"], np.arange(1, N + 1))  # Adam: one gradient per step
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["rel_l2_error"]))
    assert np.all(np.diff(history["wall_time"]) >= 0)
    assert np.allclose(history["loss"], history["loss_data"], rtol=1e-14, atol=0)
    assert history["loss"][-1] < history["loss"][0]
    assert params.dtype == np.float64 and params.shape == (8 * 2 + 8 + 8 + 1,)
    # the final checkpoint holds the same parameters and is marked finished
    ckpt_attrs, state, _ = read_checkpoint(os.path.join(serial_run, CHECKPOINT))
    assert ckpt_attrs["format"] == "ddnn-checkpoint" and ckpt_attrs["stop_reason"] == "MAX_ITER"
    assert ckpt_attrs["iteration"] == N
    assert np.array_equal(state["params"].numpy(), params)
    # the mid-run checkpoint was kept as the backup, marked unfinished
    bak_attrs, bak_state, _ = read_checkpoint(os.path.join(serial_run, CHECKPOINT + ".bak"))
    assert bak_attrs["iteration"] == N // 2 and bak_attrs["stop_reason"] == "RUNNING"
    assert int(bak_state["iteration"]) == N // 2


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_data_parallel_matches_serial(serial_run, two_rank_run, work, ranks):
    if ranks == 2:
        out = two_rank_run
    else:
        out = work / f"ranks{ranks}_out"
        ddnn([write_input(work, f"ranks{ranks}"), "--out", out, "--quiet"], work, ranks=ranks)
    attrs1, hist1, params1 = results(serial_run)
    attrs, hist, params = results(out)
    assert attrs["world_size"] == ranks and attrs["stop_reason"] == "MAX_ITER"
    assert np.array_equal(hist["iteration"], hist1["iteration"])
    assert np.array_equal(hist["grad_evals"], hist1["grad_evals"])
    np.testing.assert_allclose(hist["loss"], hist1["loss"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(hist["rel_l2_error"], hist1["rel_l2_error"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(params, params1, rtol=1e-12, atol=1e-14)
    assert hist["bytes_communicated"][-1] > 0 and hist1["bytes_communicated"][-1] == 0


# ---------------------------------------------------------------------------
# stop rules


@pytest.mark.parametrize("rule", sorted(STOP_RULES))
def test_stop_rules(serial_runs, rule):
    run, reason = STOP_RULES[rule]
    out = serial_runs[rule]
    attrs, history, _ = results(out)
    assert attrs["stop_reason"] == reason
    assert read_checkpoint(os.path.join(out, CHECKPOINT))[0]["stop_reason"] == reason
    iterations = int(history["iteration"][-1])
    assert 1 <= iterations < run["max_iter"]
    if rule == "max_grad_evals":
        assert history["grad_evals"][-1] == 3 and iterations == 3
    elif rule == "target_loss":
        assert history["loss"][-1] <= 0.4 and np.all(history["loss"][:-1] > 0.4)
    elif rule == "target_metric":
        assert history["rel_l2_error"][-1] <= 1.2 and np.all(history["rel_l2_error"][:-1] > 1.2)
    elif rule == "wall_time":
        assert history["wall_time"][-1] >= 0.5 > history["wall_time"][-2]


# ---------------------------------------------------------------------------
# resume


def test_resume_is_bit_exact(serial_run, serial_half, work):
    ckpt = serial_half / CHECKPOINT
    attrs, state, _ = read_checkpoint(str(ckpt))
    assert attrs["stop_reason"] == "MAX_ITER" and int(state["iteration"]) == N // 2
    proc = ddnn(
        [write_input(work, "half"), "--resume", ckpt, "--set", f"run.max_iter={N}", "--out", work / "resumed"], work
    )
    assert f"resumed at iteration {N // 2}" in proc.stdout
    attrs_r, hist_r, params_r = results(work / "resumed")
    attrs_s, hist_s, params_s = results(serial_run)
    assert attrs_r["stop_reason"] == "MAX_ITER"
    assert np.array_equal(params_r, params_s)
    assert_histories_equal(hist_r, hist_s)
    _, state_r, _ = read_checkpoint(str(work / "resumed" / CHECKPOINT))
    _, state_s, _ = read_checkpoint(str(serial_run / CHECKPOINT))
    _assert_tensors_equal(state_r["solver"], state_s["solver"])


def _assert_tensors_equal(a, b, where="solver"):
    import torch

    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for k in a:
            _assert_tensors_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tensors_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.mpi
def test_resume_is_bit_exact_under_mpiexec(two_rank_run, work):
    inp = write_input(work, "two_half", run={"max_iter": N // 2})
    ddnn([inp, "--out", work / "two_half_out", "--quiet"], work, ranks=2)
    ddnn(
        [inp, "--resume", work / "two_half_out" / CHECKPOINT, "--set", f"run.max_iter={N}", "--out", work / "two_res"],
        work,
        ranks=2,
    )
    attrs_r, hist_r, params_r = results(work / "two_res")
    _, hist_s, params_s = results(two_rank_run)
    assert attrs_r["world_size"] == 2 and attrs_r["stop_reason"] == "MAX_ITER"
    assert np.array_equal(params_r, params_s)
    assert_histories_equal(hist_r, hist_s)


def test_resume_with_a_different_solver_option_is_refused(serial_half, work):
    out = work / "refused_option"
    proc = ddnn(
        [write_input(work, "half"), "--resume", serial_half / CHECKPOINT, "--set", "solver.lr=0.5", "--out", out],
        work,
        check=False,
    )
    line = one_line_error(proc)
    assert str(serial_half / CHECKPOINT) in line and "solver" in line
    assert proc.stdout == "" and not out.exists()


@pytest.mark.mpi
def test_resume_with_a_different_world_size_is_refused(serial_half, work):
    out = work / "refused_world"
    proc = ddnn(
        [write_input(work, "half"), "--resume", serial_half / CHECKPOINT, "--out", out], work, ranks=2, check=False
    )
    line = one_line_error(proc)
    assert str(serial_half / CHECKPOINT) in line and "1 ranks" in line and "2" in line
    assert proc.stdout == "" and not out.exists()


# ---------------------------------------------------------------------------
# killed and interrupted runs


def _mtime(path) -> int:
    return os.stat(path).st_mtime_ns if os.path.exists(path) else -1


def _wait_for(path, proc, before: int, timeout: float = 60) -> None:
    """Until ``path`` is (re)written after the modification time ``before``."""
    deadline = time.monotonic() + timeout
    while _mtime(path) == before:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigkill_leaves_a_readable_checkpoint(tmp_path):
    rng = random.Random(1234)
    inp = write_input(tmp_path, run={"max_iter": 10**7, "checkpoint_every": 1, "dtype": "float32"})
    out = tmp_path / "out"
    last = 0
    for _ in range(2):
        before = _mtime(out / CHECKPOINT)
        proc = start([inp, "--out", out, "--quiet"], tmp_path)
        try:
            _wait_for(out / CHECKPOINT, proc, before)  # the loop runs: it checkpoints every iteration
            time.sleep(rng.uniform(0.0, 0.4))
            assert proc.poll() is None, proc.communicate()
        finally:
            proc.kill()
            proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        attrs, state, _ = read_checkpoint(str(out / CHECKPOINT))
        assert attrs["stop_reason"] == "RUNNING" and int(state["iteration"]) >= 1
        last = int(state["iteration"])
    # the last one resumes
    ddnn([inp, "--resume", out / CHECKPOINT, "--set", f"run.max_iter={last + 2}", "--out", tmp_path / "res"], tmp_path)
    attrs, history, _ = results(tmp_path / "res")
    assert attrs["stop_reason"] == "MAX_ITER" and history["iteration"][-1] == last + 2


def _interrupt(tmp_path, ranks: int) -> tuple[str, str]:
    """Start a long run, SIGTERM it once it iterates; return its input and checkpoint."""
    inp = write_input(tmp_path, run={"max_iter": 10**7, "checkpoint_every": 0, "print_every": 20})
    out = tmp_path / "out"
    proc = start([inp, "--out", out], tmp_path, ranks=ranks)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # the signal handler is in place once the loop prints
            if line.startswith("it "):
                break
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout
    attrs, state, _ = read_checkpoint(str(out / CHECKPOINT))
    assert attrs["stop_reason"] == "RUNNING" and attrs["stop_reason"] not in FINAL_REASONS
    assert attrs["finished"] == "" and attrs["world_size"] == max(ranks, 1)
    assert int(state["iteration"]) >= 20
    r_attrs, _, _ = results(out)
    assert r_attrs["stop_reason"] == "RUNNING"
    return inp, str(out / CHECKPOINT)


def _resume_after_interrupt(tmp_path, inp: str, ckpt: str, ranks: int) -> None:
    _, state, _ = read_checkpoint(ckpt)
    target = int(state["iteration"]) + 3
    ddnn([inp, "--resume", ckpt, "--set", f"run.max_iter={target}", "--out", tmp_path / "res"], tmp_path, ranks=ranks)
    attrs, history, _ = results(tmp_path / "res")
    assert attrs["stop_reason"] == "MAX_ITER"
    assert np.array_equal(history["iteration"], np.arange(1, target + 1))


def test_sigterm_checkpoints_and_resumes(tmp_path):
    inp, ckpt = _interrupt(tmp_path, 0)
    _resume_after_interrupt(tmp_path, inp, ckpt, 0)


@pytest.mark.mpi
def test_sigterm_under_mpiexec(tmp_path):
    inp, ckpt = _interrupt(tmp_path, 2)
    _resume_after_interrupt(tmp_path, inp, ckpt, 2)


# ---------------------------------------------------------------------------
# failures


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [3])
def test_one_failing_rank_ends_the_job(tmp_path, ranks):
    inp = write_input(tmp_path, run={"max_iter": 10**7, "checkpoint_every": 0})
    began = time.monotonic()
    proc = ddnn(
        [inp, "--out", tmp_path / "out", "--quiet"],
        tmp_path,
        ranks=ranks,
        check=False,
        timeout=60,
        DDNN_FAIL_RANK="1",
        DDNN_FAIL_ITER="3",
    )
    elapsed = time.monotonic() - began
    assert proc.returncode != 0
    assert elapsed < 30, f"the job took {elapsed:.1f} s to end"
    assert f"[ddnn rank 1/{ranks}] RuntimeError: injected failure on rank 1 at iteration 3" in proc.stderr
    assert "Traceback" in proc.stderr and "_inject_fault" in proc.stderr


def test_failure_on_one_rank_serial(tmp_path):
    inp = write_input(tmp_path, run={"max_iter": 100})
    proc = ddnn([inp, "--out", tmp_path / "out"], tmp_path, check=False, DDNN_FAIL_RANK="0", DDNN_FAIL_ITER="2")
    assert proc.returncode == 1
    assert "[ddnn rank 0/1] RuntimeError: injected failure" in proc.stderr and "Traceback" in proc.stderr


# ---------------------------------------------------------------------------
# output location


def test_output_directory_defaults(tmp_path):
    """--out (used by every other test), else output.dir, else runs/<input stem>."""
    quick = {"max_iter": 1, "checkpoint_every": 0}
    named = write_input(tmp_path, "named", run=quick, output={"dir": "elsewhere/x"})
    plain = write_input(tmp_path, "my_study", run=quick)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [
            pool.submit(ddnn, [named], tmp_path),  # output.dir from the input, relative to the working directory
            pool.submit(ddnn, [plain], tmp_path),  # neither: runs/<input stem>
        ]:
            future.result()
    assert sorted(os.listdir(tmp_path / "elsewhere" / "x")) == [CHECKPOINT, RESULTS]
    assert sorted(os.listdir(tmp_path / "runs")) == ["my_study"]
    assert sorted(os.listdir(tmp_path / "runs" / "my_study")) == [CHECKPOINT, RESULTS]
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "my_study.yaml", "named.yaml", "runs"]
