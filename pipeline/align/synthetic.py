"""Synthetic flash/studio pairs with a known answer: check a registration on your own photos.

A portrait becomes a pair: the *studio* shot is the portrait moved by a random in-range pose
change, the *flash* shot is the portrait in place under a strong flash-like relighting. The
true matrix is known, so the registration's error is measured in pixels. Used by the tests,
``benchmarks/bench_registration.py`` and anyone checking the registration on new material.

In-range motion (:data:`MOTION_RANGE`): what two shots ~400 ms apart differ by (the demo's
widest misalignment): rotation up to 5 degrees, scale 0.95 to 1.05, shift up to 3 % of the
side, shear up to 0.03. The relighting is what a point light at the lens does (the paper's
Sec. 3): a brighter, flatter face (gamma 0.6), an inverse-square fall-off towards the edges,
a cooler white balance, overexposure (x1.4, clipped) and sensor noise.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from pipeline.align.geometry import affine_about_centre

MOTION_RANGE = {"rotation_deg": 5.0, "scale": 0.05, "shift": 0.03, "shear": 0.03}


def pair_rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one (seed, photo name): the same pair on every run and machine."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def random_motion(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A fixed -> moving matrix with every parameter uniform in :data:`MOTION_RANGE`."""
    r = MOTION_RANGE
    rotation = rng.uniform(-r["rotation_deg"], r["rotation_deg"])
    scale = rng.uniform(1 - r["scale"], 1 + r["scale"])
    shear = rng.uniform(-r["shear"], r["shear"])
    shift = rng.uniform(-r["shift"], r["shift"], 2)
    return affine_about_centre(rotation, scale, shear, shift, size)


def flash_relight(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A strong flash-like relighting of a float RGB image in [0, 1] (see the module doc)."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # The light's axis hits a little left of and above the centre (a hand-held phone).
    r2 = ((xx - 0.45 * w) ** 2 + (yy - 0.4 * h) ** 2) / (0.5 * max(h, w)) ** 2
    falloff = (1.0 / (1.0 + 1.5 * r2))[..., None]
    lit = np.asarray(image, np.float32) ** 0.6 * falloff * np.array([0.85, 1.0, 1.2], np.float32)
    noise = rng.normal(0.0, 0.01, lit.shape).astype(np.float32)
    return np.clip(lit * 1.4 + noise, 0.0, 1.0)


def synthetic_pair(
    image: np.ndarray,
    rng: np.random.Generator,
    max_side: int = 512,
    matrix: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flash, studio, true matrix) made from one float RGB portrait in [0, 1].

    The portrait is first shrunk to ``max_side`` (the registration's working size, so that
    errors are in the pixels it works in). ``matrix`` (fixed -> moving, pixels of the shrunk
    portrait) defaults to :func:`random_motion`; the studio shot shows flash pixel p at studio
    pixel ``matrix @ p``, its border mirrored.
    """
    base = np.asarray(image, dtype=np.float32)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    base = base[..., :3]
    h, w = base.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        base = cv2.resize(base, size, interpolation=cv2.INTER_AREA)
    h, w = base.shape[:2]
    truth = random_motion(rng, (w, h)) if matrix is None else np.asarray(matrix, float)
    studio = cv2.warpAffine(
        base, truth, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return flash_relight(base, rng), studio, truth


__all__ = ["MOTION_RANGE", "flash_relight", "pair_rng", "random_motion", "synthetic_pair"]
