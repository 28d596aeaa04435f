"""Training losses: the paper's mean-centred loss (eq. 5) and plain MSE.

Eq. 5 (Capece et al. 2019): ``L = 4/(3N) * sum_i ((t_i - y_i) + E[y_i - t_i])^2`` over the N
pixels and 3 channels of an image, the expectation taken per image and channel. It is the
mean-centred MSE between the decoded difference images (eq. 3, see tests/test_losses.py):
with ``y_d = BL(x) - 2y + 1`` and ``t_d = BL(x) - 2t + 1``, ``t_d - y_d = 2 (y - t)``, so

    1/(3N) sum ((t_d - y_d) - E[t_d - y_d])^2 = 1/(3N) sum (2 (y - t) - 2 E[y - t])^2
                                              = 4/(3N) sum ((t - y) + E[y - t])^2.

A constant offset per image and channel (a global colour cast of the difference image) costs
nothing: the paper leaves overall brightness to the flash image x in the reconstruction.
Over a batch the per-image losses are averaged. Losses run in float32 whatever the autocast
dtype of the network output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(y: torch.Tensor, t: torch.Tensor) -> None:
    if y.shape != t.shape:
        raise ValueError(
            f"output shape {tuple(y.shape)} differs from target shape {tuple(t.shape)}"
        )
    if y.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got {tuple(y.shape)}")


def centred_mse(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 5: 4 x the MSE of (t - y) after removing its mean per image and channel (scalar)."""
    _check(y, t)
    diff = t.float() - y.float()
    diff = diff - diff.mean(dim=(2, 3), keepdim=True)
    return 4.0 * diff.square().mean()


def plain_mse(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean squared error between output and target, no centring (scalar)."""
    _check(y, t)
    return (t.float() - y.float()).square().mean()


def make_loss(centred: bool) -> Loss:
    """The loss of ``loss.centred``: eq. 5 when True, plain MSE when False."""
    return centred_mse if centred else plain_mse
