"""Metrics: accuracy (eq. 7) by hand, SSIM/PSNR against scikit-image (torchmetrics' SSIM and
the paper's MATLAB convention), summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from pipeline.core.metrics import accuracy, psnr, ssim, ssim_matlab, ssim_matlab_map, summarise


def test_accuracy_eq7_by_hand():
    # |y - t| = 0.05 everywhere in image 0 -> |t_d - y_d| = 0.1 -> 100 - 100 * 0.1 = 90 %.
    # Image 1 is exact -> 100 %. BL(x) cancels out of t_d - y_d.
    t = torch.full((2, 3, 4, 5), 0.5)
    y = t.clone()
    y[0] += 0.05
    bl_x = torch.rand(2, 3, 4, 5)
    acc = accuracy(y, t, bl_x)
    assert acc.shape == (2,)
    assert acc[0].item() == pytest.approx(90.0, abs=1e-4)
    assert acc[1].item() == pytest.approx(100.0)
    # Half the pixels off by 0.1 and half exact: mean |t_d - y_d| = 0.1 -> 90 %.
    y2 = t.clone()
    y2[:, :, :2] -= 0.1
    assert accuracy(y2, t, bl_x)[0].item() == pytest.approx(90.0, abs=1e-4)


def test_psnr_and_ssim_match_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.random((2, 32, 40, 3)).astype(np.float32)
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    at = torch.from_numpy(a).permute(0, 3, 1, 2)
    bt = torch.from_numpy(b).permute(0, 3, 1, 2)
    p = psnr(bt, at)
    s = ssim(bt, at)
    assert p.shape == (2,) and s.shape == (2,)
    for i in range(2):
        assert p[i].item() == pytest.approx(sk_psnr(a[i], b[i], data_range=1.0), abs=1e-3)
        expected = sk_ssim(
            a[i],
            b[i],
            data_range=1.0,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        # torchmetrics and skimage treat the image border differently: close, not equal.
        assert s[i].item() == pytest.approx(expected, abs=0.02)
    # By hand: MSE 0.01 -> 20 dB; identical -> SSIM 1, PSNR inf.
    x = torch.zeros(1, 3, 16, 16)
    assert psnr(x + 0.1, x).item() == pytest.approx(20.0, abs=1e-4)
    assert ssim(x + 0.3, x + 0.3).item() == pytest.approx(1.0, abs=1e-3)
    assert math.isinf(psnr(x, x).item())
    # One (C, H, W) image and bf16 inputs work.
    assert psnr(bt[0].bfloat16(), at[0].bfloat16()).shape == (1,)


def _matlab_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MATLAB's SSIM map from scikit-image: pad by the window radius with replicated edges
    (MATLAB's padding; every axis, an RGB image being a volume to MATLAB), then skimage's
    Gaussian SSIM (sigma 1.5, 11 taps, population covariance) and crop the padding off: inside
    it the windows only see the replicated pixels, never skimage's own border rule."""
    padded_a, padded_b = np.pad(a, 5, mode="edge"), np.pad(b, 5, mode="edge")
    _, full = sk_ssim(
        padded_a,
        padded_b,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    return full[(slice(5, -5),) * a.ndim]


def test_ssim_in_matlabs_convention_matches_the_scikit_image_reference():
    rng = np.random.default_rng(1)
    gray = rng.random((24, 30))
    noisy = np.clip(0.7 * gray + 0.1 * rng.standard_normal(gray.shape), 0, 1)
    assert ssim_matlab_map(noisy, gray) == pytest.approx(_matlab_reference(noisy, gray), abs=1e-9)
    rgb = rng.random((3, 24, 30))
    dim = np.clip(0.6 * rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1)
    reference = _matlab_reference(dim, rgb)
    assert reference.shape == (3, 24, 30)
    assert ssim_matlab_map(dim, rgb) == pytest.approx(reference, abs=1e-9)
    # On (N, C, H, W) tensors: the map's mean, as MATLAB's ssimval = mean(ssimmap(:)).
    batch = torch.from_numpy(np.stack([dim, rgb])).float()
    ref_batch = torch.from_numpy(np.stack([rgb, rgb])).float()
    values = ssim_matlab(batch, ref_batch)
    assert values[0].item() == pytest.approx(reference.mean(), abs=1e-5)
    assert values[1].item() == pytest.approx(1.0, abs=1e-6)
    # Not the training SSIM: torchmetrics pads by reflection and filters each channel alone.
    assert abs(values[0].item() - ssim(batch, ref_batch)[0].item()) > 1e-3
    # An all-valid mask changes nothing; a mask scores the valid windows only.
    assert ssim_matlab(batch, ref_batch, torch.ones(2, 24, 30)) == pytest.approx(values)
    half = torch.ones(2, 24, 30)
    half[:, :, 15:] = 0
    assert ssim_matlab(batch, ref_batch, half)[1].item() == pytest.approx(1.0, abs=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match="differ"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_summarise():
    stats = summarise(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert stats == {
        "n": 4,
        "n_nonfinite": 0,
        "mean": 2.5,
        "std": pytest.approx(math.sqrt(1.25)),
        "median": 2.5,
        "min": 1.0,
        "max": 4.0,
    }
    with_inf = summarise([10.0, math.inf, 30.0])
    assert with_inf["mean"] == 20.0 and with_inf["n"] == 3 and with_inf["n_nonfinite"] == 1
    empty = summarise(np.array([]))
    assert empty["n"] == 0 and empty["mean"] is None


def _half_masked() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 32x32 images equal but for 0.1 on the valid left 16 columns, wildly different on
    the padded right 16 (as a face crop's padding would be), and that validity mask."""
    rng = np.random.default_rng(3)
    a = torch.from_numpy(rng.random((2, 3, 32, 32), dtype=np.float32) * 0.8)
    b = a.clone()
    b[..., :16] += 0.1
    b[..., 16:] = torch.from_numpy(rng.random((2, 3, 32, 16), dtype=np.float32))
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., :16] = 1.0
    return a, b, mask


def test_metrics_on_valid_pixels_only_known_answers():
    """Only the valid area counts: there the images differ by exactly 0.1, so PSNR is 20 dB
    and eq. 7 gives 100 - 200 * 0.1 = 80 %, whatever the padded half holds."""
    a, b, mask = _half_masked()
    np.testing.assert_allclose(psnr(b, a, mask).numpy(), [20.0, 20.0], atol=1e-4)
    assert psnr(b, a).max().item() < 15.0  # the padding would drag it down
    bl_x = torch.rand(2, 3, 32, 32)
    np.testing.assert_allclose(accuracy(b, a, bl_x, mask).numpy(), [80.0, 80.0], atol=1e-4)
    assert accuracy(b, a, bl_x).max().item() < 75.0
    # SSIM: identical valid halves -> 1 over the windows inside them; the padding ignored.
    c = a.clone()
    c[..., 16:] = 1.0 - a[..., 16:]
    np.testing.assert_allclose(ssim(c, a, mask).numpy(), [1.0, 1.0], atol=1e-5)
    assert ssim(c, a).max().item() < 0.8
    # A (H, W) mask serves every image of the batch alike.
    np.testing.assert_allclose(psnr(b, a, mask[0, 0]).numpy(), [20.0, 20.0], atol=1e-4)


def test_all_valid_mask_gives_the_unmasked_metrics():
    a, b, _ = _half_masked()
    ones = torch.ones(2, 1, 32, 32)
    bl_x = torch.rand(2, 3, 32, 32)
    np.testing.assert_allclose(ssim(b, a, ones).numpy(), ssim(b, a).numpy(), atol=1e-6)
    np.testing.assert_allclose(psnr(b, a, ones).numpy(), psnr(b, a).numpy(), atol=1e-4)
    np.testing.assert_allclose(
        accuracy(b, a, bl_x, ones).numpy(), accuracy(b, a, bl_x).numpy(), atol=1e-4
    )
    with pytest.raises(ValueError, match="mask shape"):
        psnr(b, a, torch.ones(2, 1, 16, 16))
