"""The repair of a red pupil (:mod:`pipeline.enhance.redeye` finds it): a feathered weight
over the pupil and, from the iris ring around it, the colour the pupil takes.

Green and blue are kept (the flash lit the retina red; they keep the pupil's brightness
pattern), their balance held within the iris ring's, and red is set from them by the
least-squares rule r = a g + b b of the ring (a pupil seen without flash has the camera's
colour balance and the iris's cast), within the ring's range of r / (g + b). The change is
weighted by the pixel's own redness and the feathered mask, so the edge is soft and the
catch-light (white, not red) is kept as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: The iris ring whose colour the repaired pupil takes reaches this many pupil diameters
#: beyond the pupil (:func:`pupil_weight`).
RING_REACH = 0.6
#: Percentiles of the ring's r / (g + b) and (g - b) / (g + b) that bound the repaired
#: pupil's (:func:`iris_tint`).
RING_PERCENTILES = (1.0, 99.0)
#: Inside the filled pupil the repair is full from r / (g + b) = :data:`INNER_GATE`\ [1]
#: down to none at [0]: a bright reflection on the pupil that the flash's red washed pink
#: (r clipped at white) is repaired too, a white catch-light (ratio 0.5) is kept.
INNER_GATE = (0.55, 0.75)
#: Largest r / (g + b) of a repaired pupil (a neutral grey has 0.5).
MAX_PUPIL_RATIO = 0.8
#: Fewest ring pixels to fit the pupil's colour rule to.
MIN_RING = 4
_EPS = 1e-6


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` 4-connected steps (a 3x3 cross, ``steps`` times)."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.dilate(mask.astype(np.uint8), cross, iterations=steps).astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the holes of its regions (a catch-light inside a pupil) filled."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, cv2.FILLED)
    return filled.astype(bool) | mask


def _ratio(patch: np.ndarray) -> np.ndarray:
    """r / (g + b) of a float RGB patch."""
    return patch[..., 0] / (patch[..., 1] + patch[..., 2] + _EPS)


def redness_gate(patch: np.ndarray, low: float = 0.7, high: float = 1.0) -> np.ndarray:
    """Redness weight: 1 from r / (g + b) = ``high`` up, 0 below ``low`` (by default: skin,
    iris, catch-light)."""
    ratio = _ratio(patch)
    return np.clip((ratio - low) / (high - low), 0.0, 1.0)


def pupil_weight(
    patch: np.ndarray, pupil: np.ndarray, inside: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feather, repair weight and iris ring of the red pupil ``pupil`` (bool) of ``patch``.

    The weight is a feathered copy of the filled pupil mask times the pixel's own redness
    (full from r / (g + b) = 1 up, none below 0.7; inside the filled pupil by
    :data:`INNER_GATE`), so the soft red edge fades out and the catch-light (white: its ratio
    far below 1) is left alone. The ring reaches :data:`RING_REACH` diameters beyond the
    pupil, outside the feather's reach, its non-red pixels only, and within ``inside`` (the
    eye opening: the lids' skin is no guide to a pupil's colour) when that leaves a few.
    """
    filled = fill_holes(pupil)
    diameter = 2.0 * math.sqrt(filled.sum() / math.pi)
    reach = dilate(filled, max(1, round(0.2 * diameter)))
    feather = cv2.GaussianBlur(reach.astype(np.float32), (0, 0), max(0.5, 0.08 * diameter)) * reach
    ratio = _ratio(patch)
    ring = dilate(filled, max(2, round(RING_REACH * diameter))) & ~reach & (ratio < 0.9)
    if inside is not None and (ring & inside).sum() >= MIN_RING:
        ring &= inside
    feather = feather.astype(np.float32)
    gate = np.where(filled, redness_gate(patch, *INNER_GATE), redness_gate(patch))
    return feather, feather * gate, ring


@dataclass(frozen=True)
class IrisColour:
    """How a repaired pupil's colour follows its own green and blue, measured on the iris
    ring (:func:`iris_tint`): red = ``gains`` . (g, b), its r / (g + b) within ``ratio``, and
    the pupil's balance (g - b) / (g + b) kept within ``balance``."""

    gains: tuple[float, float] = (0.5, 0.5)
    ratio: tuple[float, float] = (0.5, 0.5)
    balance: tuple[float, float] = (0.0, 0.0)


def iris_tint(patch: np.ndarray, ring: np.ndarray) -> IrisColour:
    """The repaired pupil's colour rule from the iris ``ring`` of ``patch``: the gains of the
    least-squares fit r = a g + b b over the ring (the camera's colour balance and the iris's
    cast at that eye, which a pupil seen without flash has), and the ring's
    :data:`RING_PERCENTILES` of r / (g + b) and of (g - b) / (g + b), the colours the rule is
    trusted in (the magenta glow of the shared real red-eye photos tints the pupil's blue
    above its green, beyond any iris colour: kept, that would leave the pupil blue). Neutral
    grey when the ring is too small to fit."""
    if ring.sum() < MIN_RING:
        return IrisColour()
    pixels = patch[ring].astype(np.float64)
    gains, *_ = np.linalg.lstsq(pixels[:, 1:], pixels[:, 0], rcond=None)
    if not np.all(np.isfinite(gains)):
        return IrisColour()
    total = pixels[:, 1] + pixels[:, 2] + _EPS
    ratio = np.percentile(pixels[:, 0] / total, RING_PERCENTILES)
    balance = np.percentile((pixels[:, 1] - pixels[:, 2]) / total, RING_PERCENTILES)
    return IrisColour(
        (float(gains[0]), float(gains[1])),
        (float(ratio[0]), float(ratio[1])),
        (float(balance[0]), float(balance[1])),
    )


def repair_pupil(patch: np.ndarray, weight: np.ndarray, tint: IrisColour) -> np.ndarray:
    """``patch`` (float RGB) with its red pupil made dark, blended in by ``weight``
    (:func:`pupil_weight`): g + b kept (the flash lit the retina red; they keep the pupil's
    brightness pattern), their balance kept within the iris ring's, and red set by the ring's
    rule ``tint`` (:func:`iris_tint`), at most :data:`MAX_PUPIL_RATIO` (g + b) (a reddish
    iris rim must not bring the red back)."""
    g, b = patch[..., 1], patch[..., 2]
    total = g + b
    balance = np.clip((g - b) / (total + _EPS), *tint.balance)
    g, b = total * (1.0 + balance) / 2.0, total * (1.0 - balance) / 2.0
    low, high = tint.ratio[0], min(tint.ratio[1], MAX_PUPIL_RATIO)
    red = np.clip(tint.gains[0] * g + tint.gains[1] * b, min(low, high) * total, high * total)
    dark = np.stack([red, g, b], axis=-1).astype(patch.dtype, copy=False)
    return patch + weight[..., None] * (dark - patch)


__all__ = [
    "IrisColour",
    "dilate",
    "fill_holes",
    "iris_tint",
    "pupil_weight",
    "redness_gate",
    "repair_pupil",
]
