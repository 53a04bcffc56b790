"""Training under torchrun: the process group, DistributedDataParallel and summed statistics.

``torchrun --nproc_per_node N -m dstft_cli train …`` (or ``fit-window``) starts N processes with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment. :func:`join_process_group`
joins their group (gloo on CPU, nccl on CUDA, one GPU per process); :func:`data_parallel` wraps
the module that holds every trained parameter in :class:`~torch.nn.parallel.DistributedDataParallel`,
whose backward pass replaces each gradient by its mean over the processes. Every process keeps
the same parameters because each starts from the same seed and takes the same optimiser step
from the same averaged gradient (DDP never broadcasts parameters after its constructor).

Without a process group every function here is the identity of one process (world size 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["process_group", "join_process_group", "joined_process_group", "data_parallel",
           "sum_over_processes", "barrier"]


def process_group() -> tuple[int, int]:
    """(world size, rank) of the torch.distributed process group, (1, 0) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def join_process_group(device: str) -> tuple[int, int, str]:
    """Under torchrun (``WORLD_SIZE`` > 1): join its process group and return (world size, rank,
    this process's device); ``(1, 0, device)`` otherwise.

    On CUDA each process takes the GPU of its ``LOCAL_RANK`` (``cuda`` → ``cuda:LOCAL_RANK``) and
    the group uses nccl; on CPU it uses gloo. The group stays until destroyed: callers use
    :func:`joined_process_group`, which also leaves it.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = str(device).startswith("cuda")
        if cuda and str(device) == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if cuda:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    world, rank = process_group()
    return world, rank, device


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined_process_group(device: str) -> Iterator[tuple[int, int, str]]:
    """:func:`join_process_group` for the length of a ``with`` block, which every process leaves
    together: on success they meet at a barrier (rank 0 may still be writing results while the
    others are done), then each destroys the group while the interpreter is fully alive.

    A process that exits without destroying its gloo group can abort at interpreter teardown
    (SIGABRT, "terminate called without an active exception"), which torchrun reports as a
    failure of the whole run although every result was written.
    """
    world, rank, device = join_process_group(device)
    try:
        yield world, rank, device
    except BaseException:
        _leave_process_group()  # no barrier: the others may never reach it
        raise
    barrier()
    _leave_process_group()


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` in DistributedDataParallel inside a process group, else ``module`` itself.

    ``device_ids`` names the module's GPU on CUDA and is None on CPU (as DDP requires). Every
    parameter that requires a gradient must reach the loss in every step
    (``find_unused_parameters`` stays off: frozen parameters, such as a fixed θ, are not
    reduced at all). The modules trained here hold no buffers (no batch norm), so there is
    nothing for DDP to broadcast in the forward pass.
    """
    world, _ = process_group()
    if world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(p.device for p in module.parameters() if p.requires_grad)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the processes (float64, a new tensor; a copy in one process)."""
    total = values.detach().to(torch.float64).clone()
    world, _ = process_group()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def barrier() -> None:
    """Wait until every process reaches this point (nothing without a process group)."""
    world, _ = process_group()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
