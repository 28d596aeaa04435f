"""Loss: eq. 5 equals eq. 3 on the decoded difference images; offsets per image/channel."""

from __future__ import annotations

import pytest
import torch

from pipeline.core.losses import centred_mse, make_loss, plain_mse, with_mask, with_ssim


def _eq3(y: torch.Tensor, t: torch.Tensor, bl_x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 written out: mean-centred MSE between y_d = BL(x) - 2y + 1 and t_d = BL(x) - 2t + 1.

    Per image: 1/(3N) sum over N pixels and 3 channels of ((t_d - y_d) - E[t_d - y_d])^2,
    the mean E per channel; then averaged over the batch. Done with explicit loops so it
    shares no code with the implementation.
    """
    y_d = bl_x - 2 * y + 1
    t_d = bl_x - 2 * t + 1
    n_img, channels, h, w = y.shape
    per_image = []
    for i in range(n_img):
        total = torch.zeros((), dtype=torch.float64)
        for c in range(channels):
            d = (t_d[i, c] - y_d[i, c]).double()
            total += ((d - d.mean()) ** 2).sum()
        per_image.append(total / (channels * h * w))
    return torch.stack(per_image).mean()


def test_eq5_equals_eq3_on_random_tensors():
    gen = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 8, 8), (4, 3, 16, 12), (2, 3, 5, 7)]:
        y = torch.rand(shape, generator=gen)
        t = torch.rand(shape, generator=gen)
        bl_x = torch.rand(shape, generator=gen)
        expected = _eq3(y, t, bl_x)
        assert float(centred_mse(y, t)) == pytest.approx(float(expected), rel=1e-5)


def test_eq5_by_hand():
    # One image, one channel of 2 pixels: t - y = (0.3, 0.1), mean 0.2, centred (0.1, -0.1);
    # 4/(1*2) * (0.01 + 0.01) = 0.04. Three identical channels give the same value.
    y = torch.tensor([0.2, 0.4]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    t = torch.tensor([0.5, 0.5]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    assert float(centred_mse(y, t)) == pytest.approx(0.04)
    assert float(plain_mse(y, t)) == pytest.approx((0.09 + 0.01) / 2)


def test_centred_loss_ignores_a_constant_offset_per_image_and_channel():
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(3, 3, 10, 10, generator=gen)
    t = torch.rand(3, 3, 10, 10, generator=gen)
    offset = torch.rand(3, 3, 1, 1, generator=gen) - 0.5  # differs per image and channel
    assert float(centred_mse(y + offset, t)) == pytest.approx(float(centred_mse(y, t)), rel=1e-5)
    assert float(plain_mse(y + offset, t)) > float(plain_mse(y, t)) + 1e-3
    # A perfect prediction up to the offset scores 0 with eq. 5 only.
    assert float(centred_mse(t + offset, t)) < 1e-10
    assert float(plain_mse(t + offset, t)) > 1e-3
    # An offset that varies over the image is not forgiven.
    ramp = torch.linspace(0, 0.5, 10).view(1, 1, 1, 10)
    assert float(centred_mse(t + ramp, t)) > 1e-3


def test_make_loss_and_gradients():
    assert make_loss(True) is centred_mse
    assert make_loss(False) is plain_mse
    y = torch.rand(2, 3, 4, 4, requires_grad=True)
    t = torch.rand(2, 3, 4, 4)
    centred_mse(y.to(torch.bfloat16), t).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    assert centred_mse(y, t).dtype == torch.float32


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differs"):
        centred_mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="N, C, H, W"):
        plain_mse(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))


def test_masked_losses_ignore_padding_and_centre_on_valid_pixels():
    """Padded pixels (mask 0) count neither as error nor in eq. 5's mean: y - t = 0.3 on the
    valid area and anything on the padding gives a centred loss of 0 and a plain MSE of
    0.09; an all-valid mask gives the unmasked losses."""
    t = torch.rand(2, 3, 8, 8)
    y = t + 0.3
    y[..., 5:] = torch.rand(2, 3, 8, 3) * 5  # padding: garbage
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :5] = 1.0
    assert float(centred_mse(y, t, mask)) == pytest.approx(0.0, abs=1e-10)
    assert float(plain_mse(y, t, mask)) == pytest.approx(0.09, rel=1e-5)
    assert float(centred_mse(y, t)) > 0.1
    # Per image, then over the images: image 1 all padding adds nothing.
    mask[1] = 0.0
    assert float(plain_mse(y, t, mask)) == pytest.approx(0.09, rel=1e-5)
    ones = torch.ones(2, 8, 8, dtype=torch.bool)  # (N, H, W) bool works too
    assert float(centred_mse(y, t, ones)) == pytest.approx(float(centred_mse(y, t)), rel=1e-5)
    assert float(plain_mse(y, t, ones)) == pytest.approx(float(plain_mse(y, t)), rel=1e-5)
    with pytest.raises(ValueError, match="mask shape"):
        plain_mse(y, t, torch.ones(2, 1, 4, 4))


def test_with_mask_binds_the_mask_for_the_training_step():
    t = torch.zeros(1, 3, 4, 4)
    y = torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0] = 1.0
    y[..., 1:] = 9.0
    assert float(with_mask(plain_mse, mask)(y, t)) == pytest.approx(1.0)
    assert with_mask(plain_mse, None) is plain_mse
    assert with_mask(plain_mse, torch.ones(1, 1, 4, 4)) is plain_mse  # nothing padded


@pytest.mark.parametrize("encoding", ["A", "C"])
def test_with_ssim_adds_the_reconstruction_ssim_term(encoding: str):
    from pipeline.core.encodings import reconstruct
    from pipeline.core.metrics import ssim

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=gen)
    t = 0.4 + 0.2 * torch.rand(2, 3, 24, 24, generator=gen)
    y = (t + 0.05 * torch.randn(2, 3, 24, 24, generator=gen)).requires_grad_()
    assert with_ssim(plain_mse, x, encoding, 0.0) is plain_mse
    combined = with_ssim(plain_mse, x, encoding, 0.5)
    # By hand: the MSE plus half of 1 - SSIM(reconstruction, preconditioned gt).
    pred, pgt = reconstruct(x, y, encoding).clamp(0, 1), reconstruct(x, t, encoding).clamp(0, 1)
    expected = plain_mse(y, t) + 0.5 * (1 - ssim(pred, pgt).mean())
    value = combined(y, t)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert float(value.detach()) > float(plain_mse(y, t).detach()) + 0.01
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # A perfect output: SSIM 1, the term vanishes.
    assert float(combined(t, t)) == pytest.approx(0.0, abs=1e-5)


def test_with_ssim_ignores_padded_pixels():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 32, 32, generator=gen)
    t = 0.4 + 0.2 * torch.rand(1, 3, 32, 32, generator=gen)
    y = t + 0.05 * torch.randn(1, 3, 32, 32, generator=gen)
    mask = torch.ones(1, 1, 32, 32)
    mask[..., :8] = 0  # a padded left border
    loss = with_ssim(with_mask(plain_mse, mask), x, "C", 0.5, mask)
    changed = y.clone()
    changed[..., :8] = torch.rand(1, 3, 32, 8, generator=gen)
    assert float(loss(changed, t)) == pytest.approx(float(loss(y, t)), abs=1e-6)
    unmasked = with_ssim(plain_mse, x, "C", 0.5)
    assert float(unmasked(changed, t)) > float(unmasked(y, t)) + 1e-3
