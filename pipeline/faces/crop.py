"""The face crop of a flash/studio pair (the paper's Section 4): one warp per image, a mask.

The face is found on the flash image R (the registration's fixed image); the paper also ran
the detector on the studio images, which after registration share R's geometry, so one
detection serves the pair. The largest face wins. Its square (:func:`place_crop`: grown by
the margin, shifted inside the photo, shrunk if needed) is cropped from the flash image and
resized to ``size`` x ``size``; when the face's roll is beyond what the training
augmentation's rotations show the network, the square turns with the face so that the face
comes out upright. The studio image is *warped* onto the same square: its registration matrix
(flash pixel -> studio pixel) is composed with the crop so that each studio output pixel is
interpolated once, straight from the full-resolution studio photo. A validity mask goes with
the crop: False where either image's crop drew on padding; there both images hold a constant
(``pad_mode`` constant, the default), never mirrored copies of the face.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import AugmentParams, CropParams
from pipeline.faces.detect import Face, find_faces
from pipeline.faces.geometry import (
    IDENTITY,
    Box,
    CropBox,
    center_crop_box,
    compose,
    crop_angle,
    crop_matrix,
    face_box_in_crop,
    nominal_face_box,
    place_crop,
)
from pipeline.faces.resample import PAD_MODES, resample, valid_mask
from pipeline.io import read_image, write_image, write_json, write_mask

ON_MISSING = ("center", "reject")
_CROP = CropParams()


def rotations_range(rotations: Sequence[float]) -> tuple[float, float]:
    """(min, max) of ``augment.rotations``: the roll the network sees in training; a face
    tilted beyond it is cropped turned upright."""
    return float(min(rotations)), float(max(rotations))


class NoFaceError(ValueError):
    """No face was found and the caller asked to reject such images."""


def crop_pair(
    flash: np.ndarray,
    studio: np.ndarray,
    registration: np.ndarray,
    crop_box: CropBox,
    size: int,
    pad_mode: str = "constant",
    angle: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the flash photo to ``crop_box`` and warp the studio photo onto the same square.

    ``registration`` is the 2x3 full-resolution matrix mapping a flash pixel (x, y) to the
    matching studio pixel (the registration contract: studio -> flash, 2x3 in pixels). Both
    images go through :func:`resample`, the flash with the crop matrix, the studio with
    registration o crop: one interpolation each, from the full-resolution photos. ``angle``
    turns the square (see :func:`crop_matrix`). Returns two ``size`` x ``size`` float32
    images in [0, 1] and the bool validity mask (True where both crops saw only photo
    pixels); with ``pad_mode`` constant, the invalid pixels of both images are exactly 0.
    """
    to_flash = crop_matrix(crop_box, size, angle)
    to_studio = compose(registration, to_flash)
    flash_out = resample(flash, to_flash, size, pad_mode)
    studio_out = resample(studio, to_studio, size, pad_mode)
    valid = valid_mask(flash.shape, to_flash, size) & valid_mask(studio.shape, to_studio, size)
    if pad_mode == "constant" and not valid.all():
        # Each image is 0 where it left its own photo; the pair shares one mask.
        flash_out[~valid] = 0.0
        studio_out[~valid] = 0.0
    return flash_out, studio_out, valid


@dataclass(frozen=True)
class FaceCrop:
    """The face crop of one pair: the two squares, their validity mask and how they were
    chosen (``crop`` and ``angle`` in flash-photo pixels, ``face_box`` in the crop's)."""

    flash: np.ndarray
    studio: np.ndarray
    valid: np.ndarray
    crop: CropBox
    angle: float
    face_box: Box
    faces: list[Face]
    method: str  # "detected" | "center"


def crop_faces(
    flash: np.ndarray,
    studio: np.ndarray,
    registration: np.ndarray,
    *,
    size: int,
    detector: str = _CROP.detector,
    detect_max_side: int = _CROP.detect_max_side,
    upsample: int = _CROP.upsample,
    cnn_max_side: int = _CROP.cnn_max_side,
    margin: float = _CROP.margin,
    min_margin: float = _CROP.min_margin,
    pad_mode: str = _CROP.pad_mode,
    on_missing: str = _CROP.on_missing,
    upright_range: tuple[float, float] = rotations_range(AugmentParams().rotations),
) -> FaceCrop:
    """Detect the face on the flash image and crop both images of the pair around it.

    The detection and crop settings are the ``crop`` params group's fields, of the same names
    and defaults (:func:`pipeline.faces.dataset.crop_options` maps the group).

    The largest face wins; its crop turns upright when its roll is outside
    ``upright_range`` (the range of ``augment.rotations``). Without a face,
    ``on_missing="center"`` takes the largest centred square (Yale B images are already
    tight face crops) and ``"reject"`` raises :class:`NoFaceError`.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"unknown on_missing {on_missing!r}; use one of {ON_MISSING}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad mode {pad_mode!r}; use one of {PAD_MODES}")
    faces = find_faces(flash, detector, detect_max_side, upsample, cnn_max_side)
    height, width = flash.shape[:2]
    if faces:
        angle = crop_angle(faces[0].roll, upright_range)
        crop = place_crop(faces[0].box, width, height, margin, min_margin, angle)
        face_box = face_box_in_crop(faces[0].box, crop, size, angle)
        method = "detected"
    elif on_missing == "center":
        angle = 0.0
        crop = center_crop_box(width, height)
        face_box = nominal_face_box(size, margin)
        method = "center"
    else:
        raise NoFaceError(f"no face found ({detector} detector, {width}x{height})")
    flash_out, studio_out, valid = crop_pair(
        flash, studio, registration, crop, size, pad_mode, angle
    )
    return FaceCrop(flash_out, studio_out, valid, crop, angle, face_box, faces, method)


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
    """Read a pair, crop it, write ``<pair_id>_flash.png``, ``_studio.png``, ``_mask.png``
    (white = valid) and ``<pair_id>.json``.

    ``options`` are :func:`crop_faces`'s keyword arguments. Returns the JSON record plus the
    three PNG paths (keys ``flash``, ``studio``, ``mask``). Raises
    :class:`pipeline.io.ImageReadError` for an unusable image and :class:`NoFaceError` when
    no face is found and ``on_missing`` is ``"reject"``.
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
    mask_png = write_mask(out_dir / f"{pair_id}_mask.png", result.valid)
    record = {
        "pair_id": pair_id,
        "crop": list(result.crop),
        "angle": result.angle,
        "face_box": list(result.face_box),
        "faces": [
            {"box": list(face.box), "roll": face.roll, "path": face.path, "score": face.score}
            for face in result.faces
        ],
        "method": result.method,
        "valid_fraction": round(float(result.valid.mean()), 6),
        "size": size,
    }
    write_json(out_dir / f"{pair_id}.json", record)
    return {**record, "flash": str(flash_png), "studio": str(studio_png), "mask": str(mask_png)}


__all__ = [
    "IDENTITY",
    "ON_MISSING",
    "FaceCrop",
    "NoFaceError",
    "crop_faces",
    "crop_pair",
    "crop_pair_files",
    "rotations_range",
]
