"""Pixel geometry of the registration: matrices between image copies, warps, errors, motion.

Conventions (every stage and test relies on them):

* pixel coordinates: x to the right, y down, pixel centres on integers (OpenCV's convention).
* a registration matrix is 2x3 and maps a FIXED (flash) pixel (x, y) to the matching MOVING
  (studio) pixel, so ``cv2.warpAffine(moving, matrix, (w, h), flags=cv2.INTER_LINEAR |
  cv2.WARP_INVERSE_MAP)`` aligns moving onto fixed. ITK's transforms go the same way (they map
  fixed-image points to moving-image points).
* resizing by a factor s (``cv2.resize``, INTER_AREA) maps x to ``(x + 0.5) * s - 0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def to_grey(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Float32 luminance of a grey or colour array of any dtype (integers scaled to [0, 1])."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"{name}: expected an HxW or HxWx3/4 image, got shape {array.shape}")
    if min(array.shape[:2]) < 16:
        raise ValueError(f"{name}: image too small to register ({array.shape[1]}x{array.shape[0]})")
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif array.dtype.kind in "ui":
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    else:
        raise ValueError(f"{name}: unsupported dtype {array.dtype}")
    if array.ndim == 3:
        # Rec. 601 luma (alpha ignored): MI needs one channel, and the flash changes mostly
        # brightness and colour balance, which luma and MI both tolerate.
        array = array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``image`` at (w, h): INTER_AREA when shrinking (no aliasing), bilinear when growing."""
    if (w, h) == (image.shape[1], image.shape[0]):
        return image
    interpolation = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interpolation)


def scale_matrix(sx: float, sy: float | None = None) -> np.ndarray:
    """3x3 map from pixels of an image to pixels of its copy resized by (sx, sy).

    Pixel-centre convention of ``cv2.resize``: ``x_small = (x + 0.5) * s - 0.5``.
    """
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rescale_matrix(
    matrix: np.ndarray,
    fixed_scale: tuple[float, float] | float,
    moving_scale: tuple[float, float] | float,
) -> np.ndarray:
    """The fixed -> moving matrix between resized copies of both images.

    ``fixed_scale``/``moving_scale``: resize factors (new size / old size; one number or per
    axis) of the fixed and moving images. Takes an estimate on small copies to full resolution
    (factors > 1) or a full-resolution matrix to a preview (factors < 1), with no resampling.
    """
    fx, fy = (fixed_scale, fixed_scale) if np.isscalar(fixed_scale) else fixed_scale
    mx, my = (moving_scale, moving_scale) if np.isscalar(moving_scale) else moving_scale
    full = np.vstack([np.asarray(matrix, dtype=float), [0.0, 0.0, 1.0]])
    return (scale_matrix(mx, my) @ full @ np.linalg.inv(scale_matrix(fx, fy)))[:2]


def identity_matrix(fixed_size: tuple[int, int], moving_size: tuple[int, int]) -> np.ndarray:
    """The "no motion" matrix between (w, h) images showing the same field of view."""
    scale = (moving_size[0] / fixed_size[0], moving_size[1] / fixed_size[1])
    return rescale_matrix(IDENTITY, 1.0, scale)


def affine_about_centre(
    rotation_deg: float,
    scale: float,
    shear: float,
    shift: Sequence[float],
    size: tuple[int, int],
) -> np.ndarray:
    """Fixed -> moving matrix ``R(rotation) . scale . Shear`` about the image centre.

    ``shift`` moves the centre by (dx, dy) as fractions of the image's (w, h). This is the
    demo's truth convention, and the form :func:`decompose` takes apart.
    """
    w, h = size
    t = math.radians(rotation_deg)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    linear = rotation * scale @ np.array([[1.0, shear], [0.0, 1.0]])
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    offset = centre + np.asarray(shift, dtype=float) * np.array([w, h], float) - linear @ centre
    return np.hstack([linear, offset[:, None]])


def warp_image(
    moving: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    border_mode: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """Resample ``moving`` onto a (w, h) fixed grid with a fixed -> moving pixel matrix."""
    return cv2.warpAffine(
        np.asarray(moving),
        np.asarray(matrix, dtype=np.float64),
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=border_mode,
    )


def grid_error(
    estimated: np.ndarray, truth: np.ndarray, size: tuple[int, int], steps: int = 16
) -> float:
    """Mean displacement (px) between two fixed -> moving matrices on a grid over a (w, h) image.

    ``steps`` x ``steps`` points spanning the image corner to corner; this is the "residual
    error" of metrics/register.json and the accuracy measure of the tests and the benchmark.
    """
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, steps), np.linspace(0, h - 1, steps))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    diff = (np.asarray(estimated, dtype=float) - np.asarray(truth, dtype=float)) @ points
    return float(np.hypot(diff[0], diff[1]).mean())


def decompose(matrix: np.ndarray) -> dict[str, float]:
    """Rotation (degrees), scales and shear of A = R(angle) @ [[sx, sx * shear], [0, sy]].

    This is the demo's convention (M = R . scale . Shear). For a fixed -> moving matrix,
    ``angle`` turns fixed points into moving points (y down, so positive is clockwise on
    screen). ``det`` < 0 means a reflection.
    """
    a = np.asarray(matrix, dtype=float)[:2, :2]
    q, r = np.linalg.qr(a)
    # Make the triangular factor's diagonal positive so that q is a rotation (or a reflection).
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q, r = q * signs, (r.T * signs).T
    det_q = float(np.sign(np.linalg.det(q))) or 1.0
    return {
        "angle": math.degrees(math.atan2(q[1, 0], q[0, 0])),
        "sx": float(r[0, 0]),
        "sy": float(r[1, 1]) * det_q,
        "shear": float(r[0, 1] / r[0, 0]) if r[0, 0] else float("inf"),
        "det": float(np.linalg.det(a)),
    }


def motion(
    matrix: np.ndarray, fixed_size: tuple[int, int], moving_size: tuple[int, int]
) -> dict[str, float]:
    """The pose change a registration matrix describes, in units that compare across photos.

    The matrix is first taken to the fixed image's pixels on both sides (so a studio shot at
    another resolution moves by nothing when it shows the same view), then split as
    :func:`decompose` does: ``angle`` (degrees), ``scale`` (the larger of |sx - 1|, |sy - 1|),
    ``shear``, and ``shift``: how far the image centre moves, as a fraction of the longer
    side. NaN everywhere for a non-finite matrix.
    """
    m = np.asarray(matrix, dtype=float)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        nan = float("nan")
        return {"angle": nan, "scale": nan, "shear": nan, "shift": nan}
    w, h = fixed_size
    to_fixed = np.linalg.inv(np.vstack([identity_matrix(fixed_size, moving_size), [0, 0, 1]]))
    in_fixed = (to_fixed @ np.vstack([m, [0, 0, 1]]))[:2]
    parts = decompose(in_fixed)
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0, 1.0])
    moved = in_fixed @ centre - centre[:2]
    return {
        "angle": parts["angle"],
        "scale": max(abs(parts["sx"] - 1.0), abs(parts["sy"] - 1.0)),
        "shear": parts["shear"],
        "shift": float(np.hypot(*moved)) / max(w, h),
    }


__all__ = [
    "IDENTITY",
    "affine_about_centre",
    "decompose",
    "grid_error",
    "identity_matrix",
    "motion",
    "rescale_matrix",
    "resize",
    "scale_matrix",
    "to_grey",
    "warp_image",
]
