"""Putting relit faces back into the photo: upsampling, eq. 2 at full resolution, the blend.

The paper pasted its 512 px results into the photos by hand; here each face's result is mapped
back to the photo's own pixels with one affine (the inverse of its crop's, turn included, so a
face cropped upright is turned back in the same single warp), and blended with a feathered
ellipse that falls to exactly 0 inside the crop: pixels away from every face keep their value
bit for bit, and there is no seam.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.core.encodings import reconstruct
from pipeline.enhance import DEFAULT_FEATHER
from pipeline.faces.geometry import crop_matrix, invert
from pipeline.io import uint8_to_float

#: Default width of the mask's soft edge, as a fraction of the ellipse radius.
#: Half-axes of the blend ellipse as fractions of half the crop side (x, y): the face and hair
#: are taller than wide; both stay inside the crop so the mask is exactly 0 at its border.
MASK_AXES = (0.86, 0.98)

Crop = tuple[float, float, float]
Region = tuple[int, int, int, int]


def _ellipse(
    crop: Crop, angle: float, centre: tuple[float, float] | None
) -> tuple[float, float, float, float]:
    x0, y0, side = crop
    cx, cy = centre if centre is not None else (x0 + side / 2.0, y0 + side / 2.0)
    return cx, cy, MASK_AXES[0] * side / 2.0, MASK_AXES[1] * side / 2.0


def face_mask(
    shape: tuple[int, int],
    crop: Crop,
    origin: tuple[int, int] = (0, 0),
    feather: float = DEFAULT_FEATHER,
    angle: float = 0.0,
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """Feathered elliptical blend weight in [0, 1] for the square ``crop`` (x0, y0, side).

    Returns a float32 array of ``shape`` (h, w) whose pixel (i, j) is photo pixel
    (origin[0] + j, origin[1] + i). The ellipse (half-axes :data:`MASK_AXES` of half the side,
    centred on ``centre``, edge coordinates, default the crop's centre; turned by ``angle``
    degrees counter-clockwise with the face) is 1 inside ``1 - feather`` of its radius and
    falls to exactly 0 at the radius along a quintic smoothstep (continuous value, slope and
    curvature: no visible edge).
    """
    if not 0 < feather <= 1:
        raise ValueError(f"feather must be in (0, 1], got {feather}")
    cx, cy, rx, ry = _ellipse(crop, angle, centre)
    h, w = shape
    # Pixel centres of the photo are at integer coordinates; crop x0 is a pixel's left edge.
    ex = np.arange(w, dtype=np.float32) + np.float32(origin[0] + 0.5 - cx)
    ey = np.arange(h, dtype=np.float32) + np.float32(origin[1] + 0.5 - cy)
    if angle == 0.0:
        # In place from here: a face region of a 12 MP photo is millions of pixels.
        t = np.add((ey / np.float32(ry))[:, None] ** 2, (ex / np.float32(rx))[None, :] ** 2)
    else:
        # The face's own axes in the photo: x along (cos, -sin), y along (sin, cos).
        cos, sin = (
            np.float32(math.cos(math.radians(angle))),
            np.float32(math.sin(math.radians(angle))),
        )
        along = (ex[None, :] * cos - ey[:, None] * sin) / np.float32(rx)
        across = (ex[None, :] * sin + ey[:, None] * cos) / np.float32(ry)
        t = np.add(along * along, across * across)
    np.sqrt(t, out=t)  # elliptical radius, 1 on the ellipse
    np.subtract(1.0, t, out=t)
    t *= np.float32(1.0 / feather)
    np.clip(t, 0.0, 1.0, out=t)
    # Quintic smoothstep t^3 (6t^2 - 15t + 10): value, slope and curvature continuous.
    mask = t * np.float32(6.0)
    mask -= np.float32(15.0)
    mask *= t
    mask += np.float32(10.0)
    mask *= t
    mask *= t
    mask *= t
    # float32 rounding can lift the polynomial a hair above 1 just below t = 1.
    return np.minimum(mask, 1.0, out=mask)


def mask_region(
    crop: Crop,
    image_shape: Sequence[int],
    angle: float = 0.0,
    centre: tuple[float, float] | None = None,
) -> Region:
    """Photo pixels (x0, y0, x1, y1), clipped to the photo, where :func:`face_mask` can be > 0."""
    cx, cy, rx, ry = _ellipse(crop, angle, centre)
    if angle != 0.0:
        # Half-extents of the turned ellipse's bounding box.
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        rx, ry = math.hypot(rx * cos, ry * sin), math.hypot(rx * sin, ry * cos)
    h, w = int(image_shape[0]), int(image_shape[1])
    left = max(0, int(np.floor(cx - rx)))
    top = max(0, int(np.floor(cy - ry)))
    right = min(w, int(np.ceil(cx + rx)) + 1)
    bottom = min(h, int(np.ceil(cy + ry)) + 1)
    return left, top, max(left, right), max(top, bottom)


def upsample_to_region(
    small: np.ndarray, crop: Crop, region: Region, angle: float = 0.0
) -> np.ndarray:
    """Resample a size x size crop result onto photo pixels ``region`` (bilinear, one affine).

    Upright: same half-pixel convention as ``cv2.resize``: photo pixel u maps to crop pixel
    ``(u + 0.5 - x0) * size / side - 0.5``; so this equals resizing the result to the crop's
    side in the photo and cutting out ``region``, without building the full-size crop. With
    ``angle`` the map is the inverse of the crop's turned matrix: the face, cropped upright,
    goes back to its tilt in this same warp.
    """
    size = small.shape[0]
    x0, y0, side = crop
    if side < size:
        # A face smaller than the network's input: shrink with area averaging first (bilinear
        # sampling would alias), then the warp below does not shrink.
        small = cv2.resize(
            np.ascontiguousarray(small), (int(side), int(side)), interpolation=cv2.INTER_AREA
        )
        size = int(side)
    rx0, ry0, rx1, ry1 = region
    if angle == 0.0:
        scale = size / float(side)
        matrix = np.array(
            [
                [scale, 0.0, (rx0 + 0.5 - x0) * scale - 0.5],
                [0.0, scale, (ry0 + 0.5 - y0) * scale - 0.5],
            ],
            dtype=np.float64,
        )
    else:
        to_crop = invert(crop_matrix((x0, y0, side), size, angle))  # photo px -> crop px
        matrix = to_crop.copy()
        matrix[:, 2] += to_crop[:, 0] * rx0 + to_crop[:, 1] * ry0  # region px -> photo px
    return cv2.warpAffine(
        np.ascontiguousarray(small, dtype=np.float32),
        matrix,
        (rx1 - rx0, ry1 - ry0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,  # the matrix maps output -> source
        borderMode=cv2.BORDER_REPLICATE,
    )


def relit_change(
    image: np.ndarray,
    crop: np.ndarray,
    y: np.ndarray,
    square: Crop,
    region: Region,
    encoding: str,
    angle: float = 0.0,
    x: np.ndarray | None = None,
) -> np.ndarray:
    """clip(pred) - x over the photo pixels ``region``, pred at the photo's resolution.

    B and C: eq. 2 is affine in (x, y) and bilinear upsampling preserves affine combinations,
    so ``x - 2 up(y) + 1 == x + up(pred_crop - x_crop)``: upsampling the crop-size difference
    ``reconstruct(x_crop, y) - x_crop`` (= 1 - 2y, smooth) and adding the photo's own pixels is
    eq. 2 applied at full resolution, with one full-size temporary instead of three.
    A: the network's image itself, upsampled. A uint8 ``image`` is taken as x / 255 (only the
    region is converted). ``x``: that float region already made (:func:`region_pixels`).
    """
    rx0, ry0, rx1, ry1 = region
    if x is None:
        x = region_pixels(image, region)
    if encoding == "A":
        pred = upsample_to_region(y, square, region, angle)
    else:
        pred = upsample_to_region(reconstruct(crop, y, encoding) - crop, square, region, angle)
        pred += x
    np.clip(pred, 0.0, 1.0, out=pred)
    pred -= x
    return pred


def region_pixels(image: np.ndarray, region: Region) -> np.ndarray:
    """The photo's pixels over ``region`` as float (x / 255 for uint8: only the region is
    converted; a float photo gives a view)."""
    x0, y0, x1, y1 = region
    return _as_float(image[y0:y1, x0:x1])


def _as_float(pixels: np.ndarray) -> np.ndarray:
    return uint8_to_float(pixels) if pixels.dtype == np.uint8 else pixels


def _put(
    out: np.ndarray,
    image: np.ndarray,
    change: np.ndarray,
    region: Region,
    x: np.ndarray | None = None,
) -> None:
    """out[region] = x + change (x = image[region], or the float region given); a uint8
    ``out`` gets the rounded, saturated 8-bit value (what the writer makes of the float
    result), so a uint8 photo is blended and quantised in this one pass over the region, the
    rest never touched."""
    x0, y0, x1, y1 = region
    if out.dtype != np.uint8:
        np.add(image[y0:y1, x0:x1], change, out=out[y0:y1, x0:x1])
        return
    x = region_pixels(image, region) if x is None else x
    result = np.add(x, change, out=change)
    out[y0:y1, x0:x1] = cv2.convertScaleAbs(result, alpha=255.0)


def blend(
    out: np.ndarray,
    image: np.ndarray,
    changes: list[np.ndarray],
    masks: list[np.ndarray],
    regions: list[Region],
    xs: Sequence[np.ndarray | None] | None = None,
) -> None:
    """out = x + sum(m_i c_i) / max(1, sum(m_i)) with c_i = relit_i - x, over the regions.

    ``masks[i]`` is face i's :func:`face_mask` over ``regions[i]``. Where masks overlap
    (faces close together) the weights are normalised, so the result is always a convex
    combination of the input and the relit faces: no overshoot, no seam. Pixels where every
    mask is 0 get a change of exactly 0.0 and keep their value bit for bit. ``changes`` are
    consumed (scaled in place). ``image`` and ``out`` are float, or both uint8 (the photo's
    8-bit pixels: ``out`` gets the 8-bit result, as the writer would quantise it). ``xs``:
    each region's float pixels already made (:func:`region_pixels`, before ``out`` changed):
    one face's blend then converts nothing again.
    """
    live = [i for i, r in enumerate(regions) if r[2] > r[0] and r[3] > r[1]]
    for i in live:
        changes[i] *= masks[i][..., None]
    if len(live) == 1:
        # One face (the usual selfie): weights never exceed 1, no union arrays needed.
        (i,) = live
        _put(out, image, changes[i], regions[i], None if xs is None else xs[i])
        return
    if not live:
        return
    ux0 = min(regions[i][0] for i in live)
    uy0 = min(regions[i][1] for i in live)
    ux1 = max(regions[i][2] for i in live)
    uy1 = max(regions[i][3] for i in live)
    shape = (uy1 - uy0, ux1 - ux0)
    weight = np.zeros(shape, np.float32)
    change = np.zeros((*shape, 3), np.float32)
    for i in live:
        rx0, ry0, rx1, ry1 = regions[i]
        sub = (slice(ry0 - uy0, ry1 - uy0), slice(rx0 - ux0, rx1 - ux0))
        weight[sub] += masks[i]
        change[sub] += changes[i]
    change /= np.maximum(weight, 1.0)[..., None]
    _put(out, image, change, (ux0, uy0, ux1, uy1))


__all__ = [
    "DEFAULT_FEATHER",
    "MASK_AXES",
    "blend",
    "face_mask",
    "mask_region",
    "region_pixels",
    "relit_change",
    "upsample_to_region",
]
