"""The communicator: serial semantics in-process, MPI semantics under mpiexec with 2, 3 and 4 ranks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ddnn import parallel
from ddnn.parallel import SerialComm
from tests.helpers import REPO, subprocess_env

SCRIPT = os.path.join(REPO, "tests", "mpi_scripts", "comm_check.py")


def test_serial_comm_is_the_identity():
    comm = SerialComm()
    assert (comm.rank, comm.size, comm.local_rank, comm.local_size) == (0, 1, 0, 1)
    t = torch.arange(6.0).reshape(2, 3)
    for op in ("sum", "max", "min"):
        assert comm.allreduce(t, op) is t
        assert torch.equal(t, torch.arange(6.0).reshape(2, 3))
    assert comm.bcast(t) is t
    g = comm.allgather(t)
    assert g.shape == (1, 2, 3) and torch.equal(g[0], t)
    g[0, 0, 0] = 99.0  # a copy, not a view
    assert t[0, 0] == 0.0
    obj = {"a": [1, 2]}
    assert comm.bcast_object(obj) is obj
    assert comm.allgather_object(obj) == [obj]
    assert comm.allreduce_value(2.5, "max") == 2.5 and isinstance(comm.allreduce_value(3, "sum"), float)
    assert comm.agree(True) is True and comm.agree(False) is False and comm.agree(1) is True
    comm.barrier()
    assert comm.stats() == {"bytes_communicated": 0, "communication_time": 0.0}
    with pytest.raises(SystemExit) as info:
        comm.abort(3)
    assert info.value.code == 3


def test_init_without_a_launcher_is_serial(monkeypatch):
    for var in (*parallel.LAUNCH_VARS, "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert not parallel.launched_by_mpi()
    assert isinstance(parallel.init(), SerialComm)
    monkeypatch.setenv("PMI_SIZE", "2")
    assert parallel.launched_by_mpi()
    monkeypatch.setenv("DDNN_SERIAL", "1")
    assert not parallel.launched_by_mpi()


def test_no_mpi_at_import_time():
    code = "import sys, ddnn.parallel, ddnn.cli, ddnn.run; sys.exit(1 if 'mpi4py.MPI' in sys.modules else 0)"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), timeout=60, capture_output=True, text=True
    )
    assert proc.returncode == 0, "mpi4py.MPI was imported at import time" + proc.stderr


def test_set_threads_shares_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert parallel.set_threads(SerialComm(), 1) == 1 and torch.get_num_threads() == 1
        comm = SerialComm()
        comm.local_size = 64
        assert parallel.set_threads(comm) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert parallel.set_threads(comm) == 2
    finally:
        torch.set_num_threads(before)


def test_select_device_cpu():
    assert parallel.select_device(SerialComm(), "cpu") == torch.device("cpu")


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3, 4])
def test_mpi_comm_collectives(n):
    proc = subprocess.run(
        ["mpiexec", "-n", str(n), sys.executable, SCRIPT, str(n)],
        env=subprocess_env(),
        cwd=REPO,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"OK {n}", proc.stdout + proc.stderr


@pytest.mark.mpi
def test_one_rank_under_mpiexec_is_serial():
    code = "from ddnn import parallel; c = parallel.init(); print(type(c).__name__, c.size)"
    proc = subprocess.run(
        ["mpiexec", "-n", "1", sys.executable, "-c", code],
        env=subprocess_env(),
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["SerialComm", "1"]


@pytest.mark.mpi
def test_ddnn_serial_forces_serial_under_mpiexec():
    code = (
        "import sys; from ddnn import parallel; c = parallel.init(); "
        "sys.stdout.write(f'{type(c).__name__} {c.rank} {c.size}\\n')"  # one write: lines of two ranks do not mix
    )
    proc = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, "-c", code],
        env=subprocess_env(DDNN_SERIAL="1"),
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["SerialComm 0 1", "SerialComm 0 1"]
