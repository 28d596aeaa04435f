"""HDRNet (Gharbi et al. 2017, "Deep bilateral learning for real-time image enhancement").

Defaults of HDRNet (Gharbi et al. 2017), the paper's Sec. 5 baseline, 0.48 M parameters at width 1.0:

- low-resolution branch on the input resized to 256x256 (bilinear, antialiased);
- splat: 4 stride-2 3x3 convs with 8, 16, 32, 64 channels (ReLU): 256 -> 16x16;
- global path: 2 stride-2 3x3 convs (64) -> 4x4, then fully connected 1024 -> 256 -> 128 -> 64
  (ReLU, the last one linear);
- local path: 3x3 conv (64, ReLU), 3x3 conv (64, linear, no bias);
- fusion ReLU(local + global) and a 1x1 conv to 96 = 8 luma bins x 12 coefficients: a 16x16x8
  bilateral grid of 3x4 affine colour transforms;
- guide at full resolution: 3x3 colour matrix (+ bias), 16-knot piecewise-linear curve per
  channel (sum of slope * ReLU(c - shift)), 1x1 mix to one channel, clamped to [0, 1];
- slicing: trilinear ``F.grid_sample`` of the grid at (x, y, guide) for every full-resolution
  pixel (plain PyTorch, any device), then the sliced 3x4 affine applied to the input pixel.

The output is clamped to [0, 1]. The grid starts as the identity transform (prediction bias =
identity, weights scaled by 0.1), so the untrained network passes its input through.
``width`` multiplies the hidden channel counts (the grid's 96 outputs are fixed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import ImageModel
from pipeline.models.deepflash import scaled
from pipeline.models.registry import AdamConfig, register_arch


class Guide(nn.Module):
    """Pixel-wise learned guide: colour matrix, per-channel piecewise-linear curves, 1x1 mix."""

    def __init__(self, knots: int = 16) -> None:
        super().__init__()
        self.ccm = nn.Parameter(torch.eye(3))
        self.ccm_bias = nn.Parameter(torch.zeros(3))
        self.shifts = nn.Parameter(torch.linspace(0, 1, knots + 1)[:-1].repeat(3, 1))
        slopes = torch.zeros(3, knots)
        slopes[:, 0] = 1.0  # identity curve: ReLU(c - 0)
        self.slopes = nn.Parameter(slopes)
        self.mix = nn.Conv2d(3, 1, 1)
        nn.init.constant_(self.mix.weight, 1.0 / 3.0)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1, H, W) guide in [0, 1]."""
        c = torch.einsum("ij,njhw->nihw", self.ccm, x) + self.ccm_bias.view(1, 3, 1, 1)
        # sum_k slope_k * ReLU(c - shift_k), per channel
        curves = (
            self.slopes.view(1, 3, -1, 1, 1)
            * F.relu(c.unsqueeze(2) - self.shifts.view(1, 3, -1, 1, 1))
        ).sum(2)
        return self.mix(curves).clamp(0.0, 1.0)


# Gharbi et al. 2017 train with Adam at lr 1e-4.
@register_arch("hdrnet", adam=AdamConfig(lr=1e-4))
class HDRNet(ImageModel):
    """HDRNet with the paper's defaults; works at any input size (the base's size_multiple 1)."""

    def __init__(
        self,
        width: float = 1.0,
        lowres: int = 256,
        grid_size: int = 16,
        luma_bins: int = 8,
        curve_knots: int = 16,
    ) -> None:
        super().__init__(width)
        n_splat = int(round(math.log2(lowres / grid_size)))
        if 2**n_splat * grid_size != lowres or lowres < 4 * grid_size:
            raise ValueError(
                f"lowres {lowres} must be grid_size {grid_size} times a power of 2 >= 4"
            )
        self.lowres, self.grid_size, self.luma_bins = lowres, grid_size, luma_bins
        features = scaled(8 * luma_bins, width)  # 64

        splat: list[nn.Module] = []
        in_ch = 3
        for i in range(n_splat):
            out_ch = scaled(8 * 2**i, width) if i < n_splat - 1 else features
            splat += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.splat = nn.Sequential(*splat)

        self.global_conv = nn.Sequential(
            nn.Conv2d(features, features, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        flat = features * (grid_size // 4) ** 2
        self.global_fc = nn.Sequential(
            nn.Linear(flat, scaled(256, width)),
            nn.ReLU(inplace=True),
            nn.Linear(scaled(256, width), scaled(128, width)),
            nn.ReLU(inplace=True),
            nn.Linear(scaled(128, width), features),
        )
        self.local = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1, bias=False),
        )
        self.predict = nn.Conv2d(features, luma_bins * 12, 1)
        self.guide = Guide(curve_knots)
        with torch.no_grad():
            # Start as the identity colour transform in every cell (channel = coeff * bins + bin).
            self.predict.weight.mul_(0.1)
            identity = torch.zeros(3, 4)
            identity[:, :3] = torch.eye(3)
            self.predict.bias.copy_(identity.flatten().repeat_interleave(luma_bins))

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """The bilateral grid of affine coefficients: (N, 12, bins, grid, grid)."""
        low = F.interpolate(
            x, size=(self.lowres, self.lowres), mode="bilinear", antialias=True, align_corners=False
        )
        splat = self.splat(low)
        glob = self.global_fc(self.global_conv(splat).flatten(1))
        fused = F.relu(self.local(splat) + glob[:, :, None, None])
        grid = self.predict(fused)
        n = grid.shape[0]
        return grid.view(n, 12, self.luma_bins, self.grid_size, self.grid_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        self.check_input(x)
        n, _, h, w = x.shape
        grid = self.coefficients(x).float()
        guide = self.guide(x.float())  # (N, 1, H, W)
        # grid_sample coordinates in [-1, 1], align_corners=False: pixel centres and guide
        # values map to cell centres exactly as HDRNet's slicing op.
        ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w * 2 - 1
        gx = xs.view(1, 1, w).expand(n, h, w)
        gy = ys.view(1, h, 1).expand(n, h, w)
        gz = guide[:, 0] * 2 - 1
        where = torch.stack([gx, gy, gz], dim=-1).unsqueeze(1)  # (N, 1, H, W, 3) = (x, y, z)
        coeffs = F.grid_sample(
            grid, where, mode="bilinear", padding_mode="border", align_corners=False
        )
        coeffs = coeffs.view(n, 3, 4, h, w)
        xf = x.float()
        out = (coeffs[:, :, :3] * xf.unsqueeze(1)).sum(2) + coeffs[:, :, 3]
        return out.clamp(0.0, 1.0)
