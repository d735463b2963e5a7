"""NCCL (torch.distributed) for CUDA tensors inside a node, MPI across nodes.

Hierarchical allreduce (after Horovod's ``NCCLHierarchicalAllreduce``):

1. reduce to the node leader with NCCL,
2. allreduce among node leaders with MPI on a host copy,
3. broadcast from the leader inside the node with NCCL.

With one node, step 2 vanishes and a single NCCL allreduce is used. When
``MASTER_ADDR`` and ``MASTER_PORT`` are set in the environment, one NCCL group
spans the whole job instead (NCCL then crosses nodes itself); otherwise each
node's leader picks a free loopback port and shares it over MPI.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

__all__ = ["NodeGroup", "nccl_usable", "gpu_identity"]


def gpu_identity(device: torch.device) -> str:
    """A string naming the physical GPU (its UUID), equal for ranks that share one."""
    props = torch.cuda.get_device_properties(device)
    return str(getattr(props, "uuid", "")) or f"{props.name}:{props.pci_bus_id}:{props.pci_device_id}"


def nccl_usable(node_gpus: list[str]) -> bool:
    """NCCL needs one physical GPU per rank of a node: it refuses two ranks on one device.

    ``node_gpus`` are the :func:`gpu_identity` of every rank on the node; they
    differ also when a scheduler shows each rank only its own GPU
    (``--gpus-per-task=1``: every rank sees device 0).
    """
    import torch.distributed as dist

    return dist.is_available() and dist.is_nccl_available() and len(set(node_gpus)) == len(node_gpus)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeGroup:
    """Collective. A torch.distributed NCCL group over this node's ranks (or the whole job).

    Parameters
    ----------
    mpi : the job's :class:`~ddnn.parallel.mpi.MPIComm` (node communicator, ranks)
    device : this rank's CUDA device
    """

    def __init__(self, mpi: Any, device: torch.device):
        import torch.distributed as dist

        self.dist = dist
        self.device = device
        self.whole_job = "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ
        if self.whole_job:
            rank, size, init = mpi.rank, mpi.size, "env://"
        else:
            port = mpi.node.bcast(_free_port() if mpi.local_rank == 0 else None, root=0)
            rank, size, init = mpi.local_rank, mpi.local_size, f"tcp://127.0.0.1:{port}"
        dist.init_process_group("nccl", init_method=init, rank=rank, world_size=size, device_id=device)
        self.single_node = mpi.nodes == 1
        self.local_rank = mpi.local_rank
        self._ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}

    def allreduce(self, tensor: torch.Tensor, op: str, leaders: Any, mpi_op: Any) -> None:
        """Collective. In-place allreduce of a CUDA tensor over the whole job."""
        dist = self.dist
        if self.whole_job or self.single_node:
            dist.all_reduce(tensor, op=self._ops[op])
            return
        dist.reduce(tensor, dst=0, op=self._ops[op])
        if self.local_rank == 0:
            from mpi4py import MPI

            host = tensor.cpu()
            leaders.Allreduce(MPI.IN_PLACE, host.numpy(), op=mpi_op)
            tensor.copy_(host)
        dist.broadcast(tensor, src=0)

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()
