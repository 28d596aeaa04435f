"""Fast bilateral filter vs a brute-force reference, edge cases, numpy/torch agreement."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from pipeline.config import BilateralParams
from pipeline.core.bilateral import (
    bilateral_filter,
    make_blur,
    reference_bilateral_filter,
    sigma_s_for,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut, shipped with the package) at 96x96, [0, 1]."""
    rgb = data.astronaut().astype(np.float32) / 255.0
    return cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA)


def test_sigma_s_for_is_three_percent_of_the_side():
    assert sigma_s_for(512) == pytest.approx(15.36)
    assert sigma_s_for(4160) == pytest.approx(124.8)
    assert sigma_s_for(1000, fraction=0.1) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        sigma_s_for(0)


def test_make_blur_is_the_filter_of_the_params_group(photo: np.ndarray):
    """BL for a side: sigma_s = sigma_s_fraction x side, the group's sigma_r and mode."""
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None]
    settings = BilateralParams(sigma_s_fraction=0.05, sigma_r=0.2, mode="joint")
    expected = bilateral_filter(tensor, 0.05 * 96, 0.2, "joint")
    torch.testing.assert_close(make_blur(settings, 96)(tensor), expected, rtol=0, atol=0)
    assert not torch.equal(make_blur(BilateralParams(), 96)(tensor), expected)


def test_reference_matches_the_definition_pixel_by_pixel():
    # The reference (vectorised over window offsets) against the textbook double loop.
    rng = np.random.default_rng(0)
    img = rng.random((9, 11, 3)).astype(np.float32)
    sigma_s, sigma_r, radius = 1.5, 0.3, 4
    for mode in ("per_channel", "joint"):
        ref = reference_bilateral_filter(img, sigma_s, sigma_r, mode, radius=radius)
        for y, x in [(0, 0), (4, 5), (8, 10), (2, 9)]:
            num = np.zeros(3)
            den = np.zeros(3)
            for yy in range(9):
                for xx in range(11):
                    d2 = (yy - y) ** 2 + (xx - x) ** 2
                    if d2 > radius**2:
                        continue
                    diff2 = (img[yy, xx].astype(np.float64) - img[y, x]) ** 2
                    if mode == "joint":
                        diff2 = np.full(3, diff2.sum())
                    weight = np.exp(-d2 / (2 * sigma_s**2) - diff2 / (2 * sigma_r**2))
                    num += weight * img[yy, xx]
                    den += weight
            np.testing.assert_allclose(ref[y, x], num / den, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["per_channel", "joint"])
@pytest.mark.parametrize(("sigma_s", "sigma_r"), [(sigma_s_for(96), 0.4), (6.0, 0.4), (6.0, 0.1)])
def test_matches_brute_force_reference(photo, mode, sigma_s, sigma_r):
    ref = reference_bilateral_filter(photo, sigma_s, sigma_r, mode)
    out = bilateral_filter(photo, sigma_s, sigma_r, mode)
    assert out.shape == photo.shape and out.dtype == np.float32
    psnr = _psnr(out, ref)
    # Required: 34 dB. Measured 44.7-55.4 dB (range_rate 1.0; 0.5 gives 52-63 dB).
    assert psnr >= 40.0, f"{psnr:.2f} dB"
    # It is a real smoothing: far from the input, close to the reference.
    assert _psnr(photo, ref) < psnr - 10


def test_finer_lattice_converges_to_the_reference(photo):
    ref = reference_bilateral_filter(photo, 6.0, 0.4)
    coarse = _psnr(bilateral_filter(photo, 6.0, 0.4), ref)
    fine = _psnr(bilateral_filter(photo, 6.0, 0.4, spatial_rate=0.25, range_rate=0.25), ref)
    assert fine > coarse + 10 and fine > 55


@pytest.mark.parametrize("mode", ["per_channel", "joint"])
def test_constant_image_stays_constant(mode):
    for value in (0.0, 0.37, 1.0):
        img = np.full((40, 50, 3), value, np.float32)
        out = bilateral_filter(img, 7.0, 0.4, mode)
        assert np.abs(out - value).max() < 1e-6
    batch = torch.full((2, 3, 33, 17), 0.61)
    assert (bilateral_filter(batch, 3.0, 0.1, mode) - 0.61).abs().max() < 1e-6


