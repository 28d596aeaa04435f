"""Crop geometry: face boxes, the square around a face, where it goes in the photo, matrices.

Coordinates: pixel centres sit at integer positions (OpenCV's convention). A face box is
``(top, right, bottom, left)`` as face_recognition returns it, read as box *edges* (the box
covers ``left <= x < right``); a crop box is ``(x0, y0, side)``: the square
``x0 <= x < x0 + side``, ``y0 <= y < y0 + side`` of the photo, turned by ``angle`` degrees
about its centre when the face is tilted (counter-clockwise on screen, OpenCV's
``getRotationMatrix2D`` convention, the one the augmentation's rotations use).

The paper (Section 4) crops a square around the detected face and resizes it to 512 px. Where
that square leaves the photo, something must fill the missing part; mirrored copies of the face
would be invented content that the loss and metrics then score. :func:`place_crop` therefore
first shifts the square inside the photo, then shrinks it (down to ``min_margin``), and only
then leaves padding, which the crop fills with a constant and marks in a validity mask.
"""

from __future__ import annotations

import math

import numpy as np

Box = tuple[int, int, int, int]
"""A face box (top, right, bottom, left) in pixels, face_recognition's order."""

CropBox = tuple[int, int, int]
"""A square crop (x0, y0, side) in photo pixels (turned about its centre by a crop angle)."""

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def box_area(box: Box) -> int:
    """Area in pixels of a (top, right, bottom, left) box."""
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def box_centre(box: Box) -> tuple[float, float]:
    """Centre (x, y) of a box, in edge coordinates (a box 0..2 has centre 1.0)."""
    top, right, bottom, left = box
    return (left + right) / 2.0, (top + bottom) / 2.0


