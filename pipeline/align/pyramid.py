"""SimpleITK side of the registration: image pyramids in a normalised frame, Mattes MI.

The pair is estimated on copies downscaled to ``max_side`` and, by default, *shading
normalised*: log luminance minus its Gaussian blur (a retinex-style high-pass). A flash is a
point light at the lens (the paper's Sec. 3): it brightens the face and darkens the
background with an inverse-square fall-off that no single intensity mapping undoes, and Mattes
mutual information assumes one such mapping for the whole image. Measured on synthetic pairs
of the shared portraits with a strong flash-like relighting, MI on raw luminance is biased
towards wrong poses (a tight face crop: the MI at a 12 px wrong answer beat the truth's at
every pyramid level); on the normalised copies the optimum sits within 0.1 px of the truth.
Log turns the fall-off (a product) into a sum and the blur removes that smooth sum; MI copes
with what is left (gamma, colour cast, the flash's local contrast).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import SimpleITK as sitk

from pipeline.align.geometry import resize, scale_matrix

# Sampling: at least MIN_SAMPLES pixels per level (a coarse level sampled at the fine level's
# fraction gives noisy MI gradients); MI_SAMPLES (a fixed seeded set) for the reported MI.
MIN_SAMPLES = 8192
MI_SAMPLES = 32768
# log(I + LOG_EPS): dark pixels (a flash's black background) must not turn sensor noise into
# huge log differences; 0.02 caps the log's slope at 50.
LOG_EPS = 0.02
# The blur of the shading estimate runs on a copy this many times smaller: the blurred field
# is smooth at that scale (sigma >= 2.5 % of the side), and the blur then costs ~1/16.
SHADING_DECIMATE = 4


def shading_normalised(grey: np.ndarray, sigma_fraction: float) -> np.ndarray:
    """``log(grey + eps)`` minus its Gaussian blur of sigma ``sigma_fraction`` x the longer side.

    ``sigma_fraction`` 0 returns ``grey`` unchanged (plain luminance, the paper's set-up).
    """
    if sigma_fraction <= 0:
        return grey
    log = np.log(grey.astype(np.float32) + np.float32(LOG_EPS))
    h, w = log.shape
    small = resize(log, max(1, round(w / SHADING_DECIMATE)), max(1, round(h / SHADING_DECIMATE)))
    sigma = sigma_fraction * max(small.shape)
    shading = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(log - resize(shading, w, h), dtype=np.float32)


def build_pyramids(
    fixed: np.ndarray,
    moving: np.ndarray,
    max_side: int,
    levels: int,
    shading_sigma: float = 0.0,
) -> tuple[list[sitk.Image], list[sitk.Image], float]:
    """Coarse-to-fine SimpleITK copies of both grey images in a normalised physical frame.

    Physical coordinate = full-resolution FIXED pixel coordinate / ``unit``, with ``unit`` half
    the fixed image's diagonal, so image points lie within about 1 of the centre. In that frame
    a unit change of a matrix term and of a translation move points by similar amounts; the
    optimizers take steps in raw parameter units, so without it a step sized for translations
    in pixels would wreck the matrix terms, and one sized for the matrix would barely move
    translations.

    The moving copies get the same physical extent as the fixed ones (a studio shot at another
    resolution shows the same field of view), so the physical transform stays near the identity
    and its scale/shear checks are meaningful whatever the two resolutions are.

    Level l (0 = coarsest) is an INTER_AREA copy at 1 / 2^(levels-1-l) of the ``max_side``
    copy, which is shading-normalised first (:func:`shading_normalised`).
    """
    fh, fw = fixed.shape
    unit = 0.5 * math.hypot(fw, fh)
    pyramids: list[list[sitk.Image]] = []
    for grey in (fixed, moving):
        h, w = grey.shape
        s = min(1.0, max_side / max(h, w))
        base = resize(grey, max(8, round(w * s)), max(8, round(h * s)))
        base = shading_normalised(base, shading_sigma)
        pyramid = []
        for level in range(levels):
            f = 2 ** (levels - 1 - level)
            small_w, small_h = max(8, round(base.shape[1] / f)), max(8, round(base.shape[0] / f))
            image = sitk.GetImageFromArray(resize(base, small_w, small_h))
            # Pixel centre i of the copy lies at full-res fixed coordinate (i + 0.5) * step - 0.5.
            step = (fw / small_w, fh / small_h)
            image.SetSpacing((step[0] / unit, step[1] / unit))
            image.SetOrigin(((0.5 * step[0] - 0.5) / unit, (0.5 * step[1] - 0.5) / unit))
            pyramid.append(image)
        pyramids.append(pyramid)
    return pyramids[0], pyramids[1], unit


def shrink_to(image: sitk.Image, side: int) -> sitk.Image:
    """A copy of a pyramid level with its longer side at most ``side`` (same physical frame)."""
    w, h = image.GetSize()
    s = side / max(w, h)
    if s >= 1:
        return image
    small_w, small_h = max(8, round(w * s)), max(8, round(h * s))
    out = sitk.GetImageFromArray(resize(sitk.GetArrayViewFromImage(image), small_w, small_h))
    spacing, origin = image.GetSpacing(), image.GetOrigin()
    # Same pixel-centre rule as build_pyramids: extent kept, spacing scaled.
    new_spacing = (spacing[0] * w / small_w, spacing[1] * h / small_h)
    out.SetSpacing(new_spacing)
    out.SetOrigin(
        (
            origin[0] - 0.5 * spacing[0] + 0.5 * new_spacing[0],
            origin[1] - 0.5 * spacing[1] + 0.5 * new_spacing[1],
        )
    )
    return out


def mattes_method(
    bins: int, sampling: float, seed: int, threads: int = 1
) -> sitk.ImageRegistrationMethod:
    """A Mattes-MI registration method with these bins, threads and seeded sampling."""
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(threads)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    if sampling >= 1:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        # seed + 1: SimpleITK treats seed 0 as "seed from the wall clock".
        method.SetMetricSamplingPercentage(sampling, seed + 1)
    # Central differences at the sampled points only: more exact than ITK's smoothed gradient
    # image (about half the final error on flash-like pairs) and no whole-image filter per call.
    method.MetricUseMovingImageGradientFilterOff()
    method.MetricUseFixedImageGradientFilterOff()
    method.SetInterpolator(sitk.sitkLinear)
    return method


def fraction(image: sitk.Image, share: float, minimum: int, maximum: int | None = None) -> float:
    """Sampling fraction giving at least ``minimum`` (at most ``maximum``) pixels of ``image``."""
    pixels = float(np.prod(image.GetSize()))
    count = max(share * pixels, minimum)
    if maximum is not None:
        count = min(count, maximum)
    return min(1.0, count / pixels)


def mutual_information(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
    bins: int,
    seed: int,
    threads: int = 1,
    samples: int = MI_SAMPLES,
) -> float:
    """Mattes MI (positive, nats) of a pair of copies on a fixed, seeded set of ``samples`` pixels.

    Values for different transforms of one pair use the same pixels (same seed, grid and
    count), so they compare.
    """
    method = mattes_method(bins, fraction(fixed, 1.0, 0, samples), seed, threads)
    method.SetInitialTransform(transform, inPlace=False)
    return -float(method.MetricEvaluate(fixed, moving))


def execute(
    method: sitk.ImageRegistrationMethod,
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
) -> tuple[int, str, float, float]:
    """Run one single-level optimisation in place.

    Returns (iterations, stop condition, metric at the start, metric at the end): the metric
    (negative MI on this method's samples) as the optimizer saw it at its first iteration and
    last, NaN when it did not iterate.
    """
    method.SetInitialTransform(transform, inPlace=True)
    values: list[float] = []

    def on_iteration() -> None:
        values.append(method.GetMetricValue())

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.Execute(fixed, moving)
    first = values[0] if values else float("nan")
    last = method.GetMetricValue() if values else float("nan")
    return len(values), method.GetOptimizerStopConditionDescription(), first, last


def pixel_matrix(
    transform: sitk.Transform,
    unit: float,
    fixed_size: tuple[int, int],
    moving_size: tuple[int, int],
) -> np.ndarray:
    """2x3 full-resolution pixel matrix (fixed -> moving) of an ITK 2-D affine-like transform.

    ITK: q = A (p - c) + c + t with p = (fixed full-res pixel) / unit and q in the moving
    image's physical frame (its field of view stretched to the fixed image's size, same unit);
    q * unit is then taken to the moving full-res pixel with the size ratio (pixel centres).
    """
    a = np.array(transform.GetMatrix(), dtype=float).reshape(2, 2)
    c = np.array(transform.GetCenter(), dtype=float)
    t = np.array(transform.GetTranslation(), dtype=float)
    physical = np.eye(3)
    physical[:2, :2] = a
    physical[:2, 2] = c + t - a @ c
    to_unit = np.diag([unit, unit, 1.0])
    to_moving = scale_matrix(moving_size[0] / fixed_size[0], moving_size[1] / fixed_size[1])
    return (to_moving @ to_unit @ physical @ np.linalg.inv(to_unit))[:2]


__all__ = [
    "LOG_EPS",
    "MIN_SAMPLES",
    "MI_SAMPLES",
    "build_pyramids",
    "execute",
    "fraction",
    "mattes_method",
    "mutual_information",
    "pixel_matrix",
    "shading_normalised",
    "shrink_to",
]
