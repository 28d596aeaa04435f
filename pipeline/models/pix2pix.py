"""Pix2Pix (Isola et al. 2017): U-Net generator, 70x70 PatchGAN discriminator, GAN + 100 L1.

As the authors' code (``unet_256``, ``basic`` D, ``vanilla`` GAN mode, batch norm):

- generator: U-Net of 8 stride-2 4x4 downsamplings (64, 128, 256, 512, 512, 512, 512, 512
  filters; LeakyReLU(0.2); batch norm except the outermost and innermost) and mirrored 4x4
  stride-2 transposed convolutions (ReLU, batch norm, dropout 0.5 in the three innermost
  non-bottleneck levels), skip concatenations, tanh output; 54.4 M parameters;
- discriminator: 70x70 PatchGAN on [input, output] (6 channels): 4x4 convs 64 (s2), 128 (s2),
  256 (s2), 512 (s1), 1 (s1), batch norm and LeakyReLU(0.2); 2.8 M parameters;
- loss: BCE-with-logits GAN loss (D: mean of real and fake terms, halved) + 100 x L1 for G;
  Adam lr 2e-4, beta1 0.5 (from params); init N(0, 0.02), batch norm N(1, 0.02).

Images enter and leave in [0, 1] (scaled to [-1, 1] inside, as pix2pix's data loader does).
Input sides must be multiples of 2^8 = 256 (``size_multiple``): every downsampling halves the
image; ``num_downs`` (default 8) trades depth for smaller images (7 -> multiples of 128).
``width`` scales ngf and ndf (64 at 1.0); tiny widths (1/16: 4 filters) still train.

The training step (``training_step``) replaces the supervised default: one D update, then one
G update, under the trainer's autocast and GradScaler (its
:class:`pipeline.models.base.StepContext`). Its ``loss`` entry is the pipeline's loss (eq. 5 or
MSE) of the generator output, for logging and comparison with the other archs; the gradients
come from pix2pix's own objective.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import AdamSettings, ImageModel, StepContext, make_adam
from pipeline.models.deepflash import scaled
from pipeline.models.registry import AdamConfig, register_arch

L1_WEIGHT = 100.0


class UnetBlock(nn.Module):
    """One U-Net level: down, the inner levels, up, and the skip concatenation."""

    def __init__(
        self,
        outer: int,
        inner: int,
        in_channels: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        # Batch norm follows these convs, so no bias (as pix2pix with norm=batch).
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=False)
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nn.BatchNorm2d(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=False)
            layers = [
                nn.LeakyReLU(0.2, True),
                down,
                nn.BatchNorm2d(inner),
                submodule,
                nn.ReLU(True),
                up,
                nn.BatchNorm2d(outer),
            ]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outermost: the image; others: [x, f(x)] along channels."""
        if self.outermost:
            return self.model(x)
        # As the authors' code: the first (in-place) LeakyReLU also rectifies x before the
        # concatenation, so the skip carries LeakyReLU(x).
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net generator (``unet_256`` at num_downs 8)."""

    def __init__(self, ngf: int = 64, num_downs: int = 8) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, dropout=True)
        block = UnetBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetBlock(3, ngf, in_channels=3, submodule=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] in, [-1, 1] out."""
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (``basic`` D, 3 layers): one logit per overlapping patch."""

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 6, H, W) in [-1, 1] -> (N, 1, h, w) logits."""
        return self.model(x)


