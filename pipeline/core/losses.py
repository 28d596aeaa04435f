"""Training losses: the paper's mean-centred loss (eq. 5) and plain MSE.

Eq. 5 (Capece et al. 2019): ``L = 4/(3N) * sum_i ((t_i - y_i) + E[y_i - t_i])^2`` over the N
pixels and 3 channels of an image, the expectation taken per image and channel. It is the
mean-centred MSE between the decoded difference images (eq. 3, see tests/test_core_losses.py):
with ``y_d = BL(x) - 2y + 1`` and ``t_d = BL(x) - 2t + 1``, ``t_d - y_d = 2 (y - t)``, so

    1/(3N) sum ((t_d - y_d) - E[t_d - y_d])^2 = 1/(3N) sum (2 (y - t) - 2 E[y - t])^2
                                              = 4/(3N) sum ((t - y) + E[y - t])^2.

A constant offset per image and channel (a global colour cast of the difference image) costs
nothing: the paper leaves overall brightness to the flash image x in the reconstruction.
Over a batch the per-image losses are averaged. Losses run in float32 whatever the autocast
dtype of the network output.

A validity mask (``mask``: 1 where the crop shows the photo, 0 on padding) restricts both the
sums and the means to the valid pixels of each image: padded pixels carry no scene, so they
must neither count as error nor shift the per-image mean that eq. 5 removes. Without a mask
(or with an all-ones one) the losses are the plain formulas above.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(y: torch.Tensor, t: torch.Tensor) -> None:
    if y.shape != t.shape:
        raise ValueError(
            f"output shape {tuple(y.shape)} differs from target shape {tuple(t.shape)}"
        )
    if y.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got {tuple(y.shape)}")


def _weights(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A validity mask ((N, H, W) or (N, 1, H, W), bool or 0/1) as float (N, 1, H, W)."""
    weights = mask.to(device=like.device, dtype=torch.float32)
    if weights.ndim == 3:
        weights = weights[:, None]
    n, _, h, w = like.shape
    if weights.shape != (n, 1, h, w):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images {tuple(like.shape)}")
    return weights


def _masked_mean(per_pixel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the valid pixels and channels of each image, then over the images that have
    any valid pixel (an all-padding image adds nothing)."""
    count = weights.sum(dim=(1, 2, 3)) * per_pixel.shape[1]
    per_image = (per_pixel * weights).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)
    has_pixels = (count > 0).float()
    return (per_image * has_pixels).sum() / has_pixels.sum().clamp_min(1.0)


def centred_mse(y: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5: 4 x the MSE of (t - y) after removing its mean per image and channel (scalar);
    over the valid pixels of ``mask`` when given (mean and error both)."""
    _check(y, t)
    diff = t.float() - y.float()
    if mask is None:
        diff = diff - diff.mean(dim=(2, 3), keepdim=True)
        return 4.0 * diff.square().mean()
    weights = _weights(mask, diff)
    count = weights.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    diff = diff - (diff * weights).sum(dim=(2, 3), keepdim=True) / count
    return 4.0 * _masked_mean(diff.square(), weights)


def plain_mse(y: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between output and target, no centring (scalar); over the valid
    pixels of ``mask`` when given."""
    _check(y, t)
    squared = (t.float() - y.float()).square()
    if mask is None:
        return squared.mean()
    return _masked_mean(squared, _weights(mask, squared))


def with_mask(loss: Loss, mask: torch.Tensor | None) -> Loss:
    """``loss`` restricted to the valid pixels of ``mask`` (a batch's validity masks), in the
    two-argument form the models' training steps call; ``loss`` itself when ``mask`` is None
    or all valid."""
    if mask is None or bool(mask.all()):
        return loss  # nothing padded: the plain formula, bit for bit
    return partial(loss, mask=mask)


def with_ssim(
    loss: Loss, flash: torch.Tensor, encoding: str, weight: float, mask: torch.Tensor | None = None
) -> Loss:
    """``loss`` + ``weight`` x (1 - SSIM) of the reconstruction (eq. 2) against the
    preconditioned ground truth (eq. 8), both clipped to [0, 1] as they are shown, over the
    valid pixels of ``mask``; ``flash`` is the batch's x. ``loss`` itself when ``weight`` is 0.

    The MSE of the output is the PSNR of the reconstruction; SSIM weighs local contrast and
    structure, which a few training faces teach poorly through the MSE alone (measured on
    Extended Yale B, README). Validation keeps reporting the plain loss.
    """
    if weight == 0:
        return loss
    from pipeline.core.encodings import preconditioned_ground_truth, reconstruct
    from pipeline.core.metrics import ssim

    valid = None if mask is None or bool(mask.all()) else mask

    def combined(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = flash.float()
        pred = reconstruct(x, y.float(), encoding).clamp(0, 1)
        target = preconditioned_ground_truth(x, t.float(), encoding).clamp(0, 1)
        return loss(y, t) + weight * (1.0 - ssim(pred, target, valid).mean())

    return combined


def make_loss(centred: bool) -> Loss:
    """The loss of ``loss.centred``: eq. 5 when True, plain MSE when False."""
    return centred_mse if centred else plain_mse
