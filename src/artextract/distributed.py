"""Work split across processes and machines with ``torchrun`` (torch.distributed).

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`init` joins the process group
(NCCL on GPUs, gloo on CPUs); every command that embeds a catalogue then gives rank ``r`` of ``W``
the paintings ``todo[r::W]``. Without torchrun everything here is a no-op and the rank is 0 of 1.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int]:
    """``(rank, world)``, joining the process group first when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier(world: int) -> None:
    """Wait for every rank (a no-op for one process)."""
    if world > 1:
        dist.barrier()


def broadcast(obj, world: int, src: int = 0):
    """``obj`` as rank ``src`` has it, on every rank."""
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj, world: int) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def shutdown(world: int) -> None:
    """Wait for every rank, then leave the process group."""
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def abandon(world: int) -> None:
    """Leave the process group without waiting for the other ranks (this rank failed)."""
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