def init_pix2pix(module: nn.Module) -> None:
    """pix2pix's 'normal' init: conv weights N(0, 0.02), batch norm N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# Isola et al. 2017 (Sec. 3.3): Adam, lr 2e-4, beta1 0.5.
@register_arch("pix2pix", adam=AdamConfig(lr=2e-4, beta1=0.5))
class Pix2Pix(ImageModel):
    """Generator + discriminator; ``forward`` runs the generator only."""

    def __init__(self, width: float = 1.0, num_downs: int = 8, n_layers_d: int = 3) -> None:
        super().__init__(width)
        self.size_multiple = 2**num_downs
        self.generator = UnetGenerator(scaled(64, width), num_downs)
        self.discriminator = PatchDiscriminator(6, scaled(64, width), n_layers_d)
        init_pix2pix(self)

    @classmethod
    def kwargs_for_size(cls, size: int) -> dict[str, Any]:
        """As deep as the original (unet_256 reaches 1x1) but never deeper than ``size`` allows."""
        downs = 0
        while downs < 8 and size % (2 ** (downs + 1)) == 0:
            downs += 1
        if downs < 5:
            raise ValueError(f"pix2pix needs a size divisible by 32, got {size}")
        return {"num_downs": downs}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1] (the generator)."""
        self.check_input(x)
        return (self.generator(x * 2 - 1) + 1) / 2

    def configure_optimizers(self, adam: AdamSettings) -> dict[str, torch.optim.Optimizer]:
        """Adam for G and for D (pix2pix: lr 2e-4, betas (0.5, 0.999))."""
        return {
            "generator": make_adam(self.generator.parameters(), adam),
            "discriminator": make_adam(self.discriminator.parameters(), adam),
        }

    def ddp_parts(self) -> dict[str, nn.Module]:
        """Generator and discriminator: each gets its own DistributedDataParallel."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    @staticmethod
    def _d_logits(
        discriminator: nn.Module, inputs: torch.Tensor, images: torch.Tensor
    ) -> torch.Tensor:
        # Conditional D sees [input, image], both in [-1, 1].
        return discriminator(torch.cat([inputs, images], dim=1) * 2 - 1)

    def training_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, step: StepContext
    ) -> dict[str, float]:
        """pix2pix's step: update D on (real, fake.detach()), then G on GAN + 100 L1.

        ``step.nets``: generator and discriminator as the trainer wrapped them (DDP). G's pass
        for the G update runs D unwrapped: D is frozen there, and a DDP forward would wait for
        D gradients that never come; G's gradients through D are G's wrapper's to average.
        """
        nets, autocast = step.nets, step.autocast
        opt_g, opt_d = step.optimizers["generator"], step.optimizers["discriminator"]
        targets = targets.float()
        self.check_input(inputs)
        with autocast():
            fake = (nets["generator"](inputs * 2 - 1) + 1) / 2

        # Discriminator: real pairs -> 1, generated pairs -> 0.
        self.discriminator.requires_grad_(True)
        opt_d.zero_grad(set_to_none=True)
        with autocast():
            logits_fake = self._d_logits(nets["discriminator"], inputs, fake.detach())
            logits_real = self._d_logits(nets["discriminator"], inputs, targets.to(fake.dtype))
        loss_d_fake = F.binary_cross_entropy_with_logits(
            logits_fake.float(), torch.zeros_like(logits_fake.float())
        )
        loss_d_real = F.binary_cross_entropy_with_logits(
            logits_real.float(), torch.ones_like(logits_real.float())
        )
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        step.backward_step(loss_d, opt_d)

        # Generator: fool D, stay close to the target (L1).
        self.discriminator.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        with autocast():
            logits = self._d_logits(self.discriminator, inputs, fake)
        loss_g_gan = F.binary_cross_entropy_with_logits(
            logits.float(), torch.ones_like(logits.float())
        )
        loss_g_l1 = F.l1_loss(fake.float(), targets)
        loss_g = loss_g_gan + L1_WEIGHT * loss_g_l1
        step.backward_step(loss_g, opt_g)
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            loss = step.loss_fn(fake.detach().float(), targets)
        return {
            "loss": float(loss),
            "loss_g": float(loss_g.detach()),
            "loss_g_gan": float(loss_g_gan.detach()),
            "loss_g_l1": float(loss_g_l1.detach()),
            "loss_d": float(loss_d.detach()),
        }
