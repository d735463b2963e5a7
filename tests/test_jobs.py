"""The cluster job scripts (jobs/*.sh): syntax, dry runs, and checkpoint-and-resubmit in a simulated allocation."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "jobs", "*.sh")))
LAUNCHERS = ["slurm_gpu.sh", "mpirun.sh", "sweep_array.sh"]


def _env(**extra: str) -> dict[str, str]:
    """The environment without any Slurm job variables (as on a login node)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DDNN_"))}
    env.update(extra)
    return env


def _bash(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=ROOT, capture_output=True, text=True, env=env or _env(), timeout=timeout)


def test_every_script_is_valid_bash():
    names = {os.path.basename(s) for s in SCRIPTS}
    assert {"site.sh", "common.sh", *LAUNCHERS} <= names
    for script in SCRIPTS:
        result = _bash("-n", script)
        assert result.returncode == 0, f"{script}: {result.stderr}"


@pytest.mark.parametrize("script", LAUNCHERS)
@pytest.mark.parametrize("input_file", ["inputs/quickstart.yaml", "inputs/does_not_exist.yaml"])
def test_dry_run_prints_the_ddnn_command(script, input_file):
    result = _bash(f"jobs/{script}", input_file, "--set", "run.max_iter=5", env=_env(DRY_RUN="1"))
    assert result.returncode == 0, result.stderr
    launches = [line for line in result.stdout.splitlines() if "python -m ddnn" in line]
    assert launches, result.stdout
    assert all(f"python -m ddnn {input_file}" in line for line in launches)
    assert all("run.max_iter=5" in line for line in launches)


def test_slurm_dry_run_requests_one_rank_per_gpu():
    env = _env(DRY_RUN="1", DDNN_NODES="2", DDNN_GPUS_PER_NODE="4", DDNN_CPUS_PER_TASK="16", DDNN_PARTITION="gpu")
    out = _bash("jobs/slurm_gpu.sh", "inputs/quickstart.yaml", env=env).stdout
    sbatch, srun = out.splitlines()[0], out.splitlines()[-1]
    for option in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-task=1", "--cpus-per-task=16"):
        assert option in sbatch
    assert "--partition=gpu" in sbatch and "--signal=B:USR1@120" in sbatch
    assert srun.startswith("srun ") and "--gpus-per-task=1" in srun and "--cpus-per-task=16" in srun
    assert srun.endswith("python -m ddnn inputs/quickstart.yaml --out runs/quickstart")


def test_sweep_dry_run_covers_world_sizes_and_seeds():
    out = _bash("jobs/sweep_array.sh", "inputs/quickstart.yaml", env=_env(DRY_RUN="1")).stdout
    submissions = [line for line in out.splitlines() if line.startswith("sbatch ")]
    assert len(submissions) == 4
    assert all("--array=0-9" in line for line in submissions)
    runs = [line for line in out.splitlines() if "python -m ddnn" in line]
    assert len(runs) == 40
    for ranks in (2, 4, 6, 8):
        for seed in range(10):
            expected = f"--set run.seed={seed} --out runs/sweep/quickstart/np{ranks}_seed{seed}"
            assert sum(expected in line for line in runs) == 1


def test_missing_input_argument_exits_2():
    for script in LAUNCHERS:
        result = _bash(f"jobs/{script}", env=_env(DRY_RUN="1"))
        assert result.returncode == 2, script


def _fake_slurm(tmp_path) -> str:
    """``srun`` that runs the command once, ``sbatch`` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "sbatch").write_text(f'#!/usr/bin/env bash\necho "$@" >> {tmp_path}/sbatch.log\n')
    for name in ("srun", "sbatch"):
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def test_slurm_job_checkpoints_on_signal_and_resubmits(tmp_path):
    """In a (simulated) allocation: the warning signal makes ddnn checkpoint; the job resubmits with --resume."""
    bin_dir = _fake_slurm(tmp_path)
    (tmp_path / "long.yaml").write_text(
        "problem: {name: regression, n_samples: 100}\nsolver: {name: adam, lr: 0.01}\n"
        "run: {max_iter: 1000000, print_every: 0, checkpoint_every: 0, threads: 1}\n"
    )
    out = tmp_path / "run"
    env = _env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        SLURM_JOB_ID="42",
        SLURM_JOB_NUM_NODES="1",
        DDNN_PYTHON=sys.executable,
        DDNN_LOG_DIR=str(tmp_path / "logs"),
    )
    job = subprocess.Popen(
        ["bash", "jobs/slurm_gpu.sh", str(tmp_path / "long.yaml"), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = []
    try:
        for line in job.stdout:  # wait until the run has started training
            lines.append(line)
            if line.startswith("ddnn ") and "problem regression" in line:
                break
        time.sleep(1.0)
        job.send_signal(signal.SIGUSR1)  # what Slurm sends DDNN_SIGNAL_LEAD seconds before the limit
        rest, _ = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    log = "".join(lines) + rest
    assert job.returncode == 0, log
    assert "stop reason RUNNING" in log
    import h5py

    with h5py.File(out / "checkpoint.h5", "r") as f:
        assert f.attrs["stop_reason"] == "RUNNING"
    submitted = (tmp_path / "sbatch.log").read_text().strip().splitlines()
    assert len(submitted) == 1, submitted
    assert submitted[0].endswith(f"--out {out} --resume {out}/checkpoint.h5")
    assert "--export=ALL,DDNN_RESUBMIT_COUNT=1" in submitted[0]