@pytest.mark.parametrize("mode", ["per_channel", "joint"])
def test_step_edge_stays_sharp(mode):
    img = np.full((48, 64, 3), 0.1, np.float32)
    img[:, 32:] = 0.9
    blurred = cv2.GaussianBlur(img, (0, 0), 8.0)
    # A Gaussian blur of sigma_s turns the step into a ramp (jump 0.04 between columns 31, 32).
    assert blurred[24, 32, 0] - blurred[24, 31, 0] < 0.05
    for sigma_r, min_jump, tol in [(0.1, 0.799, 1e-4), (0.4, 0.5, 0.035)]:
        out = bilateral_filter(img, 8.0, sigma_r, mode)
        ref = reference_bilateral_filter(img, 8.0, sigma_r, mode)
        assert (out[:, 32] - out[:, 31]).min() > min_jump
        assert np.abs(out - ref).max() < tol
    # With a contrast of 8 sigma_r nothing crosses the edge: both sides keep their value.
    sharp = bilateral_filter(img, 8.0, 0.1, mode)
    assert np.abs(sharp - img).max() < 1e-4


def test_numpy_and_torch_paths_agree(photo):
    out_np = bilateral_filter(photo, 5.0, 0.4)
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None]
    out_t = bilateral_filter(tensor, 5.0, 0.4)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == tensor.shape
    np.testing.assert_allclose(out_t[0].permute(1, 2, 0).numpy(), out_np, atol=1e-6)
    # (C, H, W) and a grey HxW image
    np.testing.assert_allclose(bilateral_filter(tensor[0], 5.0, 0.4).numpy(), out_t[0].numpy())
    grey = bilateral_filter(photo[..., 1], 5.0, 0.4)
    np.testing.assert_allclose(grey, out_np[..., 1], atol=1e-6)


def test_batch_result_does_not_depend_on_the_other_images(photo):
    # The lattice is anchored at absolute values: a dark image next to a bright one gets the
    # same result as alone.
    dark = torch.from_numpy(photo * 0.3).permute(2, 0, 1)
    bright = torch.from_numpy(0.5 + photo * 0.5).permute(2, 0, 1)
    for mode in ("per_channel", "joint"):
        batch = bilateral_filter(torch.stack([dark, bright]), 4.0, 0.2, mode)
        torch.testing.assert_close(
            batch[0], bilateral_filter(dark, 4.0, 0.2, mode), atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            batch[1], bilateral_filter(bright, 4.0, 0.2, mode), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_inputs(photo, dtype):
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None]
    out = bilateral_filter(tensor.to(dtype), 5.0, 0.4)
    assert out.dtype == dtype
    expected = bilateral_filter(tensor.to(dtype).float(), 5.0, 0.4)
    tol = 1e-6 if dtype == torch.float64 else 1e-2
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0)


def test_odd_sizes_and_sigmas():
    rng = np.random.default_rng(1)
    for shape, sigma_s in [
        ((1, 1, 3), 16.0),
        ((2, 3, 3), 0.5),
        ((37, 5, 3), 40.0),
        ((70, 45, 1), 2.3),
    ]:
        img = rng.random(shape).astype(np.float32)
        out = bilateral_filter(img, sigma_s, 0.4)
        assert out.shape == img.shape and np.isfinite(out).all()
        # A weighted mean stays inside the range of its inputs.
        assert out.min() >= img.min() - 1e-6 and out.max() <= img.max() + 1e-6
        ref = reference_bilateral_filter(img, sigma_s, 0.4)
        # Uniform noise is the range lattice's worst case (every value occurs): still >= 34 dB.
        assert _psnr(out, ref) > 34


def test_values_outside_unit_range():
    # Difference images (encoding targets) leave [0, 1]: the lattice follows the data.
    rng = np.random.default_rng(2)
    img = (rng.random((30, 30, 3)) * 3 - 1).astype(np.float32)
    out = bilateral_filter(img, 3.0, 0.5)
    assert _psnr(out / 3, reference_bilateral_filter(img, 3.0, 0.5) / 3) > 40


def test_bad_input_is_refused_with_a_reason():
    img = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="mode"):
        bilateral_filter(img, 2.0, 0.4, mode="bogus")
    with pytest.raises(ValueError, match="positive"):
        bilateral_filter(img, 0.0, 0.4)
    with pytest.raises(ValueError, match="shape"):
        bilateral_filter(np.zeros((2, 2, 2, 2)), 2.0, 0.4)
    nan = img.copy()
    nan[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        bilateral_filter(nan, 2.0, 0.4)
    with pytest.raises(TypeError):
        bilateral_filter([[0.0]], 2.0, 0.4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(photo):
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    for mode in ("per_channel", "joint"):
        cpu = bilateral_filter(tensor, 5.0, 0.4, mode)
        gpu = bilateral_filter(tensor.cuda(), 5.0, 0.4, mode)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
