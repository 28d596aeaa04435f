"""Metrics: accuracy (eq. 7) by hand, SSIM/PSNR against scikit-image, summaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from pipeline.core.metrics import accuracy, psnr, ssim, summarise


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
