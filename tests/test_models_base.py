"""Tests of pipeline/models/base.py: every arch's training step through one StepContext
(the supervised default and pix2pix's GAN step), under autocast and a GradScaler."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pipeline.core.bilateral import bilateral_filter
from pipeline.core.encodings import ENCODINGS, make_target, network_input
from pipeline.core.losses import centred_mse, plain_mse
from pipeline.models import build_model
from pipeline.models.base import StepContext

# Tiny networks keep every test fast on 2 CPU cores.
TINY = {"deepflash": 1 / 16, "hdrnet": 1 / 8, "pix2pix": 1 / 16}
SIDE = {"deepflash": 64, "hdrnet": 48, "pix2pix": 256}


ADAM = SimpleNamespace(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8)
PIX2PIX_ADAM = SimpleNamespace(lr=2e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def _tiny_batch(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    face = torch.stack([0.3 + 0.5 * xx, 0.2 + 0.4 * yy, 0.5 * (xx + yy)])
    flash = (face + 0.05 * torch.rand(2, 3, side, side, generator=gen)).clamp(0, 1)
    studio = (0.7 * flash + 0.1 + 0.1 * yy).clamp(0, 1)
    return flash, studio


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("arch", ["deepflash", "hdrnet", "pix2pix"])
def test_a_few_steps_reduce_the_loss(arch, encoding):
    torch.manual_seed(0)
    side = SIDE[arch]
    flash, studio = _tiny_batch(side)
    blur = lambda im: bilateral_filter(im, side * 0.03, 0.4)  # noqa: E731
    inputs = network_input(flash, encoding, blur)
    targets = make_target(flash, studio, encoding, blur)
    model = build_model(arch, TINY[arch])
    model.train()
    optimizers = model.configure_optimizers(PIX2PIX_ADAM if arch == "pix2pix" else ADAM)
    # Centred loss for the difference encodings (the paper), plain MSE for A.
    loss_fn = plain_mse if encoding == "A" else centred_mse
    steps = 6 if arch == "pix2pix" else 8
    step = StepContext(model.ddp_parts(), optimizers, loss_fn)
    losses = []
    for _ in range(steps):
        stats = model.training_step(inputs, targets, step)
        assert set(stats) >= {"loss"} and all(math.isfinite(v) for v in stats.values())
        losses.append(stats["loss"])
    assert losses[-1] < 0.8 * losses[0], losses
    if arch == "pix2pix":
        assert set(stats) == {"loss", "loss_g", "loss_g_gan", "loss_g_l1", "loss_d"}


def test_training_step_under_bf16_autocast_and_grad_scaler():
    flash, studio = _tiny_batch(64)
    for arch in ("deepflash", "hdrnet", "pix2pix"):
        kwargs = {"num_downs": 6} if arch == "pix2pix" else {}
        model = build_model(arch, TINY[arch], **kwargs).train()
        optimizers = model.configure_optimizers(ADAM)
        before = [p.detach().clone() for p in model.parameters()]
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        bf16 = StepContext(model.ddp_parts(), optimizers, centred_mse, autocast)
        stats = model.training_step(flash, studio, bf16)
        assert math.isfinite(stats["loss"])
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        scaled = StepContext(model.ddp_parts(), optimizers, plain_mse, scaler=scaler)
        for _ in range(2):  # the trainer's end_step lets the scaler step the optimizers again
            stats = model.training_step(flash, studio, scaled)
            scaled.end_step()
        assert math.isfinite(stats["loss"])
        changed = sum(
            not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)
        )
        assert changed > 0.9 * len(before), f"{arch}: only {changed}/{len(before)} tensors updated"
