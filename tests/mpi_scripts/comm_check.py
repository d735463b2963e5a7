"""Check every collective of the job's communicator against values computed serially.

Run as ``mpiexec -n N python tests/mpi_scripts/comm_check.py N``. Every rank
builds every rank's inputs from a seed, so each can compute the expected
results alone. Exits non-zero (through MPI Abort) on the first mismatch;
prints ``OK <size>`` on rank 0 when everything agrees.
"""

from __future__ import annotations

import socket
import sys

import torch

from ddnn import parallel
from ddnn.parallel.mpi import MPIComm


def inputs(rank: int, dtype: torch.dtype) -> torch.Tensor:
    """Rank ``rank``'s tensor: small integers, so that sums are exact in every dtype and order."""
    g = torch.Generator().manual_seed(1000 + rank)
    return torch.randint(-50, 50, (3, 5), generator=g).to(dtype)


def main() -> None:
    expected_size = int(sys.argv[1])
    comm = parallel.init()
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    check(isinstance(comm, MPIComm), f"init() gave {type(comm).__name__}, not MPIComm")
    check(comm.size == expected_size, f"size {comm.size} != {expected_size}")
    check(0 <= comm.rank < comm.size, f"rank {comm.rank}")
    # one node: the node-local numbering is the global one
    check(comm.local_size == comm.size, f"local_size {comm.local_size}")
    check(comm.local_rank == comm.rank, f"local_rank {comm.local_rank} on rank {comm.rank}")
    check(comm.nodes == 1, f"nodes {comm.nodes}")

    for dtype in (torch.float32, torch.float64, torch.int64, torch.int32, torch.bfloat16):
        everyone = torch.stack([inputs(r, dtype) for r in range(comm.size)])
        reference = {
            "sum": everyone.to(torch.float64).sum(0).to(dtype),
            "max": everyone.max(0).values,
            "min": everyone.min(0).values,
        }
        for op, want in reference.items():
            mine = inputs(comm.rank, dtype)
            before = comm.bytes_communicated
            out = comm.allreduce(mine, op)
            check(out is mine, f"allreduce {op} {dtype}: not in place")
            check(torch.equal(mine, want), f"allreduce {op} {dtype}: {mine} != {want}")
            nbytes = mine.numel() * mine.element_size()
            check(comm.bytes_communicated - before == nbytes, f"allreduce {op} {dtype}: bytes not counted")
        gathered = comm.allgather(inputs(comm.rank, dtype))
        check(gathered.shape == (comm.size, 3, 5), f"allgather {dtype}: shape {tuple(gathered.shape)}")
        check(gathered.dtype == dtype and torch.equal(gathered, everyone), f"allgather {dtype}: values")
        for root in range(comm.size):
            t = inputs(comm.rank, dtype)
            out = comm.bcast(t, root=root)
            check(out is t and torch.equal(t, inputs(root, dtype)), f"bcast {dtype} root {root}")

    # a 0-d and an empty tensor
    scalar = torch.tensor(float(comm.rank + 1), dtype=torch.float64)
    comm.allreduce(scalar)
    check(float(scalar) == comm.size * (comm.size + 1) / 2, f"0-d allreduce {float(scalar)}")
    empty = torch.empty(0)
    check(comm.allreduce(empty).numel() == 0, "empty allreduce")

    # non-contiguous tensors are refused, not silently mangled
    try:
        comm.allreduce(torch.zeros(4, 4).t())
        failures.append("allreduce of a non-contiguous tensor did not raise")
    except ValueError:
        pass

    # Python values
    value = comm.allreduce_value(comm.rank + 0.5, "sum")
    check(value == sum(r + 0.5 for r in range(comm.size)), f"allreduce_value sum {value}")
    check(comm.allreduce_value(float(comm.rank), "max") == comm.size - 1, "allreduce_value max")
    check(comm.allreduce_value(float(comm.rank), "min") == 0.0, "allreduce_value min")
    root = comm.size - 1
    obj = {"rank": comm.rank, "data": [1, "x", None], "t": torch.arange(3)}
    got = comm.bcast_object(obj if comm.rank == root else None, root=root)
    same = got["rank"] == root and got["data"] == [1, "x", None] and torch.equal(got["t"], torch.arange(3))
    check(same, "bcast_object")
    everyone = comm.allgather_object((comm.rank, socket.gethostname()))
    check([r for r, _ in everyone] == list(range(comm.size)), f"allgather_object {everyone}")

    # agree(): true everywhere when true anywhere
    for culprit in range(comm.size):
        check(comm.agree(comm.rank == culprit) is True, f"agree with only rank {culprit} true")
    check(comm.agree(False) is False, "agree with all false")
    check(comm.agree(True) is True, "agree with all true")

    # bookkeeping
    stats = comm.stats()
    check(stats["bytes_communicated"] == comm.bytes_communicated > 0, f"stats {stats}")
    check(stats["communication_time"] >= 0.0, f"stats {stats}")
    comm.barrier()

    # every rank's verdict, so that rank 0 can report them all
    verdicts = comm.allgather_object(failures)
    if any(verdicts):
        if comm.rank == 0:
            for rank, fails in enumerate(verdicts):
                for what in fails:
                    print(f"rank {rank}: {what}", file=sys.stderr, flush=True)
        comm.barrier()
        sys.exit(1)
    if comm.rank == 0:
        print(f"OK {comm.size}", flush=True)


if __name__ == "__main__":
    main()
