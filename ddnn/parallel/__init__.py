"""Parallel runtime: communicator, device and threads of every rank.

Nothing here touches MPI at import time. :func:`init` returns a
:class:`~ddnn.parallel.comm.Comm`: an :class:`~ddnn.parallel.mpi.MPIComm`
when the process was launched by an MPI launcher with more than one rank,
else the serial one.
"""

from __future__ import annotations

import os

import torch

from ddnn.parallel.comm import Comm, SerialComm

__all__ = ["Comm", "SerialComm", "LAUNCH_VARS", "init", "launched_by_mpi", "select_device", "set_threads"]

# Variables set by MPICH/Hydra, Open MPI, PMIx and Slurm for every launched rank.
LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher (mpiexec, mpirun, srun with PMI) started this process."""
    if os.environ.get("DDNN_SERIAL"):
        return False
    return any(v in os.environ for v in LAUNCH_VARS) or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def init() -> Comm:
    """Collective. The job's communicator (serial without an MPI launcher or with one rank)."""
    if not launched_by_mpi():
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError:
        return SerialComm()
    if MPI.COMM_WORLD.Get_size() == 1:
        return SerialComm()
    from ddnn.parallel.mpi import MPIComm

    return MPIComm(MPI.COMM_WORLD)


def select_device(comm: Comm, requested: str = "auto") -> torch.device:
    """Collective. This rank's device: the node-local GPU ``local_rank % gpus`` when CUDA exists.

    Attaches the NCCL group to an MPI communicator when every rank of the
    node has its own GPU; otherwise CUDA tensors are staged through host memory.
    """
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from ddnn.errors import InputError

        raise InputError("run.device: cuda requested but CUDA is not available on this machine")
    device = torch.device("cuda", comm.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    if comm.size > 1 and hasattr(comm, "node"):
        from ddnn.parallel.nccl import NodeGroup, gpu_identity, nccl_usable

        usable = nccl_usable(comm.node.allgather(gpu_identity(device)))
        if comm.allreduce_value(0.0 if usable else 1.0, "max") == 0.0:
            comm.gpu_group = NodeGroup(comm, device)
    return device


def set_threads(comm: Comm, threads: int | None = None) -> int:
    """Torch intra-op threads of this rank: the node's cores shared among its ranks.

    ``threads`` (``run.threads``) wins, then ``OMP_NUM_THREADS``, then
    ``cores // ranks on the node``; so 4 ranks on 2 cores do not fight.
    """
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        text = os.environ["OMP_NUM_THREADS"].strip()
        if not text.isdigit() or not 1 <= int(text) <= 4096:
            from ddnn.errors import InputError

            raise InputError(f"OMP_NUM_THREADS: expected an integer between 1 and 4096, got {text[:40]!r}")
        threads = int(text)
    if threads is None:
        cores = os.cpu_count() or 1
        threads = max(1, cores // max(1, comm.local_size))
    torch.set_num_threads(threads)
    return threads
