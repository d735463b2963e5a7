"""MPI communicator (mpi4py) on host tensors, with a hierarchical GPU path.

Host tensors travel as zero-copy NumPy views of their storage. CUDA tensors
go through :class:`ddnn.parallel.nccl.NodeGroup` when NCCL is usable (one
GPU per rank on the node): reduce inside the node with NCCL, allreduce among
node leaders with MPI, broadcast inside the node (the shape of Horovod's
``NCCLHierarchicalAllreduce``). Otherwise they are staged through host memory.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ddnn.parallel.comm import Comm, ReduceOp

__all__ = ["MPIComm"]


class MPIComm(Comm):
    """Communicator over ``MPI.COMM_WORLD`` (or a given mpi4py communicator).

    Parameters
    ----------
    comm : an mpi4py intracommunicator
    """

    name = "mpi"

    def __init__(self, comm: Any):
        super().__init__()
        from mpi4py import MPI

        self._MPI = MPI
        self.world = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.node.Get_rank()
        self.local_size = self.node.Get_size()
        color = 0 if self.local_rank == 0 else MPI.UNDEFINED
        self.leaders = comm.Split(color, key=self.rank)  # MPI.COMM_NULL off the leaders
        self.nodes = self.node.bcast(self.leaders.Get_size() if self.local_rank == 0 else None, root=0)
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
        self.gpu_group = None  # set by attach_gpu_group once a device is chosen

    # -- helpers ---------------------------------------------------------
    @staticmethod
    def _view(tensor: torch.Tensor) -> np.ndarray:
        if not tensor.is_contiguous():
            raise ValueError("communication needs contiguous tensors")
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy()
        return tensor.numpy()

    def _host_allreduce(self, tensor: torch.Tensor, op: ReduceOp) -> None:
        if tensor.dtype == torch.bfloat16:  # MPI has no bfloat16: reducing its int16 bits would be garbage
            wide = tensor.float()
            self.world.Allreduce(self._MPI.IN_PLACE, wide.numpy(), op=self._ops[op])
            tensor.copy_(wide)
            return
        self.world.Allreduce(self._MPI.IN_PLACE, self._view(tensor), op=self._ops[op])

    # -- tensors ---------------------------------------------------------
    def allreduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """Collective. Reduce ``tensor`` over all ranks in place; returns it."""
        start = time.perf_counter()
        if tensor.device.type == "cpu":
            self._host_allreduce(tensor, op)
        elif self.gpu_group is not None:
            self.gpu_group.allreduce(tensor, op, self.leaders, self._ops[op])
        else:
            host = tensor.cpu()
            self._host_allreduce(host, op)
            tensor.copy_(host)
        self._account(tensor.numel() * tensor.element_size(), start)
        return tensor

    def bcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        """Collective. Overwrite ``tensor`` with root's, in place; returns it."""
        start = time.perf_counter()
        if tensor.device.type == "cpu":
            self.world.Bcast(self._view(tensor), root=root)
        else:
            host = tensor.cpu()
            self.world.Bcast(self._view(host), root=root)
            tensor.copy_(host)
        self._account(tensor.numel() * tensor.element_size(), start)
        return tensor

    def allgather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. Stack every rank's ``tensor`` (same shape everywhere) along a new dim 0."""
        start = time.perf_counter()
        host = tensor.detach().contiguous().cpu()
        out = torch.empty((self.size, *host.shape), dtype=host.dtype)
        self.world.Allgather(self._view(host), self._view(out))
        self._account(tensor.numel() * tensor.element_size(), start)
        return out.to(tensor.device)

    # -- Python values ---------------------------------------------------
    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Collective. Root's picklable ``obj`` on every rank."""
        start = time.perf_counter()
        out = self.world.bcast(obj, root=root)
        self._account(0, start)
        return out

    def allgather_object(self, obj: Any) -> list[Any]:
        """Collective. Every rank's picklable ``obj``, in rank order."""
        start = time.perf_counter()
        out = self.world.allgather(obj)
        self._account(0, start)
        return out

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Collective. Every rank's picklable ``obj`` in rank order on ``root``; ``None`` elsewhere."""
        start = time.perf_counter()
        out = self.world.gather(obj, root=root)
        self._account(0, start)
        return out

    def scatter_object(self, objs: list[Any] | None, root: int = 0) -> Any:
        """Collective. Item ``rank`` of root's list ``objs`` (one per rank) on every rank."""
        start = time.perf_counter()
        out = self.world.scatter(objs, root=root)
        self._account(0, start)
        return out

    def barrier(self) -> None:
        """Collective. Wait for every rank."""
        self.world.Barrier()

    def split(self, color: int, key: int | None = None) -> Comm:
        """Collective. The communicator of the ranks that passed the same ``color``.

        A group of one rank gets a :class:`~ddnn.parallel.comm.SerialComm`.
        CUDA tensors of a sub-communicator are staged through host memory.
        """
        sub = self.world.Split(color, self.rank if key is None else key)
        if sub.Get_size() == 1:
            from ddnn.parallel.comm import SerialComm

            sub.Free()
            return SerialComm()
        return MPIComm(sub)

    def abort(self, code: int = 1) -> None:
        """Terminate every rank of the job now."""
        self.world.Abort(code)
