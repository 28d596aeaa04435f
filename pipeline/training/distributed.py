"""Data-parallel training across processes launched by ``torchrun``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Rank and world size of this process (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0


def init_distributed() -> tuple[DistInfo, bool]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Returns the rank information and whether this call created the group (the caller then
    destroys it). NCCL on CUDA, gloo otherwise (CPU runs and the tests).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    info = DistInfo(rank=rank, world_size=world, local_rank=local_rank)
    if dist.is_initialized():
        return info, False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return info, True


class GradientAverager:
    """Data-parallel gradient synchronisation that works with any ``training_step``.

    Every parameter gets a post-accumulate-grad hook that all-reduces (sums) its gradient
    across ranks and divides by the world size, as DDP's reducer does, while the backward pass
    runs; the optimizer step that follows (inside the model's step) therefore sees the same
    averaged gradients on every rank. Collective order is the autograd order, the same on every
    rank because every rank runs the same graph.
    """

    def __init__(self, model: torch.nn.Module, world_size: int) -> None:
        self.model = model
        self.world_size = world_size
        self._handles = [
            p.register_post_accumulate_grad_hook(self._average)
            for p in model.parameters()
            if p.requires_grad
        ]

    def _average(self, param: torch.Tensor) -> None:
        dist.all_reduce(param.grad)
        param.grad.div_(self.world_size)

    def broadcast_parameters(self) -> None:
        """Copy rank 0's parameters and buffers to every rank (start and resume)."""
        with torch.no_grad():
            for tensor in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(tensor.data, src=0)

    def broadcast_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
        with torch.no_grad():
            for buffer in self.model.buffers():
                dist.broadcast(buffer.data, src=0)

    def remove(self) -> None:
        """Detach the hooks (the model is then an ordinary single-process module)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def all_reduce_sum(values: torch.Tensor, device: torch.device, info: DistInfo) -> torch.Tensor:
    """Element-wise sum of a small CPU tensor over all ranks (itself when not distributed).

    The reduction runs on ``device`` because NCCL only reduces CUDA tensors."""
    if not info.distributed:
        return values
    on_device = values.to(device)
    dist.all_reduce(on_device)
    return on_device.cpu()