def square_crop_box(face_box: Box, margin: float) -> CropBox:
    """The square crop around a face: ``(x0, y0, side)`` in the photo's pixels.

    The box's longer side grows by ``margin`` times itself on *each* side (margin 0.4 gives a
    square 1.8 times the face box, which keeps hair and chin: HOG boxes run from the brows
    to the chin), centred on the box centre. The square may leave the photo:
    :func:`place_crop` moves it inside.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (got {margin})")
    top, right, bottom, left = face_box
    if right <= left or bottom <= top:
        raise ValueError(f"empty face box {face_box} (top, right, bottom, left)")
    longer = max(right - left, bottom - top)
    side = max(1, round(longer * (1.0 + 2.0 * margin)))
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    return (round(cx - side / 2.0), round(cy - side / 2.0), side)


def _axis_start(start: int, side: int, extent: float, length: int) -> int:
    """Where a square of ``side`` whose turned footprint is ``extent`` wide starts on an axis
    of ``length`` pixels: as close to ``start`` as possible with the footprint inside
    [0, length], or, when the footprint is longer than the axis, covering all of it."""
    spill = (extent - side) / 2.0  # how far the turned corners reach past the square's sides
    lo = math.ceil(spill - 1e-9)  # smallest start with the footprint inside
    hi = math.floor(length - side - spill + 1e-9)  # largest start with it inside
    if lo <= hi:
        return min(max(start, lo), hi)
    # Too long for the axis: cover the whole axis, padding split as the face position allows.
    return min(max(start, hi), lo)


def place_crop(
    face_box: Box,
    width: int,
    height: int,
    margin: float,
    min_margin: float = 0.0,
    angle: float = 0.0,
) -> CropBox:
    """The crop square for ``face_box`` that invents as few pixels as possible.

    1. The square of :func:`square_crop_box` (side ``1 + 2 * margin`` times the face box).
    2. Shifted, as little as possible, so that it (turned by ``angle``, its footprint
       ``|cos| + |sin|`` times wider) lies inside the ``width`` x ``height`` photo.
    3. When it cannot fit, shrunk about the face centre until it fits, but never below
       ``1 + 2 * min_margin`` times the face box; then shifted as in 2.
    4. Whatever still sticks out is padding (the crop marks it invalid).

    With the face box inside the photo, the face box stays inside the crop (for angle 0
    exactly: shifting toward the photo never passes the box, and a square wider than the
    photo covers it whole).
    """
    if min_margin < 0 or min_margin > margin:
        raise ValueError(f"min_margin must be in [0, margin] (got {min_margin}, margin {margin})")
    if width <= 0 or height <= 0:
        raise ValueError(f"empty image {width}x{height}")
    x0, y0, side = square_crop_box(face_box, margin)
    spread = abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle)))
    fits = math.floor(min(width, height) / spread + 1e-9)
    if side > fits:
        top, right, bottom, left = face_box
        smallest = max(1, round(max(right - left, bottom - top) * (1.0 + 2.0 * min_margin)))
        new_side = max(fits, smallest)
        # Shrink about the same centre (half-pixel rounding as square_crop_box).
        cx, cy = x0 + side / 2.0, y0 + side / 2.0
        side = new_side
        x0, y0 = round(cx - side / 2.0), round(cy - side / 2.0)
    extent = side * spread
    return (
        _axis_start(x0, side, extent, width),
        _axis_start(y0, side, extent, height),
        side,
    )


def center_crop_box(width: int, height: int) -> CropBox:
    """The largest centred square of a ``width`` x ``height`` photo (the no-face fallback)."""
    side = min(width, height)
    if side <= 0:
        raise ValueError(f"empty image {width}x{height}")
    return ((width - side) // 2, (height - side) // 2, side)


def crop_matrix(crop_box: CropBox, size: int, angle: float = 0.0) -> np.ndarray:
    """2x3 matrix mapping an output pixel (u, v) of the ``size`` square to its photo pixel.

    Pixel centres map onto pixel centres: output pixel u covers photo pixels
    ``[x0 + u*s, x0 + (u+1)*s)`` with ``s = side / size``, whose centre is
    ``x0 + (u + 0.5) * s - 0.5``. With ``angle`` the square turns about its centre by that
    many degrees counter-clockwise, so a face tilted by ``angle`` comes out upright.
    """
    x0, y0, side = crop_box
    s = side / size
    if angle == 0.0:
        return np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]])
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # The same turn as cv2.getRotationMatrix2D(angle), which maps the upright face onto the
    # tilted one: an upright output pixel reads the tilted photo there.
    linear = s * np.array([[cos, sin], [-sin, cos]])
    centre_out = np.array([size / 2.0 - 0.5, size / 2.0 - 0.5])
    centre_in = np.array([x0 + side / 2.0 - 0.5, y0 + side / 2.0 - 0.5])
    return np.hstack([linear, (centre_in - linear @ centre_out)[:, None]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer o inner`` (apply ``inner`` first)."""
    outer, inner = np.asarray(outer, float), np.asarray(inner, float)
    linear = outer[:, :2] @ inner[:, :2]
    return np.hstack([linear, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of an invertible 2x3 affine matrix."""
    matrix = np.asarray(matrix, float)
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2])[:, None]])


def face_box_in_crop(face_box: Box, crop_box: CropBox, size: int, angle: float = 0.0) -> Box:
    """A photo face box in the coordinates of the ``size`` x ``size`` crop (edges scale).

    With a turned crop the box is the face's own upright box (see
    :class:`pipeline.faces.detect.Face`): its centre is mapped into the crop and its size
    scaled, so it stays upright there, as the face is.
    """
    top, right, bottom, left = face_box
    x0, y0, side = crop_box
    k = size / side
    if angle == 0.0:
        return (
            round((top - y0) * k),
            round((right - x0) * k),
            round((bottom - y0) * k),
            round((left - x0) * k),
        )
    # Edge coordinates = pixel-centre coordinates + 0.5 on both sides of the map.
    to_crop = invert(crop_matrix(crop_box, size, angle))
    cx, cy = box_centre(face_box)
    u, v = to_crop @ np.array([cx - 0.5, cy - 0.5, 1.0]) + 0.5
    half_w, half_h = (right - left) * k / 2.0, (bottom - top) * k / 2.0
    return (round(v - half_h), round(u + half_w), round(v + half_h), round(u - half_w))


def nominal_face_box(size: int, margin: float) -> Box:
    """The face box a crop of ``size`` implies when no face was detected.

    The centred square that :func:`square_crop_box` would have grown into the whole crop:
    side ``size / (1 + 2 * margin)``. The augmentation's face-box variants use it.
    """
    face = size / (1.0 + 2.0 * margin)
    lo, hi = round((size - face) / 2.0), round((size + face) / 2.0)
    return (lo, hi, hi, lo)


def crop_angle(roll: float, covered: tuple[float, float]) -> float:
    """The angle to turn a crop by for a face of ``roll`` degrees: 0 when the training
    augmentation's rotations (range ``covered``, e.g. (-20, 20)) already show the network
    such faces, else ``roll`` (the crop turns so the face is upright)."""
    low, high = covered
    return 0.0 if low <= roll <= high else float(roll)


__all__ = [
    "IDENTITY",
    "Box",
    "CropBox",
    "box_area",
    "box_centre",
    "center_crop_box",
    "compose",
    "crop_angle",
    "crop_matrix",
    "face_box_in_crop",
    "invert",
    "nominal_face_box",
    "place_crop",
    "square_crop_box",
]
