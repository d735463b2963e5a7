"""The communicator of a library optimiser: serial, MPI, or a ``torch.distributed`` process group.

:func:`resolve_comm` turns what the user passes as ``comm=`` into a
:class:`~ddnn.parallel.comm.Comm` (the only interface ddnn's solvers
communicate through):

* ``None`` — serial (the default): one process, blocks solved one after another;
* a :class:`~ddnn.parallel.comm.Comm` — e.g. ``ddnn.parallel.init()`` under ``mpiexec``;
* an mpi4py communicator (``MPI.COMM_WORLD``) — wrapped in :class:`~ddnn.parallel.mpi.MPIComm`;
* a ``torch.distributed`` process group (``torch.distributed.group.WORLD``
  once ``init_process_group`` ran; gloo for CPU tensors, NCCL for CUDA ones)
  — wrapped in :class:`TorchDistComm`;
* ``"world"`` — the torch.distributed world when it is initialised, else
  ``ddnn.parallel.init()`` (MPI under an MPI launcher, serial otherwise).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from ddnn.parallel.comm import Comm, ReduceOp, SerialComm

__all__ = ["TorchDistComm", "resolve_comm"]

_EXPECTED = "expected None, 'world', a ddnn Comm, an mpi4py communicator or a torch.distributed process group"


class TorchDistComm(Comm):
    """:class:`~ddnn.parallel.comm.Comm` over a ``torch.distributed`` process group.

    Parameters
    ----------
    group : the process group (``None``: the default, whole-world group)

    Notes
    -----
    :meth:`split` creates one ``new_group`` per colour on every rank (torch
    needs every rank to take part in creating every group).
    """

    name = "torch.distributed"

    def __init__(self, group: Any = None):
        super().__init__()
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("comm: torch.distributed is not initialised (call init_process_group first)")
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.size))
        self._ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}

    @staticmethod
    def _dist() -> Any:
        import torch.distributed as dist

        return dist

    def _global(self, rank: int) -> int:
        return rank if self.group is None else self._dist().get_global_rank(self.group, rank)

    def allreduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """Collective. Reduce ``tensor`` over the group in place; returns it."""
        start = time.perf_counter()
        self._dist().all_reduce(tensor, op=self._ops[op], group=self.group)
        self._account(tensor.numel() * tensor.element_size(), start)
        return tensor

    def bcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        """Collective. Overwrite ``tensor`` with root's, in place; returns it."""
        start = time.perf_counter()
        self._dist().broadcast(tensor, src=self._global(root), group=self.group)
        self._account(tensor.numel() * tensor.element_size(), start)
        return tensor

    def allgather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. Stack every rank's ``tensor`` along a new dim 0."""
        start = time.perf_counter()
        tensor = tensor.detach().contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.size)]
        self._dist().all_gather(out, tensor, group=self.group)
        self._account(tensor.numel() * tensor.element_size(), start)
        return torch.stack(out)

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Collective. Root's picklable ``obj`` on every rank."""
        box = [obj]
        self._dist().broadcast_object_list(box, src=self._global(root), group=self.group)
        return box[0]

    def allgather_object(self, obj: Any) -> list[Any]:
        """Collective. Every rank's picklable ``obj``, in rank order."""
        out: list[Any] = [None] * self.size
        self._dist().all_gather_object(out, obj, group=self.group)
        return out

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Collective. Every rank's ``obj`` in rank order on ``root``; ``None`` elsewhere."""
        out: list[Any] | None = [None] * self.size if self.rank == root else None
        self._dist().gather_object(obj, out, dst=self._global(root), group=self.group)
        return out

    def scatter_object(self, objs: list[Any] | None, root: int = 0) -> Any:
        """Collective. Item ``rank`` of root's list ``objs`` on every rank."""
        out: list[Any] = [None]
        objs = objs if self.rank == root else None
        self._dist().scatter_object_list(out, objs, src=self._global(root), group=self.group)
        return out[0]

    def barrier(self) -> None:
        """Collective. Wait for every rank of the group."""
        self._dist().barrier(group=self.group)

    def split(self, color: int, key: int | None = None) -> Comm:
        """Collective. The communicator of the ranks that passed the same ``color`` (ordered by ``key``).

        A group of one rank gets a :class:`~ddnn.parallel.comm.SerialComm`.
        """
        dist = self._dist()
        entries = self.allgather_object((color, self.rank if key is None else key, self._global(self.rank)))
        mine: Comm = SerialComm()
        for c in sorted({e[0] for e in entries}):
            ranks = [g for _, _, g in sorted((e for e in entries if e[0] == c), key=lambda e: e[1])]
            group = dist.new_group(ranks)  # every rank takes part in creating every group
            if c == color and len(ranks) > 1:
                mine = TorchDistComm(group)
        return mine


def resolve_comm(comm: Any) -> Comm | None:
    """The :class:`~ddnn.parallel.comm.Comm` of ``comm=`` (see the module docstring); ``None`` when serial."""
    if comm is None or isinstance(comm, SerialComm):
        return None
    if isinstance(comm, Comm):
        return comm if comm.size > 1 else None
    if isinstance(comm, str):
        if comm != "world":
            raise ValueError(f"comm: {_EXPECTED}, got {comm!r}")
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return resolve_comm(TorchDistComm())
        from ddnn import parallel

        return resolve_comm(parallel.init())
    try:
        import torch.distributed as dist

        if dist.is_available() and isinstance(comm, dist.ProcessGroup):
            return resolve_comm(TorchDistComm(comm))
    except ImportError:  # pragma: no cover - torch without distributed
        pass
    if hasattr(comm, "Get_rank") and hasattr(comm, "Allreduce"):
        from ddnn.parallel.mpi import MPIComm

        return resolve_comm(MPIComm(comm))
    raise ValueError(f"comm: {_EXPECTED}, got {type(comm).__name__}")
