"""DeepFlash network (Capece et al. 2019): VGG-16 encoder + HDRCNN-style decoder.

Encoder: the 13 convolution layers of VGG-16 (3x3, ReLU) in 5 blocks of 2, 2, 3, 3, 3 layers,
each block followed by 2x2 max pooling (64, 128, 256, 512, 512 channels). Bottleneck: 3x3
conv + batch norm + ReLU at 1/32 resolution. Decoder after Eilertsen et al. 2017 (HDRCNN):
per level a 4x4 stride-2 transposed convolution + batch norm + LeakyReLU(0.2) doubles the
resolution, is concatenated with the output of the matching VGG block and fused by a 1x1
convolution; a last 1x1 convolution over [decoder features, input image] (HDRCNN's input skip)
gives 3 channels, and a sigmoid the [0, 1] output. Init: decoder truncated normal (He-scaled,
cut at 2 std), last layer Xavier; encoder He normal unless weights are loaded.

``width`` multiplies every channel count (1.0 = the paper's network, 29.4 M parameters).
Encoder weights come from a local file (``encoder_weights``): a torchvision VGG-16 state dict
(``features.N.weight``) or a converted VGG-Face one (``conv1_1.weight``, ...), matched by conv
layer order; the input normalisation follows the weights (ImageNet mean/std, or VGG-Face's
0-255 mean subtraction).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.models.base import ImageModel
from pipeline.models.integrity import OBJECTS_REFUSED, refused_objects
from pipeline.models.registry import AdamConfig, register_arch

VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
# Input normalisations: (mean, std) applied to RGB in [0, 1].
NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # VGG-Face (Parkhi et al. 2015): 0-255 RGB minus the average face colour, no scaling.
    "vggface": ((129.1863 / 255, 104.7624 / 255, 93.5940 / 255), (1 / 255, 1 / 255, 1 / 255)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def _trunc_normal_he(weight: torch.Tensor, fan_in: int) -> None:
    std = math.sqrt(2.0 / fan_in)
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


# Last-layer init: "xavier" (the paper) or "zero" (start as the identity for encodings B, C).
HEAD_INITS = ("xavier", "zero")


class DecoderLevel(nn.Module):
    """4x4 stride-2 transposed conv + BN + LeakyReLU(0.2), concat with the skip, 1x1 fuse."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.fuse = nn.Conv2d(out_channels + skip_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample x by 2 and fuse it with the encoder's skip features."""
        x = self.act(self.bn(self.up(x)))
        return self.fuse(torch.cat([x, skip], dim=1))


# The paper (Sec. 3): Adam, lr 1e-5, betas (0.9, 0.999), eps 1e-8.
@register_arch("deepflash", adam=AdamConfig(lr=1e-5))
class DeepFlashNet(ImageModel):
    """VGG-16 encoder + HDRCNN decoder; sides must be multiples of 32."""

    size_multiple = 32

    def __init__(
        self,
        width: float = 1.0,
        encoder_weights: str | os.PathLike | None = None,
        input_norm: str = "auto",
        head_init: str = "xavier",
    ) -> None:
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, got {head_init!r}")
        super().__init__(width)
        self.head_init = head_init
        if input_norm != "auto" and input_norm not in NORMS:
            raise ValueError(
                f"input_norm must be 'auto' or one of {sorted(NORMS)}, got {input_norm!r}"
            )
        mean, std = NORMS["imagenet" if input_norm == "auto" else input_norm]
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))

        self.blocks = nn.ModuleList()
        in_ch = 3
        for block in VGG16_BLOCKS:
            layers: list[nn.Module] = []
            for channels in block:
                out_ch = scaled(channels, width)
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = out_ch
            self.blocks.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2)
        skips = [scaled(block[-1], width) for block in VGG16_BLOCKS]

        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.ModuleList()
        for skip in reversed(skips):  # 512, 512, 256, 128, 64 at width 1
            self.decoder.append(DecoderLevel(in_ch, skip, skip))
            in_ch = skip
        self.head = nn.Conv2d(in_ch + 3, 3, 1)
        self._init_weights()
        if encoder_weights is not None:
            norm = load_encoder_weights(self, encoder_weights)
            if input_norm == "auto":
                mean, std = NORMS[norm]
                self.input_mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
                self.input_std.copy_(torch.tensor(std).view(1, 3, 1, 1))

    def encoder_convs(self) -> list[nn.Conv2d]:
        """The 13 VGG-16 convolutions in order."""
        return [m for block in self.blocks for m in block if isinstance(m, nn.Conv2d)]

    def _init_weights(self) -> None:
        for conv in self.encoder_convs():
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for module in [*self.bottleneck.modules(), *self.decoder.modules()]:
            if isinstance(module, nn.Conv2d):
                _trunc_normal_he(
                    module.weight,
                    module.in_channels * module.kernel_size[0] * module.kernel_size[1],
                )
            elif isinstance(module, nn.ConvTranspose2d):
                # Each output pixel of a stride-2 4x4 transposed conv sees 2x2 taps per channel.
                _trunc_normal_he(module.weight, module.in_channels * 4)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if getattr(module, "bias", None) is not None and not isinstance(module, nn.BatchNorm2d):
                nn.init.zeros_(module.bias)
        if self.head_init == "zero":
            # sigmoid(0) = 0.5 is the target of "no change" for encodings B and C, so the
            # untrained network is exactly the identity and learns only what improves on it.
            nn.init.zeros_(self.head.weight)
        else:
            nn.init.xavier_uniform_(self.head.weight)  # the paper
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        self.check_input(x)
        h = (x - self.input_mean) / self.input_std
        skips = []
        for block in self.blocks:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            h = level(h, skip)
        return torch.sigmoid(self.head(torch.cat([h, x.to(h.dtype)], dim=1)))


