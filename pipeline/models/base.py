"""The interface every network of the registry implements (one training loop serves them all).

An :class:`ImageModel` maps a batch of RGB images (N, 3, H, W) in [0, 1] to (N, 3, H, W) in
[0, 1]; which images these are (flash, BL(flash), difference targets) is the encoding's
business, not the model's. The model also owns its optimizers and its training step, so
pix2pix's GAN step plugs into the same loop as the supervised networks; the step gets the
trainer's networks, precision and loss in one :class:`StepContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Autocast = Callable[[], AbstractContextManager[Any]]


class AdamSettings(Protocol):
    """What configure_optimizers needs (``pipeline.config.AdamParams`` fits)."""

    lr: float
    beta1: float
    beta2: float
    eps: float


def make_adam(params: Any, adam: AdamSettings) -> torch.optim.Adam:
    """Adam with the given settings over ``params``."""
    return torch.optim.Adam(params, lr=adam.lr, betas=(adam.beta1, adam.beta2), eps=adam.eps)


@dataclass
class StepContext:
    """What the trainer hands a model's :meth:`ImageModel.training_step`, in one object (as
    Lightning's ``training_step(batch)`` reaches optimizers and precision through the trainer).

    ``nets``: the networks of :meth:`ImageModel.ddp_parts` as the trainer wrapped them
    (DistributedDataParallel, whose reducer only averages gradients of forward passes made
    through it, or the modules themselves); ``loss_fn``: this batch's loss (mask and SSIM term
    bound); ``autocast``: the trainer's mixed precision for forward passes; ``scaler``: its
    GradScaler (fp16 only), used by :meth:`backward_step`. The trainer owns both: after the
    step it calls :meth:`end_step`, once, as the documented pattern for several optimizers asks.
    """

    nets: Mapping[str, nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]
    loss_fn: Loss
    autocast: Autocast = nullcontext
    scaler: torch.amp.GradScaler | None = None

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """loss.backward() and optimizer.step(), through the GradScaler when there is one."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)

    def end_step(self) -> None:
        """After the model's step: the GradScaler's update (nothing without one)."""
        if self.scaler is not None:
            self.scaler.update()


class ImageModel(nn.Module):
    """Base of the registry's networks: images (N, 3, H, W) in [0, 1] -> same shape in [0, 1].

    Subclasses pass ``width`` (the channel multiplier) on, set ``size_multiple`` (input sides
    must be divisible by it) and implement ``forward``. ``arch`` is set by
    :func:`pipeline.models.registry.register_arch`; ``build_kwargs`` by
    :func:`pipeline.models.registry.build_model` (what rebuilds the same network from a model
    file).
    """

    arch: str = ""
    size_multiple: int = 1

    @classmethod
    def kwargs_for_size(cls, size: int) -> dict[str, Any]:
        """Constructor kwargs that fit the arch to ``size`` px inputs (none by default)."""
        return {}

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        # Every arch's channel multiplier (1.0 = the published network).
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)
        self.build_kwargs: dict[str, Any] = {}

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse inputs this network cannot take, with the reason."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"{self.arch or type(self).__name__}: expected (N, 3, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"{self.arch or type(self).__name__}: image sides must be multiples of "
                f"{self.size_multiple}, got {h}x{w}"
            )

    def configure_optimizers(self, adam: AdamSettings) -> dict[str, torch.optim.Optimizer]:
        """One Adam over all parameters, under the key "model"."""
        return {"model": make_adam(self.parameters(), adam)}

    def ddp_parts(self) -> dict[str, nn.Module]:
        """The networks a training step calls, by name; the training loop wraps each in its own
        DistributedDataParallel when several processes train. One network by default."""
        return {"model": self}

    def training_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, step: StepContext
    ) -> dict[str, float]:
        """One supervised step: zero_grad, forward under autocast, loss in float32, backward, step.

        Returns ``{"loss": value}`` (the loss before the step).
        """
        optimizer = step.optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        with step.autocast():
            outputs = step.nets["model"](inputs)
        loss = step.loss_fn(outputs.float(), targets.float())
        step.backward_step(loss, optimizer)
        return {"loss": float(loss.detach())}
