"""Evaluation metrics: the paper's accuracy (eq. 7), SSIM and PSNR per image, and summaries.

SSIM and PSNR come from torchmetrics (Gaussian 11x11 window, sigma 1.5, k1 0.01, k2 0.03, the
usual Wang et al. 2004 settings, reflect padding at the border, per channel then averaged): the
training signal and our scores; :func:`ssim_matlab` is the paper's convention (MATLAB's
``ssim``: replicate padding, an RGB image as a volume) for the comparison with its Tables 2 and
3. Both with ``data_range=1.0``: images are expected in [0, 1] (clamp reconstructions first;
eq. 2 can leave the range). All per-image functions take (N, C, H, W) tensors, or one (C, H, W)
image, and return a float32 tensor of shape (N,), computed in float32 whatever the input dtype
(:func:`ssim_matlab` in float64, as MATLAB computes on double images).

``mask`` (optional, (N, H, W) / (N, 1, H, W) / (H, W), 1 = valid) restricts a metric to the
valid pixels of each image: padding that the face crop had to add is not part of the scene.
Accuracy and PSNR average over the valid pixels; SSIM averages its per-pixel map over the
valid pixels whose whole 11x11 window is valid (windows reaching into padding mix it into the
local statistics). An all-ones mask gives the unmasked values.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def _batch(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    if a.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W) images, got {tuple(a.shape)}")
    return a.float(), b.float()


SSIM_WINDOW = 11
"""Side of torchmetrics' Gaussian SSIM window (sigma 1.5)."""


def _weights(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A validity mask as float (N, 1, H, W) matching ``like`` (N, C, H, W)."""
    weights = mask.to(device=like.device, dtype=torch.float32)
    while weights.ndim < 4:
        weights = weights.unsqueeze(0 if weights.ndim == 2 else 1)
    n, _, h, w = like.shape
    if weights.shape[0] == 1 and weights.shape[1:] == (1, h, w):
        weights = weights.expand(n, 1, h, w)  # one mask for every image
    if weights.shape != (n, 1, h, w):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit images {tuple(like.shape)}")
    return weights


def _valid_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-image mean of (N, C, H, W) ``values`` over the pixels where ``weights`` is 1."""
    count = weights.sum(dim=(1, 2, 3)) * values.shape[1]
    return (values * weights).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)


