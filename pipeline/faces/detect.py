"""Face detection and the square face crop of a flash/studio pair (the paper's Section 4).

The face is found on the flash image R (the registration's fixed image) with
face_recognition (dlib HOG, or its CNN); the paper also ran it on the studio images M and M',
which after registration share R's geometry, so one detection serves the pair. The chosen box (the largest face) is grown by a
margin and made square; that square, in flash-photo pixels, is cropped from the flash image
and resized to ``size`` x ``size``. The studio image is *warped* onto the same square: its
registration matrix (flash pixel -> studio pixel) is composed with the crop-and-resize so
that each studio output pixel is interpolated once, straight from the full-resolution studio
photo (no aligned full-resolution copy is ever made). Flash and studio go through the same
resampling code (the flash with the identity matrix), so their geometry is consistent.

Coordinates: pixel centres sit at integer positions (OpenCV's convention). A face box is
``(top, right, bottom, left)`` as face_recognition returns it, read as box *edges* (the box
covers ``left <= x < right``); a crop box is ``(x0, y0, side)`` and covers the flash pixels
``x0 <= x < x0 + side``, ``y0 <= y < y0 + side`` (it may stick out of the photo: the missing
part is padded).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.io import ImageReadError, read_image, read_json, write_image, write_json
from pipeline.parallel import parallel_map

Box = tuple[int, int, int, int]
"""A face box (top, right, bottom, left) in pixels, face_recognition's order."""

CropBox = tuple[int, int, int]
"""A square crop (x0, y0, side) in flash-photo pixels."""

DETECTORS = ("hog", "cnn")
PAD_MODES = ("constant", "edge", "reflect")
ON_MISSING = ("center", "reject")

_CV2_BORDER = {
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT_101,
}

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class NoFaceError(ValueError):
    """No face was found and the caller asked to reject such images."""


# --------------------------------------------------------------------------- detection


@cache
def _face_locations() -> Any:
    # face_recognition loads its models at import (about a second) and its models package
    # warns about pkg_resources: import it once, only when detection is really needed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    return face_recognition.face_locations


def load_detector() -> None:
    """Import face_recognition and load its models now.

    A stage calls it before starting worker processes: forked workers then share the loaded
    models instead of each importing them again (about a second apiece).
    """
    _face_locations()


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind == "f":
            array = np.clip(np.rint(np.nan_to_num(array) * 255.0), 0, 255)
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def detect_faces(
    image: np.ndarray,
    detector: str = "hog",
    max_side: int = 800,
    upsample: int = 1,
) -> list[Box]:
    """All faces in ``image`` as (top, right, bottom, left) boxes, largest first.

    ``image`` is HxW(x3) float in [0, 1] or uint8. Detection runs on a copy whose longer side
    is at most ``max_side`` (area-averaged, so fine detail does not alias), converted to
    uint8 as dlib wants; the boxes are mapped back to the input's pixel coordinates and
    clipped to it. ``upsample`` is face_recognition's ``number_of_times_to_upsample``: at
    ``max_side`` 800 with 1 upsampling, faces down to about 40 px of the small copy (5 % of
    its side) are found. Ties in area are broken by position, so the order is deterministic.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; use one of {DETECTORS}")
    if max_side < 1 or upsample < 0:
        raise ValueError(f"max_side must be >= 1 and upsample >= 0 (got {max_side}, {upsample})")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        small_w, small_h = max(1, round(width * factor)), max(1, round(height * factor))
        # Shrink before the uint8 conversion: INTER_AREA on the original values, one rounding.
        small = cv2.resize(np.asarray(image), (small_w, small_h), interpolation=cv2.INTER_AREA)
    else:
        small, small_w, small_h = np.asarray(image), width, height
    locations = _face_locations()(_to_uint8_rgb(small), upsample, detector)
    # Box edges scale with the image edges: 0 -> 0 and small_w -> width.
    fx, fy = width / small_w, height / small_h
    boxes: list[Box] = []
    for top, right, bottom, left in locations:
        box = (
            int(np.clip(round(top * fy), 0, height)),
            int(np.clip(round(right * fx), 0, width)),
            int(np.clip(round(bottom * fy), 0, height)),
            int(np.clip(round(left * fx), 0, width)),
        )
        if box[2] > box[0] and box[1] > box[3]:
            boxes.append(box)
    boxes.sort(key=lambda b: (-box_area(b), b[0], b[3], b[2], b[1]))
    return boxes


def box_area(box: Box) -> int:
    """Area in pixels of a (top, right, bottom, left) box."""
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


# --------------------------------------------------------------------------- crop geometry


def square_crop_box(face_box: Box, margin: float) -> CropBox:
    """The square crop around a face: ``(x0, y0, side)`` in the photo's pixels.

    The box's longer side grows by ``margin`` times itself on *each* side (margin 0.4 gives a
    square 1.8 times the face box, which keeps hair and chin: HOG boxes run from the brows
    to the chin), centred on the box centre. The square may leave the photo; the resampling
    pads the missing part.
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


