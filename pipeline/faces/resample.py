"""One anti-aliased resampling of a photo onto a square, and which output pixels are real.

:func:`resample` is the single interpolation every crop goes through (the flash crop with
the crop matrix, the studio crop with registration o crop, enhance's network input), reading
only the window of the photo it needs. :func:`valid_mask` says which of its output pixels
show the photo only: the others cover (part of) the padding, which is not the scene, so
training loss, metrics and sample grids leave them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.faces.geometry import compose
from pipeline.io import uint8_to_float

PAD_MODES = ("constant", "edge", "reflect")

_CV2_BORDER = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}

# Anti-aliasing strength: Gaussian sigma = ANTIALIAS * sqrt(r^2 - 1) reduced pixels for a
# remaining shrink factor r. With the pyramid levels this low-passes about 0.42 x the scale
# (in source pixels), near the usual 0.5 x scale rule, a little sharper. Measured on a 12 MP
# portrait cropped to 512 px: gratings above the output's Nyquist frequency come out flat
# (std < 0.002), and flash and studio crops of a synthetic pair agree to 0.0005 on average.
ANTIALIAS = 0.4


def _border_index(index: np.ndarray, length: int, pad_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices for ``index`` (possibly outside [0, length)) and the inside mask.

    Same meaning as numpy.pad's modes: ``reflect`` mirrors about the edge pixel without
    repeating it, ``edge`` repeats the edge pixel, ``constant`` pads with zeros (the mask).
    """
    inside = (index >= 0) & (index < length)
    if pad_mode == "edge" or length == 1:
        return np.clip(index, 0, length - 1), inside
    if pad_mode == "reflect":
        period = 2 * length - 2
        folded = np.mod(index, period)
        return np.where(folded >= length, period - folded, folded), inside
    return np.clip(index, 0, length - 1), inside


def _extract(
    image: np.ndarray, x_lo: int, y_lo: int, x_hi: int, y_hi: int, pad_mode: str
) -> np.ndarray:
    """The float32 window [y_lo, y_hi) x [x_lo, x_hi) of ``image``, padded where it leaves it."""
    height, width = image.shape[:2]
    in_x0, in_y0 = max(x_lo, 0), max(y_lo, 0)
    in_x1, in_y1 = min(x_hi, width), min(y_hi, height)
    if (in_x0, in_y0, in_x1, in_y1) == (x_lo, y_lo, x_hi, y_hi):
        window = image[y_lo:y_hi, x_lo:x_hi]  # inside the photo: a view, no copy
    elif in_x0 < in_x1 and in_y0 < in_y1:
        # OpenCV pads exactly as numpy.pad does for these modes, even past a whole image
        # width, at memcpy speed (fancy indexing a 12 MP window takes ten times longer).
        window = cv2.copyMakeBorder(
            np.ascontiguousarray(image[in_y0:in_y1, in_x0:in_x1]),
            in_y0 - y_lo,
            y_hi - in_y1,
            in_x0 - x_lo,
            x_hi - in_x1,
            _CV2_BORDER[pad_mode],
            value=(0, 0, 0, 0),
        )
        if window.ndim == 2 and image.ndim == 3:
            window = window[..., None]
    else:  # the window misses the photo altogether (a wild matrix): index arithmetic
        rows, rows_in = _border_index(np.arange(y_lo, y_hi), height, pad_mode)
        cols, cols_in = _border_index(np.arange(x_lo, x_hi), width, pad_mode)
        window = image[rows[:, None], cols[None, :]]
        if pad_mode == "constant":
            inside = (rows_in[:, None] & cols_in[None, :]).astype(window.dtype)
            window = window * inside.reshape(window.shape[:2] + (1,) * (window.ndim - 2))
    if window.dtype == np.uint8:
        return uint8_to_float(window)  # exactly the float read_image gives
    if window.dtype == np.uint16:
        return window.astype(np.float32) * np.float32(1 / 65535)
    return np.ascontiguousarray(window, dtype=np.float32)


@dataclass(frozen=True)
class _Plan:
    """How :func:`resample` reaches an output square: source window, pyramid, blur."""

    matrix: np.ndarray
    levels: int
    sigma: float
    window: tuple[int, int, int, int]  # x_lo, y_lo, x_hi, y_hi in source pixels

    def inside(self, height: int, width: int) -> bool:
        """Whether the whole window lies in a ``height`` x ``width`` photo (nothing padded)."""
        x_lo, y_lo, x_hi, y_hi = self.window
        return x_lo >= 0 and y_lo >= 0 and x_hi <= width and y_hi <= height


def _plan(matrix: np.ndarray, size: int) -> _Plan:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"expected a finite 2x3 matrix, got {matrix.tolist()}")
    det = abs(float(np.linalg.det(matrix[:, :2])))
    if det < 1e-12:
        raise ValueError(f"degenerate (non-invertible) matrix {matrix.tolist()}")
    scale = math.sqrt(det)
    levels = max(0, math.floor(math.log2(scale) + 1e-9) - 1)
    k = 2**levels
    rest = scale / k
    sigma = ANTIALIAS * math.sqrt(max(rest * rest - 1.0, 0.0))
    sigma = sigma if sigma >= 0.05 else 0.0
    radius = math.ceil(3.0 * sigma) if sigma else 0
    # Source window: the output square's corners mapped back, plus the support of the
    # bilinear kernel and the blur (in reduced pixels, times k) and of the pyramid (< 2k).
    edge = np.array([-0.5, size - 0.5])
    corners = np.array([[u, v, 1.0] for u in edge for v in edge]) @ matrix.T
    pad = k * (radius + 4) + 2
    window = (
        math.floor(corners[:, 0].min()) - pad,
        math.floor(corners[:, 1].min()) - pad,
        math.ceil(corners[:, 0].max()) + pad,
        math.ceil(corners[:, 1].max()) + pad,
    )
    return _Plan(matrix, levels, sigma, window)


