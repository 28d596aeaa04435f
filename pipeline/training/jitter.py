"""Random geometric jitter of training batches, on top of the augment stage's fixed variants.

The paper's augmentation (Sec. 4: 5 rotations x 2 framings x mirror) gives every pair the
same 20 variants in every epoch; with few subjects (13 in a Yale B split) the network then
memorises them within a few epochs. ``train.jitter`` draws a new small similarity transform
and mirror per image and batch instead: rotation within +-10 deg x j, scale within
exp(+-0.1 x j), shift within +-5 % x j of the side (j = the jitter strength), the same
transform for the flash image, the studio image and the validity mask, so the pair stays
aligned. Pixels that come from outside the crop are 0 and marked invalid in the mask (as the
crop stage pads: never mirrored, never counted by the loss).

The draws use torch's global generator, which the training checkpoint saves and restores:
a resumed run draws what an uninterrupted run would have.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 10.0  # at strength 1
MAX_LOG_SCALE = 0.1  # at strength 1: scale within exp(+-0.1), about +-10 %
MAX_SHIFT = 0.1  # at strength 1, in grid_sample units (the side spans 2): +-5 % of the side


def random_matrices(
    n: int, strength: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 2, 3) affine matrices for :func:`torch.nn.functional.affine_grid` (output ->
    input coordinates in [-1, 1]): a random rotation, scale, shift and, half the time, a
    horizontal mirror, each range scaled by ``strength``."""
    if strength < 0:
        raise ValueError(f"jitter strength must be >= 0, got {strength}")

    def uniform(limit: float, *shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(MAX_ROTATION_DEG) * strength, n)
    scale = torch.exp(uniform(MAX_LOG_SCALE * strength, n))
    shift = uniform(MAX_SHIFT * strength, n, 2)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    # The mirror flips the output's x axis before the rotation: x_in = R S^-1 (m x_out) + t.
    theta[:, 0, 0], theta[:, 0, 1] = cos * mirror, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * mirror, cos
    theta[:, :, 2] = shift
    return theta


def warp_batch(
    flash: torch.Tensor, studio: torch.Tensor, valid: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``flash``, ``studio`` (N,3,H,W) and ``valid`` (N,1,H,W) resampled (bilinear) with the
    matrices ``theta``; a pixel stays valid only when its whole bilinear footprint was valid
    and inside the image."""
    stack = torch.cat([flash, studio, valid.to(flash.dtype)], dim=1)
    grid = F.affine_grid(theta.to(flash.dtype), list(stack.shape), align_corners=False)
    out = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    channels = flash.shape[1]
    warped_valid = out[:, 2 * channels :] > 0.999
    return out[:, :channels], out[:, channels : 2 * channels], warped_valid.to(valid.dtype)


def jitter_batch(
    flash: torch.Tensor,
    studio: torch.Tensor,
    valid: torch.Tensor,
    strength: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training batch with a random transform per image (:func:`random_matrices`); the
    batch itself when ``strength`` is 0."""
    if strength == 0:
        return flash, studio, valid
    theta = random_matrices(flash.shape[0], strength, generator)
    return warp_batch(flash, studio, valid, theta)


__all__ = ["jitter_batch", "random_matrices", "warp_batch"]