def _natural_key(key: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def load_encoder_weights(model: DeepFlashNet, path: str | os.PathLike) -> str:
    """Load the 13 VGG-16 conv layers from a local state dict; returns the input norm to use.

    Accepts a torchvision VGG-16 (``features.0.weight`` ...; the classifier is ignored) or a
    converted VGG-Face (``conv1_1.weight`` ... ``conv5_3.weight``) state dict, optionally
    wrapped in ``{"state_dict": ...}``: the first 13 four-dimensional weights in natural key
    order are the conv layers, each with the bias of the same prefix. Raises ``ValueError``
    naming the file and the layer when a shape does not match the model's (e.g. a width other
    than 1.0).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: encoder weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # in our words: torch's would suggest weights_only=False
        reason = OBJECTS_REFUSED if refused_objects(error) else "unreadable by torch.load"
        raise ValueError(f"{path}: not a torch state dict ({reason})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(
            f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}"
        )
    weights = [
        k
        for k in sorted(state, key=_natural_key)
        if k.endswith("weight") and isinstance(state[k], torch.Tensor) and state[k].ndim == 4
    ]
    convs = model.encoder_convs()
    if len(weights) < len(convs):
        raise ValueError(
            f"{path}: has {len(weights)} convolution weights, VGG-16 needs {len(convs)}"
        )
    with torch.no_grad():
        for index, (key, conv) in enumerate(zip(weights, convs, strict=False), start=1):
            bias_key = key[: -len("weight")] + "bias"
            weight = state[key]
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise ValueError(
                    f"{path}: conv layer {index} ({key}) has shape {tuple(weight.shape)}, the "
                    f"encoder needs {tuple(conv.weight.shape)} (width {model.width})"
                )
            if bias_key not in state or tuple(state[bias_key].shape) != tuple(conv.bias.shape):
                raise ValueError(
                    f"{path}: conv layer {index} ({key}) has no matching bias {bias_key}"
                )
            conv.weight.copy_(weight)
            conv.bias.copy_(state[bias_key])
    return "vggface" if weights[0].startswith("conv1_1") else "imagenet"


# Positions of the 13 convolutions in torchvision's ``vgg16().features`` (ReLU and pooling
# layers take the other indices).
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def vgg16_state_dict(model: DeepFlashNet) -> dict[str, torch.Tensor]:
    """The encoder's weights as a torchvision VGG-16 ``features.N.*`` state dict."""
    state: dict[str, torch.Tensor] = {}
    for index, conv in zip(TORCHVISION_CONV_INDICES, model.encoder_convs(), strict=True):
        state[f"features.{index}.weight"] = conv.weight.detach().cpu().clone()
        state[f"features.{index}.bias"] = conv.bias.detach().cpu().clone()
    return state
