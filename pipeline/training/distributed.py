"""Data-parallel training across processes launched by ``torchrun``.

Every rank holds a replica of the model; the networks that a training step calls are wrapped in
``torch.nn.parallel.DistributedDataParallel`` (:func:`wrap_networks`), whose reducer averages
the gradients in buckets, overlapped with the backward pass. A single-network arch has one
wrapper; pix2pix has one for its generator and one for its discriminator, as GAN codebases do
(see :meth:`pipeline.models.base.ImageModel.ddp_parts`).

BatchNorm: with per-rank statistics, 2 processes of batch b normalise over b images each and
do not train like 1 process of batch 2b. :func:`sync_batchnorm` makes every BatchNorm layer
use the statistics of the global batch: ``torch.nn.SyncBatchNorm`` on CUDA; on the CPU, where
torch's SyncBatchNorm refuses to run ("expected input tensor to be on GPU"), the equivalent
:class:`CpuSyncBatchNorm` (one all-reduce of per-channel sums in the forward pass, one of their
gradients in the backward pass, as SyncBatchNorm does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.training.checkpoint import rng_state


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


# --------------------------------------------------------------------------------------------
# BatchNorm over the global batch
# --------------------------------------------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward all-reduces the values, backward the gradients
    (the gradient of a rank's input is the sum of every rank's gradient of the total)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch of all ranks, on the CPU.

    Outside training, or without a process group of more than one rank, it is BatchNorm2d.
    Running statistics are updated as BatchNorm2d does (momentum, unbiased variance), from the
    global batch, so they stay identical on every rank.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` with the mean and (biased) variance over every rank's batch."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() < 2:
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, 2, 3]
        count = x.new_full((1,), x.numel() // channels)
        # One collective for count, sum and sum of squares; float64 keeps E[x^2] - E[x]^2 exact
        # enough to match single-process BatchNorm to float32 precision.
        local = torch.cat([count.double(), x.double().sum(dims), (x.double() ** 2).sum(dims)])
        total = _AllReduceSum.apply(local)
        n = total[0].detach()
        mean = total[1 : channels + 1] / n
        var = (total[channels + 1 :] / n - mean**2).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average, as BatchNorm2d
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = self.momentum
                unbiased = var * (n / (n - 1)) if n > 1 else var
                self.running_mean.mul_(1 - factor).add_(factor * mean.to(x.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.to(x.dtype))
        shape = (1, channels, 1, 1)
        inv_std = torch.rsqrt(var + self.eps).to(x.dtype).view(shape)
        y = (x - mean.to(x.dtype).view(shape)) * inv_std
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of ``module`` (in place) uses global-batch statistics (see module doc).

    The new layers share the old ones' parameters and buffers, so optimizers built before the
    conversion and state dicts (same keys) keep working.
    """
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, _same_batchnorm(CpuSyncBatchNorm, child))
        else:
            sync_batchnorm(child, device)
    return module


def plain_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`sync_batchnorm` in place (the trained model is an ordinary module again)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.SyncBatchNorm, CpuSyncBatchNorm)):
            setattr(module, name, _same_batchnorm(nn.BatchNorm2d, child))
        else:
            plain_batchnorm(child)
    return module


def _same_batchnorm(
    cls: type[nn.BatchNorm2d], child: nn.BatchNorm2d | nn.SyncBatchNorm
) -> nn.BatchNorm2d:
    """A ``cls`` layer with ``child``'s settings that shares its parameters and buffers."""
    layer = cls(
        child.num_features,
        child.eps,
        child.momentum,
        child.affine,
        child.track_running_stats,
    )
    if child.affine:
        layer.weight, layer.bias = child.weight, child.bias
    layer.running_mean, layer.running_var = child.running_mean, child.running_var
    layer.num_batches_tracked = child.num_batches_tracked
    layer.train(child.training)
    return layer


# --------------------------------------------------------------------------------------------
# Wrappers and small collectives
# --------------------------------------------------------------------------------------------


def wrap_networks(
    parts: Mapping[str, nn.Module], device: torch.device, info: DistInfo
) -> dict[str, nn.Module]:
    """The networks a training step calls: each in its own DistributedDataParallel when
    distributed, else the modules themselves.

    DDP's constructor copies rank 0's parameters and buffers to every rank (start and resume).
    ``broadcast_buffers`` is off: the only buffers that change, BatchNorm's running statistics,
    are computed from the global batch (:func:`sync_batchnorm`) and agree on every rank.
    """
    if not info.distributed:
        return dict(parts)
    device_ids = [device.index] if device.type == "cuda" else None
    return {
        name: DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)
        for name, module in parts.items()
    }


def all_reduce_sum(values: torch.Tensor, device: torch.device, info: DistInfo) -> torch.Tensor:
    """Element-wise sum of a small CPU tensor over all ranks (itself when not distributed).

    The reduction runs on ``device`` because NCCL only reduces CUDA tensors."""
    if not info.distributed:
        return values
    on_device = values.to(device)
    dist.all_reduce(on_device)
    return on_device.cpu()


def gather_rng(info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG states, in rank order (a collective: every rank must call it)."""
    mine = rng_state()
    if not info.distributed:
        return [mine]
    everyone: list[Any] = [None] * info.world_size
    dist.all_gather_object(everyone, mine)
    return everyone
