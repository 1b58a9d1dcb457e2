"""One process or many (torchrun): ranks, devices, and what the ranks agree on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            torch.distributed.barrier()


def setup_distributed() -> Distributed:
    """Under torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU; otherwise one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return Distributed(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    return Distributed(torch.distributed.get_rank(), world_size, device)


def rank0_view(progress: float, stop: bool, dist: Distributed) -> tuple[float, bool]:
    """Rank 0's progress and stop request: every rank takes the same learning rate and stops
    at the same step, whatever its own clock says."""
    if dist.world_size == 1:
        return progress, stop
    shared = torch.tensor([progress, float(stop)], dtype=torch.float64, device=dist.device)
    torch.distributed.broadcast(shared, 0)
    return float(shared[0]), bool(shared[1])


def gather_positions(position: dict, dist: Distributed) -> list[dict]:
    """Every rank's position in its batch stream, on every rank (rank 0 saves them)."""
    if dist.world_size == 1:
        return [position]
    gathered: list = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, position)
    return gathered
