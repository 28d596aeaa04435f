"""Tests of pipeline/models/hdrnet.py: HDRNet's size, shapes and its identity start."""

from __future__ import annotations

import torch

from pipeline.models import build_model

TINY = 1 / 8  # tiny networks keep every test fast on 2 CPU cores


def test_hdrnet_parameter_count_and_shapes():
    with torch.device("meta"):  # shapes without memory or init cost
        count = sum(p.numel() for p in build_model("hdrnet", 1.0).parameters())
    assert count == 482_080
    assert abs(count - 0.48e6) / 0.48e6 < 0.05  # the paper, Sec. 5: about 0.48 M
    model = build_model("hdrnet", TINY).eval()
    x = torch.rand(2, 3, 40, 56)  # any size: the low-res branch resizes to 256
    with torch.no_grad():
        y = model(x)
        grid = model.coefficients(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert grid.shape == (2, 12, 8, 16, 16)  # 96 = 8 luma bins x 12 affine coefficients


def test_hdrnet_starts_as_identity_and_slices_a_constant_grid_exactly():
    model = build_model("hdrnet", TINY).eval()
    x = torch.rand(1, 3, 32, 32) * 0.8 + 0.1
    with torch.no_grad():
        assert float((model(x) - x).abs().mean()) < 0.1
        # With the prediction zeroed, every cell holds the bias: a 3x4 colour matrix applied
        # to every pixel after slicing, whatever the guide.
        model.predict.weight.zero_()
        matrix = torch.tensor([[0.5, 0.0, 0.0, 0.1], [0.0, 0.25, 0.0, 0.2], [0.1, 0.1, 0.1, 0.0]])
        model.predict.bias.copy_(matrix.flatten().repeat_interleave(8))
        expected = torch.einsum("ij,njhw->nihw", matrix[:, :3], x) + matrix[:, 3].view(1, 3, 1, 1)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
