"""Per-batch work of the training loop: encode a batch, a training epoch, validation.

A batch of (flash x, studio o) pairs becomes (network input, target) on the device with the
bilateral filter BL and the problem encoding (A, B, C; Sec. 3 and eq. 8 of the paper); the
training step is the model's own (``training_step``: the supervised default, pix2pix's GAN
step), called with one :class:`pipeline.models.base.StepContext`: the networks as the loop
wrapped them (DistributedDataParallel when several processes train), optimizers, this batch's
loss and the loop's mixed precision, whose GradScaler the loop updates after the step.
Validation reports the loss (eq. 5) and accuracy (eq. 7) over every rank's share of the
validation images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.core.encodings import make_target, network_input
from pipeline.core.losses import with_mask, with_ssim
from pipeline.core.metrics import accuracy
from pipeline.models.base import ImageModel, StepContext
from pipeline.training.distributed import DistInfo, all_reduce_sum
from pipeline.training.jitter import jitter_batch

BatchCallback = Callable[[int, int, dict[str, float]], None]


class MemoBlur:
    """BL with memory: encoding C asks for BL(x) for the input and again for the target (and
    validation for accuracy); the filter is the costly part, so each tensor is filtered once."""

    def __init__(self, blur: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._blur = blur  # core.bilateral.make_blur: the one BL builder
        self._memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """BL(image), computed once per tensor."""
        hit = self._memo.get(id(image))
        if hit is not None and hit[0] is image:
            return hit[1]
        out = self._blur(image)
        # Keeping ``image`` alive keeps its id from being reused by another tensor.
        self._memo[id(image)] = (image, out)
        return out


def encode_batch(
    flash: torch.Tensor,
    studio: torch.Tensor,
    encoding: str,
    blur: MemoBlur,
    device: torch.device,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flash on the device, network input, target) of one batch; BL runs on the device."""
    non_blocking = device.type == "cuda"
    x = flash.to(device, non_blocking=non_blocking)
    o = studio.to(device, non_blocking=non_blocking)
    with torch.no_grad():
        inputs = network_input(x, encoding, blur)
        targets = make_target(x, o, encoding, blur)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = targets.contiguous(memory_format=torch.channels_last)
    return x, inputs, targets


@dataclass
class RunContext:
    """What every step of a run uses: the model, the networks its step calls (wrapped for
    DDP or not), optimizers, loss, encoding, device and precision settings (the trainer's:
    each model step gets its share as a :class:`pipeline.models.base.StepContext`)."""

    model: ImageModel
    nets: Mapping[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    encoding: str
    blur_factory: Callable[[], MemoBlur]
    device: torch.device
    autocast: Callable[[], Any]
    scaler: torch.amp.GradScaler | None
    channels_last: bool
    info: DistInfo
    jitter: float = 0.0  # train.jitter: strength of the random transform per image and batch
    ssim_weight: float = 0.0  # loss.ssim_weight: the (1 - SSIM) term of the training loss


@dataclass
class EpochStats:
    """Means of the step statistics over every rank, this rank's images and the wall time."""

    means: dict[str, float]
    images: int
    seconds: float


def train_epoch(
    ctx: RunContext,
    loader: DataLoader,
    epoch: int,
    epochs: int,
    on_batch_end: BatchCallback | None = None,
    progress: bool = True,
) -> EpochStats:
    """One pass over ``loader`` (this rank's shard of the epoch's shuffle)."""
    ctx.model.train()
    sums: dict[str, float] = {}
    steps = seen = 0
    started = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{epochs}",
        disable=not (progress and ctx.info.is_main),
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    for batch, (flash, studio, valid) in enumerate(bar, start=1):
        # A new small transform per image (train.jitter) before BL and the encoding.
        flash, studio, valid = jitter_batch(flash, studio, valid, ctx.jitter)
        x, inputs, targets = encode_batch(
            flash, studio, ctx.encoding, ctx.blur_factory(), ctx.device, ctx.channels_last
        )
        # Padded pixels of the face crops (validity mask 0) carry no scene: not in the loss.
        valid = valid.to(ctx.device)
        loss_fn = with_mask(ctx.loss_fn, valid)
        loss_fn = with_ssim(loss_fn, x, ctx.encoding, ctx.ssim_weight, valid)
        step = StepContext(ctx.nets, ctx.optimizers, loss_fn, ctx.autocast, ctx.scaler)
        stats = ctx.model.training_step(inputs, targets, step)
        step.end_step()
        steps += 1
        seen += flash.shape[0]
        for key, value in stats.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        bar.set_postfix(loss=f"{sums.get('loss', 0.0) / steps:.5f}", refresh=False)
        if on_batch_end is not None:
            on_batch_end(epoch, batch, stats)
    bar.close()
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - started
    keys = sorted(sums)
    means = torch.tensor([sums[k] / max(steps, 1) for k in keys], dtype=torch.float64)
    # Every rank ran as many steps of the same sizes: the mean of the ranks' means.
    means = all_reduce_sum(means, ctx.device, ctx.info) / ctx.info.world_size
    return EpochStats(dict(zip(keys, means.tolist(), strict=True)), seen, seconds)


@torch.no_grad()
def validate(ctx: RunContext, loader: DataLoader) -> tuple[float | None, float | None]:
    """Mean loss (eq. 5) and accuracy (eq. 7) over the validation images of every rank."""
    model = ctx.model
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, accuracy sum, images
    for flash, studio, valid in loader:
        blur = ctx.blur_factory()
        x, inputs, targets = encode_batch(
            flash, studio, ctx.encoding, blur, ctx.device, ctx.channels_last
        )
        with ctx.autocast():
            outputs = model(inputs)
        outputs = outputs.float().contiguous()
        targets = targets.contiguous()
        n = outputs.shape[0]
        valid = valid.to(ctx.device)
        loss = ctx.loss_fn(outputs, targets, mask=valid)
        totals[0] += float(loss.mean()) * n
        totals[1] += float(accuracy(outputs, targets, blur(x), mask=valid).sum())
        totals[2] += n
    totals = all_reduce_sum(totals, ctx.device, ctx.info)
    model.train()
    if totals[2] == 0:
        return None, None
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])