def center_crop_box(width: int, height: int) -> CropBox:
    """The largest centred square of a ``width`` x ``height`` photo (the no-face fallback)."""
    side = min(width, height)
    if side <= 0:
        raise ValueError(f"empty image {width}x{height}")
    return ((width - side) // 2, (height - side) // 2, side)


def crop_matrix(crop_box: CropBox, size: int) -> np.ndarray:
    """2x3 matrix mapping an output pixel (u, v) of the ``size`` square to its flash pixel.

    Pixel centres map onto pixel centres: output pixel u covers flash pixels
    ``[x0 + u*s, x0 + (u+1)*s)`` with ``s = side / size``, whose centre is
    ``x0 + (u + 0.5) * s - 0.5``.
    """
    x0, y0, side = crop_box
    s = side / size
    return np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine ``outer o inner`` (apply ``inner`` first)."""
    outer, inner = np.asarray(outer, float), np.asarray(inner, float)
    linear = outer[:, :2] @ inner[:, :2]
    return np.hstack([linear, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def face_box_in_crop(face_box: Box, crop_box: CropBox, size: int) -> Box:
    """A photo face box in the coordinates of the ``size`` x ``size`` crop (edges scale)."""
    top, right, bottom, left = face_box
    x0, y0, side = crop_box
    k = size / side
    return (
        round((top - y0) * k),
        round((right - x0) * k),
        round((bottom - y0) * k),
        round((left - x0) * k),
    )


def nominal_face_box(size: int, margin: float) -> Box:
    """The face box a crop of ``size`` implies when no face was detected.

    The centred square that :func:`square_crop_box` would have grown into the whole crop:
    side ``size / (1 + 2 * margin)``. The augmentation's face-box variants use it.
    """
    face = size / (1.0 + 2.0 * margin)
    lo, hi = round((size - face) / 2.0), round((size + face) / 2.0)
    return (lo, hi, hi, lo)


# --------------------------------------------------------------------------- resampling


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
        return window.astype(np.float32) * np.float32(1 / 255)
    if window.dtype == np.uint16:
        return window.astype(np.float32) * np.float32(1 / 65535)
    return np.ascontiguousarray(window, dtype=np.float32)


# Anti-aliasing strength: Gaussian sigma = ANTIALIAS * sqrt(r^2 - 1) reduced pixels for a
# remaining shrink factor r. With the pyramid levels this low-passes about 0.42 x the scale
# (in source pixels), near the usual 0.5 x scale rule, a little sharper. Measured on a 12 MP
# portrait cropped to 512 px: gratings above the output's Nyquist frequency come out flat
# (std < 0.002), and flash and studio crops of a synthetic pair agree to 0.0005 on average.
ANTIALIAS = 0.4


def resample(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int,
    pad_mode: str = "reflect",
) -> np.ndarray:
    """The ``size`` x ``size`` image whose pixel (u, v) is ``image`` at ``matrix @ (u, v, 1)``.

    ``matrix`` is a 2x3 output-pixel -> source-pixel map (e.g. registration o crop). One
    bilinear interpolation from the source, anti-aliased when it shrinks. With s the linear
    scale of ``matrix`` (source pixels per output pixel):

    1. only the window of the source the output needs is taken (padded per ``pad_mode``
       where it leaves the photo): never a full-resolution intermediate;
    2. while s is 4 or more, the window is halved by ``cv2.pyrDown`` (5-tap Gaussian, then
       every other pixel: a proper anti-aliased halving, no interpolation), leaving a factor
       r = s / 2^levels in [2, 4);
    3. a Gaussian of sigma ``ANTIALIAS * sqrt(r^2 - 1)`` removes what the output cannot
       hold (none when the image is enlarged);
    4. one ``cv2.warpAffine`` (bilinear) with the matrix adjusted for the window and levels.

    Stopping the pyramid at r >= 2 keeps the last image oversampled relative to the output,
    so the bilinear sampling barely depends on where the samples fall between pixels: the
    flash (identity) and studio (rotated, scaled) crops of the same scene come out the same.
    Returns float32 in [0, 1]; uint8/uint16 inputs are converted after the window is cut.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {pad_mode!r}; use one of {PAD_MODES}")
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
    x_lo = math.floor(corners[:, 0].min()) - pad
    y_lo = math.floor(corners[:, 1].min()) - pad
    x_hi = math.ceil(corners[:, 0].max()) + pad
    y_hi = math.ceil(corners[:, 1].max()) + pad
    window = _extract(np.asarray(image), x_lo, y_lo, x_hi, y_hi, pad_mode)
    for _ in range(levels):
        window = cv2.pyrDown(window)
    if sigma:
        window = cv2.GaussianBlur(window, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    # pyrDown's pixel j is centred on its input's pixel 2j: after the levels, window pixel
    # (i, j) is source pixel (x_lo + k*j, y_lo + k*i).
    to_window = np.array([[1.0 / k, 0.0, -x_lo / k], [0.0, 1.0 / k, -y_lo / k]])
    # The window covers every sample (pad above), so the border mode is never reached.
    out = cv2.warpAffine(
        window,
        compose(to_window, matrix),
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if out.ndim == 2 and np.asarray(image).ndim == 3:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0)


def crop_pair(
    flash: np.ndarray,
    studio: np.ndarray,
    registration: np.ndarray,
    crop_box: CropBox,
    size: int,
    pad_mode: str = "reflect",
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the flash photo to ``crop_box`` and warp the studio photo onto the same square.

    ``registration`` is the 2x3 full-resolution matrix mapping a flash pixel (x, y) to the
    matching studio pixel (the registration contract: studio -> flash, 2x3 in pixels). Both images go through :func:`resample`, the flash
    with the identity, the studio with registration o crop: one interpolation each, from
    the full-resolution photos. Returns two ``size`` x ``size`` float32 images in [0, 1].
    """
    to_flash = crop_matrix(crop_box, size)
    flash_out = resample(flash, compose(IDENTITY, to_flash), size, pad_mode)
    studio_out = resample(studio, compose(registration, to_flash), size, pad_mode)
    return flash_out, studio_out


# --------------------------------------------------------------------------- one pair


@dataclass(frozen=True)
class FaceCrop:
    """The face crop of one pair: the two squares and how they were chosen."""

    flash: np.ndarray
    studio: np.ndarray
    crop: CropBox
    face_box: Box
    faces: list[Box]
    method: str  # "detected" | "center"


def crop_faces(
    flash: np.ndarray,
    studio: np.ndarray,
    registration: np.ndarray,
    *,
    size: int,
    detector: str = "hog",
    max_side: int = 800,
    upsample: int = 1,
    margin: float = 0.4,
    pad_mode: str = "reflect",
    on_missing: str = "center",
) -> FaceCrop:
    """Detect the face on the flash image and crop both images of the pair around it.

    The largest face wins. Without a face, ``on_missing="center"`` takes the largest
    centred square (Yale B images are already tight face crops) and ``"reject"`` raises
    :class:`NoFaceError`.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"unknown on_missing {on_missing!r}; use one of {ON_MISSING}")
    faces = detect_faces(flash, detector=detector, max_side=max_side, upsample=upsample)
    height, width = flash.shape[:2]
    if faces:
        crop = square_crop_box(faces[0], margin)
        face_box = face_box_in_crop(faces[0], crop, size)
        method = "detected"
    elif on_missing == "center":
        crop = center_crop_box(width, height)
        face_box = nominal_face_box(size, margin)
        method = "center"
    else:
        raise NoFaceError(f"no face found ({detector} detector, {width}x{height})")
    flash_out, studio_out = crop_pair(flash, studio, registration, crop, size, pad_mode)
    return FaceCrop(flash_out, studio_out, crop, face_box, faces, method)


def crop_pair_files(
    pair_id: str,
    flash_path: str | os.PathLike,
    studio_path: str | os.PathLike,
    registration: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    size: int,
    max_pixels: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Read a pair, crop it and write ``<pair_id>_flash.png``, ``_studio.png``, ``.json``.

    ``options`` are :func:`crop_faces`'s keyword arguments (detector, max_side, upsample,
    margin, pad_mode, on_missing). Returns the JSON record plus the two PNG paths (keys
    ``flash``, ``studio``). Raises :class:`pipeline.io.ImageReadError` for an unusable image
    and :class:`NoFaceError` when no face is found and ``on_missing`` is ``"reject"``.
    """
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    flash = read_image(flash_path, **kwargs)
    studio = read_image(studio_path, **kwargs)
    result = crop_faces(
        flash, studio, np.asarray(registration, dtype=np.float64), size=size, **options
    )
    out_dir = Path(out_dir)
    flash_png = write_image(out_dir / f"{pair_id}_flash.png", result.flash)
    studio_png = write_image(out_dir / f"{pair_id}_studio.png", result.studio)
    record = {
        "pair_id": pair_id,
        "crop": list(result.crop),
        "face_box": list(result.face_box),
        "faces": [list(box) for box in result.faces],
        "method": result.method,
        "size": size,
    }
    write_json(out_dir / f"{pair_id}.json", record)
    return {**record, "flash": str(flash_png), "studio": str(studio_png)}


# --------------------------------------------------------------------------- a dataset

INDEX_COLUMNS = (
    "pair_id",
    "subject",
    "split",
    "flash",
    "studio",
    "face_top",
    "face_right",
    "face_bottom",
    "face_left",
)
"""Columns of ``data/interim/faces/index.csv`` (the face box is in the crop's pixels)."""


def registration_matrix(path: str | os.PathLike) -> tuple[np.ndarray | None, str]:
    """The 2x3 matrix of a register-stage JSON file, or ``(None, reason)`` when unusable.

    Unusable: no file, registration status ``rejected``, unreadable JSON, or a matrix that
    is not a finite, invertible 2x3 matrix.
    """
    path = Path(path)
    if not path.is_file():
        return None, "no registration result (run the register stage)"
    try:
        record = read_json(path)
        if record.get("status") == "rejected":
            return None, f"registration rejected: {record.get('reason') or 'no reason'}"
        matrix = np.asarray(record["matrix"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"unreadable registration ({error.__class__.__name__}: {error})"
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        return None, f"registration matrix is not a finite 2x3 matrix: {record['matrix']}"
    if abs(np.linalg.det(matrix[:, :2])) < 1e-6:
        return None, "registration matrix is degenerate"
    return matrix, ""


@dataclass
class CropRun:
    """What :func:`crop_dataset` did: index rows, rejected inputs (file, reason), counts."""

    index: pd.DataFrame
    rejected: list[tuple[str, str]]
    metrics: dict[str, int]


def _crop_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """One pair for :func:`crop_dataset` (module level: it runs in worker processes)."""
    pair_id, flash_path, studio_path, matrix, out_dir, size, options = job
    try:
        return crop_pair_files(
            pair_id, flash_path, studio_path, matrix, out_dir, size=size, **options
        )
    except ImageReadError as error:
        return {"pair_id": pair_id, "file": error.path, "reason": error.reason}
    except NoFaceError as error:
        return {"pair_id": pair_id, "file": str(flash_path), "reason": str(error)}


def crop_options(group: Any) -> dict[str, Any]:
    """:func:`crop_faces` keyword arguments from the ``crop`` params group (one mapping for the
    crop stage and ``deepflash evaluate``)."""
    return {
        "detector": group.detector,
        "max_side": group.detect_max_side,
        "upsample": group.upsample,
        "margin": group.margin,
        "pad_mode": group.pad_mode,
        "on_missing": group.on_missing,
    }


def crop_dataset(
    manifest: pd.DataFrame,
    registered_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    size: int,
    workers: int = 1,
    progress: bool = False,
    **options: Any,
) -> CropRun:
    """Crop every manifest pair with its registration into ``out_dir`` (crop stage contract).

    ``manifest`` needs columns pair_id, subject, split, flash_path, studio_path;
    ``registered_dir`` holds the register stage's ``<pair_id>.json``. ``options`` are
    :func:`crop_faces`'s keyword arguments. Pairs without a usable registration, with an
    unreadable image or (``on_missing="reject"``) without a face are rejected with the file
    and the reason; nothing raises for one bad pair. Pairs run in ``workers`` processes.
    """
    rejected: list[tuple[str, str]] = []
    rows, jobs = {}, []
    for row in manifest.sort_values("pair_id").itertuples(index=False):
        path = Path(registered_dir) / f"{row.pair_id}.json"
        matrix, reason = registration_matrix(path)
        if matrix is None:
            rejected.append((str(path), reason))
            continue
        rows[row.pair_id] = row
        jobs.append((row.pair_id, row.flash_path, row.studio_path, matrix, out_dir, size, options))

    load_detector()  # before the workers fork: they share the loaded models
    index, counts = [], {"detected": 0, "center": 0, "multiple_faces": 0}
    results = parallel_map(_crop_job, jobs, workers)
    for result in tqdm(results, total=len(jobs), desc="crop", unit="pair", disable=not progress):
        if "reason" in result:
            rejected.append((result["file"], result["reason"]))
            continue
        counts[result["method"]] += 1
        counts["multiple_faces"] += len(result["faces"]) > 1
        row = rows[result["pair_id"]]
        box = result["face_box"]  # top, right, bottom, left: the index's last four columns
        index.append((row.pair_id, row.subject, row.split, result["flash"], result["studio"], *box))
    metrics = {
        "pairs": len(manifest),
        "cropped": len(index),
        "detected": counts["detected"],
        "fallback": counts["center"],
        "rejected": len(rejected),
        "multiple_faces": counts["multiple_faces"],
    }
    return CropRun(pd.DataFrame(index, columns=list(INDEX_COLUMNS)), rejected, metrics)


__all__ = [
    "IDENTITY",
    "INDEX_COLUMNS",
    "Box",
    "CropBox",
    "CropRun",
    "FaceCrop",
    "NoFaceError",
    "box_area",
    "center_crop_box",
    "compose",
    "crop_faces",
    "crop_dataset",
    "crop_matrix",
    "crop_pair",
    "crop_pair_files",
    "detect_faces",
    "face_box_in_crop",
    "load_detector",
    "nominal_face_box",
    "registration_matrix",
    "resample",
    "square_crop_box",
]