def _run(plan: _Plan, window: np.ndarray, size: int) -> np.ndarray:
    """Pyramid, blur and the one bilinear warp of an extracted window."""
    for _ in range(plan.levels):
        window = cv2.pyrDown(window)
    if plan.sigma:
        window = cv2.GaussianBlur(window, (0, 0), plan.sigma, borderType=cv2.BORDER_REFLECT_101)
    # pyrDown's pixel j is centred on its input's pixel 2j: after the levels, window pixel
    # (i, j) is source pixel (x_lo + k*j, y_lo + k*i).
    k = 2**plan.levels
    x_lo, y_lo = plan.window[:2]
    to_window = np.array([[1.0 / k, 0.0, -x_lo / k], [0.0, 1.0 / k, -y_lo / k]])
    # The window covers every sample (its padding), so the border mode is never reached.
    return cv2.warpAffine(
        window,
        compose(to_window, plan.matrix),
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def resample(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int,
    pad_mode: str = "constant",
) -> np.ndarray:
    """The ``size`` x ``size`` image whose pixel (u, v) is ``image`` at ``matrix @ (u, v, 1)``.

    ``matrix`` is a 2x3 output-pixel -> source-pixel map (e.g. registration o crop). One
    bilinear interpolation from the source, anti-aliased when it shrinks. With s the linear
    scale of ``matrix`` (source pixels per output pixel):

    1. only the window of the source the output needs is taken (padded where it leaves the
       photo): never a full-resolution intermediate;
    2. while s is 4 or more, the window is halved by ``cv2.pyrDown`` (5-tap Gaussian, then
       every other pixel: a proper anti-aliased halving, no interpolation), leaving a factor
       r = s / 2^levels in [2, 4);
    3. a Gaussian of sigma ``ANTIALIAS * sqrt(r^2 - 1)`` removes what the output cannot
       hold (none when the image is enlarged);
    4. one ``cv2.warpAffine`` (bilinear) with the matrix adjusted for the window and levels.

    Stopping the pyramid at r >= 2 keeps the last image oversampled relative to the output,
    so the bilinear sampling barely depends on where the samples fall between pixels: the
    flash (identity) and studio (rotated, scaled) crops of the same scene come out the same.

    ``pad_mode`` ``reflect`` and ``edge`` pad as numpy.pad does. ``constant`` makes every
    pixel that :func:`valid_mask` calls invalid exactly 0, and computes the valid ones as
    ``edge`` does: a pixel whose footprint lies in the photo is not darkened by the tail of
    the anti-aliasing filter reaching past the photo's edge.
    Returns float32 in [0, 1]; uint8/uint16 inputs are converted after the window is cut.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {pad_mode!r}; use one of {PAD_MODES}")
    plan = _plan(matrix, size)
    image = np.asarray(image)
    padding = "edge" if pad_mode == "constant" else pad_mode
    out = _run(plan, _extract(image, *plan.window, padding), size)
    if out.ndim == 2 and image.ndim == 3:
        out = out[..., None]
    if pad_mode == "constant" and not plan.inside(*image.shape[:2]):
        out[~valid_mask(image.shape, matrix, size)] = 0.0
    return np.clip(out, 0.0, 1.0)


def valid_mask(shape: tuple[int, ...], matrix: np.ndarray, size: int) -> np.ndarray:
    """Bool ``size`` x ``size``: True where the output pixel of :func:`resample` (an image of
    ``shape``, ``matrix``) shows the photo only.

    An output pixel's footprint is its unit square mapped by ``matrix``; it is valid when the
    footprint lies inside the photo's area (pixel centres 0 .. w-1, edges at -0.5 and
    w - 0.5). A pixel that straddles the photo's edge is partly invented, hence invalid.
    Pure geometry: deterministic, and all valid without any per-pixel work when the whole
    square is inside.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    height, width = int(shape[0]), int(shape[1])
    # Half the footprint's extent along x and y: the unit square's corners at +-0.5.
    half = 0.5 * (np.abs(matrix[:, 0]) + np.abs(matrix[:, 1]))
    tol = 1e-6
    low = np.array([-0.5, -0.5]) + half - tol
    high = np.array([width - 0.5, height - 0.5]) - half + tol
    grid = np.arange(size, dtype=np.float64)
    xs = matrix[0, 0] * grid[None, :] + matrix[0, 1] * grid[:, None] + matrix[0, 2]
    ys = matrix[1, 0] * grid[None, :] + matrix[1, 1] * grid[:, None] + matrix[1, 2]
    return (xs >= low[0]) & (xs <= high[0]) & (ys >= low[1]) & (ys <= high[1])


__all__ = ["ANTIALIAS", "PAD_MODES", "resample", "valid_mask"]
