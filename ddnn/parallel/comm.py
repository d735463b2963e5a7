"""The communicator interface solvers use, and its serial implementation.

Solvers and the run driver communicate only through a :class:`Comm`; no
other module calls mpi4py or torch.distributed. Every method that all ranks
must call is marked *Collective.*
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch

__all__ = ["Comm", "SerialComm", "ReduceOp"]

ReduceOp = Literal["sum", "max", "min"]


class Comm:
    """Communicator over the ranks of one job.

    Attributes
    ----------
    rank, size : this rank and the number of ranks
    local_rank, local_size : the same within this node
    bytes_communicated : payload bytes this rank sent through collectives
    seconds : wall time this rank spent inside collectives
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    name: str = "serial"

    def __init__(self) -> None:
        self.bytes_communicated = 0
        self.seconds = 0.0

    # -- tensors ---------------------------------------------------------
    def allreduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """Collective. Reduce ``tensor`` over all ranks in place; returns it."""
        raise NotImplementedError

    def bcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        """Collective. Overwrite ``tensor`` with root's, in place; returns it."""
        raise NotImplementedError

    def allgather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Collective. Stack every rank's ``tensor`` (same shape everywhere) along a new dim 0."""
        raise NotImplementedError

    # -- small Python values --------------------------------------------
    def allreduce_value(self, value: float, op: ReduceOp = "sum") -> float:
        """Collective. Reduce one Python number over all ranks."""
        t = torch.tensor([value], dtype=torch.float64)
        return float(self.allreduce(t, op)[0])

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        """Collective. Root's picklable ``obj`` on every rank."""
        raise NotImplementedError

    def allgather_object(self, obj: Any) -> list[Any]:
        """Collective. Every rank's picklable ``obj``, in rank order."""
        raise NotImplementedError

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Collective. Every rank's picklable ``obj`` in rank order on ``root``; ``None`` elsewhere."""
        raise NotImplementedError

    def scatter_object(self, objs: list[Any] | None, root: int = 0) -> Any:
        """Collective. Item ``rank`` of root's list ``objs`` (one per rank) on every rank."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Collective. Wait for every rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """Terminate every rank of the job now (after a failure on this one)."""
        raise SystemExit(code)

    def split(self, color: int, key: int | None = None) -> Comm:
        """Collective. The communicator of the ranks that passed the same ``color`` (ordered by ``key``)."""
        raise NotImplementedError

    def agree(self, flag: bool) -> bool:
        """Collective. True on every rank when ``flag`` is true on any rank."""
        return self.allreduce_value(1.0 if flag else 0.0, "max") > 0

    # -- bookkeeping -----------------------------------------------------
    def _account(self, nbytes: int, start: float) -> None:
        self.bytes_communicated += nbytes
        self.seconds += time.perf_counter() - start

    def stats(self) -> dict[str, float]:
        return {"bytes_communicated": self.bytes_communicated, "communication_time": self.seconds}


class SerialComm(Comm):
    """One rank, no MPI: every collective is the identity."""

    name = "serial"

    def allreduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        return tensor

    def bcast(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        return tensor

    def allgather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unsqueeze(0).clone()

    def allreduce_value(self, value: float, op: ReduceOp = "sum") -> float:
        return float(value)

    def bcast_object(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def gather_object(self, obj: Any, root: int = 0) -> list[Any] | None:
        return [obj]

    def scatter_object(self, objs: list[Any] | None, root: int = 0) -> Any:
        return objs[0]

    def barrier(self) -> None:
        pass

    def agree(self, flag: bool) -> bool:
        return bool(flag)

    def split(self, color: int, key: int | None = None) -> Comm:
        return SerialComm()