def accuracy(
    y: torch.Tensor, t: torch.Tensor, bl_x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 7 per image: 100 - 100/(3wh) * sum |t_d - y_d|, in percent, shape (N,).

    ``y_d = BL(x) - 2y + 1`` and ``t_d = BL(x) - 2t + 1`` are the decoded difference images of
    the output y and target t (``bl_x`` = BL(x)); the sum runs over pixels and channels (the
    valid ones of ``mask``, wh then their count). Since ``t_d - y_d = 2 (y - t)``, this is
    100 - 200 * mean |y - t|.
    """
    y, t = _batch(y, t)
    bl_x = bl_x.float().reshape(y.shape)
    y_d = bl_x - 2.0 * y + 1.0
    t_d = bl_x - 2.0 * t + 1.0
    error = (t_d - y_d).abs()
    if mask is None:
        return 100.0 - 100.0 * error.mean(dim=(1, 2, 3))
    return 100.0 - 100.0 * _valid_mean(error, _weights(mask, error))


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM of every image pair (torchmetrics, data range 1.0), shape (N,); sides >= 11 px.

    With ``mask``: the mean of the SSIM map over the valid pixels whose 11x11 window holds
    valid pixels only (outside the image counts as valid, as torchmetrics reflects there);
    over all valid pixels when no window fits in an image's valid area.
    """
    a, b = _batch(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    # Imported here: torchmetrics costs ~3 s at import, which every training process
    # (DDP ranks, resumed runs) would otherwise pay without computing SSIM.
    from torchmetrics.functional.image import structural_similarity_index_measure

    if mask is None:
        return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    _, full = structural_similarity_index_measure(
        a, b, data_range=1.0, reduction="none", return_full_image=True
    )
    return _window_mean(full, mask)


def _window_mean(full: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of an (N, C, H, W) SSIM map over the valid pixels of ``mask`` whose whole
    window is valid (over all valid pixels when no window fits)."""
    weights = _weights(mask, full)
    # Erode the valid area by the window's radius: dilate the invalid area (zero padding, so
    # the image's own border does not count as invalid).
    invalid = torch.nn.functional.max_pool2d(
        1.0 - weights, SSIM_WINDOW, stride=1, padding=SSIM_WINDOW // 2
    )
    inner = weights * (1.0 - invalid)
    fits = inner.sum(dim=(1, 2, 3), keepdim=True) > 0
    return _valid_mean(full, torch.where(fits, inner, weights))


MATLAB_SIGMA = 1.5
"""MATLAB ``ssim``'s default 'Radius' (the Gaussian's standard deviation)."""


def ssim_matlab_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """The SSIM map of MATLAB's ``ssim(A, ref)`` with its defaults, the paper's convention.

    ``a``, ``b``: one image, (H, W) or (C, H, W), float. As MATLAB (Image Processing Toolbox,
    ``ssim``): an isotropic Gaussian of sigma 1.5 and size 2*ceil(3*sigma)+1 = 11 over every
    axis of the array (an RGB image is treated as a volume: its 3 channels are a third spatial
    axis, the behaviour without 'DataFormat'), replicate padding at the borders, C1 =
    (0.01 L)^2, C2 = (0.03 L)^2 with L the dynamic range (1 for images in [0, 1]), weighted
    (population) variances; the map has the image's shape and its mean is the index.
    """
    from scipy.ndimage import correlate1d

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    radius = int(np.ceil(3 * MATLAB_SIGMA))
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * MATLAB_SIGMA**2))
    taps /= taps.sum()  # MATLAB's 2-D/3-D Gaussian is this 1-D one along each axis

    def blur(image: np.ndarray) -> np.ndarray:
        for axis in range(image.ndim):  # mode "nearest" is MATLAB's 'replicate'
            image = correlate1d(image, taps, axis=axis, mode="nearest")
        return image

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    # Eq. 13 of Wang et al. 2004 (exponents 1 and C3 = C2 / 2, MATLAB's default case)
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def ssim_matlab(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SSIM of every image pair in the paper's convention (:func:`ssim_matlab_map`, data range
    1.0), shape (N,); with ``mask`` averaged as :func:`ssim` does. For the comparison with the
    paper's Tables 2 and 3 only: training and the other scores use :func:`ssim`."""
    a, b = _batch(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    x, y = a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy()
    full = torch.from_numpy(np.stack([ssim_matlab_map(x[i], y[i]) for i in range(len(x))]))
    full = full.to(device=a.device, dtype=torch.float32)
    if mask is None:
        return full.mean(dim=(1, 2, 3))
    return _window_mean(full, mask)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of every image pair (torchmetrics, data range 1.0), shape (N,); with
    ``mask`` the mean squared error runs over the valid pixels only.

    Identical images give +inf.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = _batch(a, b)
    if mask is None:
        return peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    mse = _valid_mean((a - b).square(), _weights(mask, a))
    return 10.0 * torch.log10(1.0 / mse)


def summarise(values: Iterable[float] | torch.Tensor | np.ndarray) -> dict[str, float | int | None]:
    """Mean, std (population), median, min, max and count of per-image values.

    Non-finite values (a PSNR of +inf for identical images) are left out of the statistics
    and counted in ``n_nonfinite``; with no finite values the statistics are None (JSON null).
    """
    if isinstance(values, torch.Tensor):
        array = values.detach().double().cpu().numpy().ravel()
    elif isinstance(values, np.ndarray):
        array = values.astype(np.float64).ravel()
    else:
        array = np.asarray([float(v) for v in values], np.float64)
    finite = array[np.isfinite(array)]
    stats: dict[str, float | int | None] = {
        "n": int(array.size),
        "n_nonfinite": int(array.size - finite.size),
    }
    if finite.size == 0:
        stats.update(mean=None, std=None, median=None, min=None, max=None)
        return stats
    stats.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        median=float(np.median(finite)),
        min=float(finite.min()),
        max=float(finite.max()),
    )
    return stats
