"""Red-eye and its look-alikes painted into the shared portraits, with known pixels.

A flash red-eye is the retina lit through a dilated pupil: the pupil's red channel rises, its
green and blue stay what they were (times the flash's gain). :func:`paint_pupil` paints that:
a disc at the iris centre with a soft edge, a little darker toward its rim, a white
catch-light up and to the right, of a given fraction of the iris. The look-alikes (red
lipstick, red glasses frames, red eye shadow, a red background) are painted from the
68-point landmarks or the face box. Used by tests/test_enhance_redeye.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: The iris radius as a fraction of the eye opening's width (an adult iris is about 11.7 mm
#: across, an eye opening about 28 mm wide).
IRIS_RADIUS = 0.21
#: (red level, green/blue gain) of the painted pupils: from the dim crimson of the shared
#: ``redeye_woman_flash.jpg`` to a bright flash red.
REDS = ((0.45, 1.0), (0.6, 1.1), (0.75, 1.0), (0.5, 1.2))


@dataclass(frozen=True)
class Painted:
    """A painted photo, the pupil's inner pixels (the soft edge and catch-light left out) and
    the catch-light's core pixels."""

    image: np.ndarray
    inner: np.ndarray
    catchlight: np.ndarray


def eye_width(eye: np.ndarray) -> float:
    """Corner-to-corner width of a 6-point eye opening."""
    return float(np.hypot(*(eye[3] - eye[0])))


def iris_centre(image: np.ndarray, eye: np.ndarray) -> tuple[float, float]:
    """The iris centre of an eye opening: the darkest band of columns across the opening
    (the iris spans it top to bottom, the sclera on either side is bright), halfway between
    the lids there."""
    width = eye_width(eye)
    x0, y0 = np.floor(eye.min(axis=0)).astype(int)
    x1, y1 = np.ceil(eye.max(axis=0)).astype(int) + 1
    lum = image[y0:y1, x0:x1].mean(axis=2)
    inside = np.zeros(lum.shape, np.uint8)
    cv2.fillPoly(inside, [np.rint(eye - [x0, y0]).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=max(1, round(0.04 * width)))
    inside = inside.astype(bool)
    cols = np.flatnonzero(inside.any(axis=0))
    mean = np.array([lum[inside[:, c], c].mean() for c in cols])
    k = max(1, round(0.25 * width))
    smooth = np.convolve(mean, np.ones(k) / k, mode="same")
    lo, hi = len(cols) // 5, len(cols) - len(cols) // 5
    col = cols[lo + int(np.argmin(smooth[lo:hi]))]
    rows = np.flatnonzero(inside[:, col])
    return float(x0 + col), float(y0 + (rows.min() + rows.max()) / 2.0)


def paint_pupil(
    image: np.ndarray, eye: np.ndarray, fraction: float, red: tuple[float, float]
) -> Painted:
    """``image`` (float RGB) with a red pupil of ``fraction`` of the iris painted into the
    eye opening ``eye`` (6 x 2 photo points); ``red`` is (red level, green/blue gain).

    The red channel rises to the level (1.8 (g + b) at least, so every painted pixel is
    clearly red), dimmed by 30 % toward the rim; green and blue keep the eye's own pattern.
    """
    cx, cy = iris_centre(image, eye)
    radius = fraction * IRIS_RADIUS * eye_width(eye)
    level, gain = red
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy)
    alpha = np.clip((radius - dist) / 1.5 + 0.5, 0.0, 1.0)
    shade = 1.0 - 0.3 * np.clip(dist / radius, 0.0, 1.0)
    out = image.copy()
    out[..., 1:] = image[..., 1:] * (1.0 + (gain - 1.0) * alpha[..., None])
    glow = np.clip(np.maximum(level * shade, 1.8 * (out[..., 1] + out[..., 2])), 0.0, 1.0)
    out[..., 0] = image[..., 0] * (1.0 - alpha) + alpha * glow
    spot = np.hypot(xx - (cx + 0.3 * radius), yy - (cy - 0.3 * radius))
    light = np.clip((max(1.0, 0.25 * radius) - spot) + 0.5, 0.0, 1.0)[..., None]
    out = out * (1.0 - light) + light * 0.97
    inner = (dist < radius - 1.0) & (light[..., 0] < 0.01)
    return Painted(np.clip(out, 0.0, 1.0).astype(np.float32), inner, light[..., 0] > 0.99)


def paint_polygon(
    image: np.ndarray, points: np.ndarray, colour: tuple[float, float, float], alpha: float
) -> np.ndarray:
    """``image`` with the filled polygon ``points`` blended toward ``colour`` by ``alpha``
    (lipstick, eye shadow)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
    weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5)[..., None] * alpha
    return (image * (1 - weight) + weight * np.array(colour, np.float32)).astype(np.float32)


def paint_frames(image: np.ndarray, eyes: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Red glasses frames: a rounded rectangle around each eye (0.45 eye widths above and
    below its centre, 0.2 beyond the corners) and a bridge, 0.06 eye widths thick."""
    out = np.ascontiguousarray(image.copy())
    width = eye_width(eyes[0])
    thick = max(2, round(0.06 * width))
    colour = (0.8, 0.05, 0.08)
    centres = []
    for eye in eyes:
        cx, cy = eye.mean(axis=0)
        axes = (round(0.5 * width + 0.2 * width), round(0.45 * width))
        cv2.ellipse(out, (round(cx), round(cy)), axes, 0, 0, 360, colour, thick, cv2.LINE_AA)
        centres.append((cx, cy))
    (ax, ay), (bx, by) = centres
    cv2.line(
        out, (round(ax + 0.7 * width), round(ay)), (round(bx - 0.7 * width), round(by)),
        colour, thick, cv2.LINE_AA,
    )  # fmt: skip
    return out


def paint_background(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A red wall right up to the face: every pixel outside the face box's ellipse (its
    sides at the box's sides, no margin) turned red (0.85, 0.08, 0.1)."""
    top, right, bottom, left = box
    mask = np.ones(image.shape[:2], np.uint8)
    centre = (round((left + right) / 2), round((top + bottom) / 2))
    cv2.ellipse(
        mask, centre, (round((right - left) / 2), round((bottom - top) * 0.8)), 0, 0, 360, 0, -1
    )
    out = image.copy()
    out[mask.astype(bool)] = (0.85, 0.08, 0.1)
    return out
