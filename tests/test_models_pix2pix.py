"""Tests of pipeline/models/pix2pix.py: generator and discriminator sizes, shapes, init and
the U-Net depth per training size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models import build_model

TINY = 1 / 16  # tiny networks keep every test fast on 2 CPU cores


def test_pix2pix_parameter_counts():
    with torch.device("meta"):  # shapes without memory or init cost
        model = build_model("pix2pix", 1.0)
    g, d = (
        sum(p.numel() for p in net.parameters()) for net in (model.generator, model.discriminator)
    )
    assert abs(g - 54.4e6) / 54.4e6 < 0.05 and abs(d - 2.8e6) / 2.8e6 < 0.05
    assert (g, d) == (54_413_955, 2_768_705)  # pix2pix's unet_256 and basic D, exactly


def test_pix2pix_shapes_and_size_multiple():
    model = build_model("pix2pix", TINY).eval()
    assert model.size_multiple == 256
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        y = model(x)
        patches = model.discriminator(torch.cat([x, y], 1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert patches.shape == (1, 1, 30, 30)  # 70x70 receptive fields over a 256 image
    with pytest.raises(ValueError, match="multiples of 256, got 128x128"):
        model(torch.rand(1, 3, 128, 128))
    shallow = build_model("pix2pix", TINY, num_downs=5).eval()
    assert shallow.size_multiple == 32
    assert shallow(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_pix2pix_init_is_normal_002():
    model = build_model("pix2pix", 0.25)
    weights = torch.cat(
        [m.weight.detach().flatten() for m in model.modules() if isinstance(m, nn.Conv2d)]
    )
    assert float(weights.mean()) == pytest.approx(0.0, abs=2e-3)
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize(("size", "downs"), [(64, 6), (128, 7), (256, 8), (512, 8)])
def test_pix2pix_depth_fits_the_training_size(size, downs):
    """build_model(size=...) gives pix2pix a U-Net as deep as the size allows (max 8, as unet_256)."""
    model = build_model("pix2pix", width=1 / 64, size=size)
    assert model.build_kwargs["num_downs"] == downs
    assert size % model.size_multiple == 0
    out = model(torch.rand(1, 3, size, size))
    assert out.shape == (1, 3, size, size)
