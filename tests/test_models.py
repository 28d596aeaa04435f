"""Networks: registry, shapes, parameter counts, encoder weights, training steps.

The model file is tested in tests/test_format.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipeline.config import ParamsError, validate_params
from pipeline.core.bilateral import bilateral_filter
from pipeline.core.encodings import ENCODINGS, make_target, network_input
from pipeline.core.losses import centred_mse, plain_mse
from pipeline.models import (
    AdamConfig,
    adam_defaults,
    adam_settings,
    available_archs,
    build_model,
    check_params,
)
from pipeline.models.base import StepContext
from pipeline.models.deepflash import DeepFlashNet, vgg16_state_dict

REPO = Path(__file__).resolve().parents[1]
# Tiny networks keep every test fast on 2 CPU cores.
TINY = {"deepflash": 1 / 16, "hdrnet": 1 / 8, "pix2pix": 1 / 16}
SIDE = {"deepflash": 64, "hdrnet": 48, "pix2pix": 256}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # Tiny tensors: one thread is as fast, and OpenMP threads crawl on a busy shared machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _full_size(arch: str, **kwargs) -> nn.Module:
    # On the meta device: shapes without memory or init cost.
    with torch.device("meta"):
        return build_model(arch, 1.0, **kwargs)


def test_registry():
    assert available_archs() == ("deepflash", "hdrnet", "pix2pix")
    with pytest.raises(ValueError, match="unknown model arch 'unet'.*deepflash, hdrnet, pix2pix"):
        build_model("unet")
    with pytest.raises(ValueError, match="'hdrnet' does not take encoder_weights"):
        build_model("hdrnet", encoder_weights="vgg16.pth")
    model = build_model("pix2pix", 0.0625, num_downs=5)
    assert model.arch == "pix2pix" and model.build_kwargs == {"width": 0.0625, "num_downs": 5}


def test_each_arch_declares_its_papers_adam_and_params_override_per_key():
    assert adam_defaults("deepflash") == AdamConfig(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8)
    assert adam_defaults("hdrnet") == AdamConfig(lr=1e-4)
    assert adam_defaults("pix2pix") == AdamConfig(lr=2e-4, beta1=0.5)
    params = validate_params({"train": {"optimizer": {"pix2pix": {"lr": 1e-3}}}})
    assert adam_settings("pix2pix", params.train.optimizer) == AdamConfig(lr=1e-3, beta1=0.5)
    assert adam_settings("hdrnet", params.train.optimizer) == AdamConfig(lr=1e-4)
    assert adam_settings("deepflash") == adam_defaults("deepflash")
    with pytest.raises(ValueError, match="train.optimizer.pix2pixx: unknown arch"):
        adam_settings("deepflash", {"pix2pixx": {"lr": 1.0}})


def test_params_naming_archs_are_checked_against_the_registry():
    check_params(
        validate_params({"model": {"arch": "hdrnet"}, "train": {"optimizer": {"hdrnet": {}}}})
    )
    with pytest.raises(
        ParamsError,
        match=r"^p.yaml: model.arch: unknown arch 'unet'; available: deepflash, hdrnet, pix2pix$",
    ):
        check_params(validate_params({"model": {"arch": "unet"}}), "p.yaml")
    with pytest.raises(ParamsError, match=r"^params.yaml: train.optimizer.hdrnett: unknown arch"):
        check_params(validate_params({"train": {"optimizer": {"hdrnett": {"lr": 1e-3}}}}))


def test_params_gate_stage_refuses_an_unknown_arch(tmp_path: Path) -> None:
    """stages/check_params.py asks the registry: exit 2, one line, no marker, no traceback."""
    (tmp_path / "params.yaml").write_text("model:\n  arch: unet\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "check_params.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "params.yaml: model.arch: unknown arch 'unet'; available: deepflash, hdrnet, pix2pix"
    ]
    assert not (tmp_path / "data" / "params.ok").exists()


# --- DeepFlash -------------------------------------------------------------------------------


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
    assert _count(_full_size("deepflash")) == expected


def test_deepflash_output_shape_and_range():
    model = build_model("deepflash", TINY["deepflash"]).eval()
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


# --- HDRNet ----------------------------------------------------------------------------------


def test_hdrnet_parameter_count_and_shapes():
    count = _count(_full_size("hdrnet"))
    assert count == 482_080
    assert abs(count - 0.48e6) / 0.48e6 < 0.05  # the paper, Sec. 5: about 0.48 M
    model = build_model("hdrnet", TINY["hdrnet"]).eval()
    x = torch.rand(2, 3, 40, 56)  # any size: the low-res branch resizes to 256
    with torch.no_grad():
        y = model(x)
        grid = model.coefficients(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert grid.shape == (2, 12, 8, 16, 16)  # 96 = 8 luma bins x 12 affine coefficients


def test_hdrnet_starts_as_identity_and_slices_a_constant_grid_exactly():
    model = build_model("hdrnet", TINY["hdrnet"]).eval()
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


# --- pix2pix ---------------------------------------------------------------------------------


def test_pix2pix_parameter_counts():
    model = _full_size("pix2pix")
    g, d = _count(model.generator), _count(model.discriminator)
    assert abs(g - 54.4e6) / 54.4e6 < 0.05 and abs(d - 2.8e6) / 2.8e6 < 0.05
    assert (g, d) == (54_413_955, 2_768_705)  # pix2pix's unet_256 and basic D, exactly


def test_pix2pix_shapes_and_size_multiple():
    model = build_model("pix2pix", TINY["pix2pix"]).eval()
    assert model.size_multiple == 256
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        y = model(x)
        patches = model.discriminator(torch.cat([x, y], 1))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert patches.shape == (1, 1, 30, 30)  # 70x70 receptive fields over a 256 image
    with pytest.raises(ValueError, match="multiples of 256, got 128x128"):
        model(torch.rand(1, 3, 128, 128))
    shallow = build_model("pix2pix", TINY["pix2pix"], num_downs=5).eval()
    assert shallow.size_multiple == 32
    assert shallow(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_pix2pix_init_is_normal_002():
    model = build_model("pix2pix", 0.25)
    weights = torch.cat(
        [m.weight.detach().flatten() for m in model.modules() if isinstance(m, nn.Conv2d)]
    )
    assert float(weights.mean()) == pytest.approx(0.0, abs=2e-3)
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05)


# --- training steps --------------------------------------------------------------------------


ADAM = SimpleNamespace(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8)
PIX2PIX_ADAM = SimpleNamespace(lr=2e-3, beta1=0.5, beta2=0.999, eps=1e-8)


def _tiny_batch(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    face = torch.stack([0.3 + 0.5 * xx, 0.2 + 0.4 * yy, 0.5 * (xx + yy)])
    flash = (face + 0.05 * torch.rand(2, 3, side, side, generator=gen)).clamp(0, 1)
    studio = (0.7 * flash + 0.1 + 0.1 * yy).clamp(0, 1)
    return flash, studio


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("arch", ["deepflash", "hdrnet", "pix2pix"])
def test_a_few_steps_reduce_the_loss(arch, encoding):
    torch.manual_seed(0)
    side = SIDE[arch]
    flash, studio = _tiny_batch(side)
    blur = lambda im: bilateral_filter(im, side * 0.03, 0.4)  # noqa: E731
    inputs = network_input(flash, encoding, blur)
    targets = make_target(flash, studio, encoding, blur)
    model = build_model(arch, TINY[arch])
    model.train()
    optimizers = model.configure_optimizers(PIX2PIX_ADAM if arch == "pix2pix" else ADAM)
    # Centred loss for the difference encodings (the paper), plain MSE for A.
    loss_fn = plain_mse if encoding == "A" else centred_mse
    steps = 6 if arch == "pix2pix" else 8
    step = StepContext(model.ddp_parts(), optimizers, loss_fn)
    losses = []
    for _ in range(steps):
        stats = model.training_step(inputs, targets, step)
        assert set(stats) >= {"loss"} and all(math.isfinite(v) for v in stats.values())
        losses.append(stats["loss"])
    assert losses[-1] < 0.8 * losses[0], losses
    if arch == "pix2pix":
        assert set(stats) == {"loss", "loss_g", "loss_g_gan", "loss_g_l1", "loss_d"}


def test_training_step_under_bf16_autocast_and_grad_scaler():
    flash, studio = _tiny_batch(64)
    for arch in ("deepflash", "hdrnet", "pix2pix"):
        kwargs = {"num_downs": 6} if arch == "pix2pix" else {}
        model = build_model(arch, TINY[arch], **kwargs).train()
        optimizers = model.configure_optimizers(ADAM)
        before = [p.detach().clone() for p in model.parameters()]
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        bf16 = StepContext(model.ddp_parts(), optimizers, centred_mse, autocast)
        stats = model.training_step(flash, studio, bf16)
        assert math.isfinite(stats["loss"])
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
        scaled = StepContext(model.ddp_parts(), optimizers, plain_mse, scaler=scaler)
        for _ in range(2):  # the trainer's end_step lets the scaler step the optimizers again
            stats = model.training_step(flash, studio, scaled)
            scaled.end_step()
        assert math.isfinite(stats["loss"])
        changed = sum(
            not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)
        )
        assert changed > 0.9 * len(before), f"{arch}: only {changed}/{len(before)} tensors updated"


@pytest.mark.parametrize(("size", "downs"), [(64, 6), (128, 7), (256, 8), (512, 8)])
def test_pix2pix_depth_fits_the_training_size(size, downs):
    """build_model(size=...) gives pix2pix a U-Net as deep as the size allows (max 8, as unet_256)."""
    model = build_model("pix2pix", width=1 / 64, size=size)
    assert model.build_kwargs["num_downs"] == downs
    assert size % model.size_multiple == 0
    out = model(torch.rand(1, 3, size, size))
    assert out.shape == (1, 3, size, size)


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
