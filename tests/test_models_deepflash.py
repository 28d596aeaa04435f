"""Tests of pipeline/models/deepflash.py: the paper's network, its init and encoder weights."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from pipeline.models import build_model
from pipeline.models.deepflash import DeepFlashNet, vgg16_state_dict

TINY = 1 / 16  # tiny networks keep every test fast on 2 CPU cores


def test_deepflash_parameter_count_from_the_layer_table():
    conv3 = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731 - 3x3 conv with bias
    # VGG-16 features: 2 + 2 + 3 + 3 + 3 convolutions.
    encoder = (
        conv3(3, 64)
        + conv3(64, 64)
        + conv3(64, 128)
        + conv3(128, 128)
        + conv3(128, 256)
        + 2 * conv3(256, 256)
        + conv3(256, 512)
        + 2 * conv3(512, 512)
        + 3 * conv3(512, 512)
    )
    assert encoder == 14_714_688  # torchvision's vgg16().features
    bottleneck = 512 * 512 * 9 + 2 * 512  # 3x3 conv without bias (BN follows) + BN
    # Decoder level (in, skip, out): 4x4 transposed conv (no bias) + BN + 1x1 fuse with bias.
    level = lambda cin, skip, cout: cin * cout * 16 + 2 * cout + (cout + skip) * cout + cout  # noqa: E731
    decoder = (
        level(512, 512, 512)  # 1/32 -> 1/16, skip block 5
        + level(512, 512, 512)  # -> 1/8, skip block 4
        + level(512, 256, 256)  # -> 1/4, skip block 3
        + level(256, 128, 128)  # -> 1/2, skip block 2
        + level(128, 64, 64)  # -> 1/1, skip block 1
    )
    head = (64 + 3) * 3 + 3  # 1x1 conv over [features, input image] -> RGB
    expected = encoder + bottleneck + decoder + head
    assert expected == 29_441_356
    with torch.device("meta"):  # shapes without memory or init cost
        model = build_model("deepflash", 1.0)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_deepflash_output_shape_and_range():
    model = build_model("deepflash", TINY).eval()
    for h, w in [(32, 32), (64, 96), (96, 64)]:
        x = torch.rand(2, 3, h, w)
        with torch.no_grad():
            y = model(x)
        assert y.shape == x.shape
        assert float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(ValueError, match="multiples of 32, got 48x64"):
        model(torch.rand(1, 3, 48, 64))


def test_deepflash_init():
    model = build_model("deepflash", 0.25)
    up = model.decoder[0].up.weight.detach()
    std = math.sqrt(2.0 / (up.shape[0] * 4))
    assert float(up.abs().max()) <= 2 * std + 1e-6  # truncated normal, cut at 2 std
    assert float(up.std()) == pytest.approx(std * 0.88, rel=0.1)  # std of N(0,1) cut at +-2
    head = model.head.weight.detach()  # Xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6.0 / (head.shape[1] + head.shape[0]))
    assert float(head.abs().max()) <= bound


def test_encoder_weights_load_back_torchvision_layout(tmp_path):
    source = build_model("deepflash", 0.125)
    state = vgg16_state_dict(source)
    state["classifier.0.weight"] = torch.zeros(10, 20)  # 2-D: ignored, as VGG's classifier
    state["classifier.0.bias"] = torch.zeros(10)
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = build_model("deepflash", 0.125, encoder_weights=str(path))
    for ours, theirs in zip(model.encoder_convs(), source.encoder_convs(), strict=True):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    assert torch.allclose(model.input_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    # The weights file is not needed to rebuild the model from a model file.
    assert "encoder_weights" not in model.build_kwargs


def test_encoder_weights_vggface_layout(tmp_path):
    source = build_model("deepflash", 0.125)
    names = [
        "conv1_1",
        "conv1_2",
        "conv2_1",
        "conv2_2",
        "conv3_1",
        "conv3_2",
        "conv3_3",
        "conv4_1",
        "conv4_2",
        "conv4_3",
        "conv5_1",
        "conv5_2",
        "conv5_3",
    ]
    state = {}
    for name, conv in zip(reversed(names), reversed(source.encoder_convs()), strict=True):
        state[f"{name}.weight"] = conv.weight.detach().clone()  # reversed insertion order
        state[f"{name}.bias"] = conv.bias.detach().clone()
    state["fc6.weight"] = torch.zeros(4, 8)
    path = tmp_path / "vgg_face.pth"
    torch.save({"state_dict": state}, path)
    model = DeepFlashNet(0.125, encoder_weights=path)
    assert torch.equal(model.encoder_convs()[10].weight, source.encoder_convs()[10].weight)
    # VGG-Face input: 0-255 RGB minus the mean face colour.
    assert float(model.input_std[0, 0]) == pytest.approx(1 / 255)
    assert float(model.input_mean[0, 0]) * 255 == pytest.approx(129.1863, abs=1e-3)


def test_encoder_weights_errors(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(vgg16_state_dict(build_model("deepflash", 0.25)), path)
    with pytest.raises(
        ValueError, match=r"conv layer 1 \(features.0.weight\) has shape \(16, 3, 3, 3\)"
    ):
        build_model("deepflash", 0.125, encoder_weights=str(path))
    with pytest.raises(ValueError, match="not found"):
        build_model("deepflash", 0.125, encoder_weights=str(tmp_path / "missing.pth"))
    short = tmp_path / "short.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, short)
    with pytest.raises(ValueError, match="has 1 convolution weights, VGG-16 needs 13"):
        build_model("deepflash", 0.125, encoder_weights=str(short))
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": SimpleNamespace(evil=True)}, pickled)
    with pytest.raises(ValueError) as caught:  # our words, never torch's weights_only advice
        build_model("deepflash", 0.125, encoder_weights=str(pickled))
    assert str(caught.value) == (
        f"{pickled}: not a torch state dict (it holds Python objects other than tensors and "
        "plain values)"
    )
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(
        ValueError, match=r"junk\.pth: not a torch state dict \(unreadable by torch\.load\)$"
    ):
        build_model("deepflash", 0.125, encoder_weights=str(junk))


def test_zero_head_init_starts_as_the_identity_for_encodings_b_and_c():
    """head_init='zero': y = 0.5 everywhere, so eq. 2 gives back the flash image exactly."""
    from pipeline.core.encodings import reconstruct

    model = build_model("deepflash", width=1 / 16, head_init="zero").eval()
    x = torch.rand(2, 3, 64, 64)
    y = model(x)
    assert torch.equal(y, torch.full_like(y, 0.5))
    for encoding in ("B", "C"):
        assert torch.allclose(reconstruct(x, y, encoding), x, atol=1e-6)
    xavier = build_model("deepflash", width=1 / 16).eval()
    assert not torch.allclose(xavier(x), torch.full_like(y, 0.5))
    with pytest.raises(ValueError, match="head_init"):
        build_model("deepflash", width=1 / 16, head_init="ones")
