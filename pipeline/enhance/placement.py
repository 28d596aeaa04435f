"""Where a face's crop goes in the photo for ``enhance``: the crop stage's own placement
(shifted inside, shrunk if needed, turned upright beyond the training rotations) and
resampling, with the settings the model file records, so the network sees what it saw in
training (the paper's Section 4 crop, at the model's input size)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.faces.detect import Face as Detection
from pipeline.faces.geometry import CropBox, crop_angle, crop_matrix, place_crop, square_crop_box
from pipeline.faces.resample import resample
from pipeline.models.format import ModelMeta


@dataclass(frozen=True)
class Placement:
    """Where a face's crop lies in the photo: the square, its turn (degrees) and the centre
    of the blend ellipse (the face's, edge coordinates), as the crop stage would place it."""

    crop: CropBox
    angle: float
    centre: tuple[float, float]


def place_face(face: Detection, shape: Sequence[int], meta: dict[str, Any]) -> Placement:
    """The crop stage's placement of ``face`` in a photo of ``shape``, with the model's crop
    settings and training rotations: shifted inside, shrunk if needed, turned upright when
    the face's roll is beyond the rotations' range."""
    parsed = ModelMeta.parse(meta)
    settings = parsed.crop_settings()
    angle = crop_angle(face.roll, (min(parsed.rotations), max(parsed.rotations)))
    height, width = int(shape[0]), int(shape[1])
    crop = place_crop(face.box, width, height, settings["margin"], settings["min_margin"], angle)
    # The ellipse stays on the face when the square had to move: its unmoved square's centre.
    x0, y0, side = square_crop_box(face.box, settings["margin"])
    return Placement(tuple(int(v) for v in crop), angle, (x0 + side / 2.0, y0 + side / 2.0))


def face_crops(
    image: np.ndarray, faces: Sequence[Detection | Sequence[int]], meta: dict[str, Any]
) -> tuple[np.ndarray, list[Placement]]:
    """The training crops of ``faces`` (detections, or upright boxes (top, right, bottom,
    left)): (N, S, S, 3) float32 and their placements.

    Uses the crop stage's own placement and resampling (:mod:`pipeline.faces`) with the
    settings the model was trained with, so the network sees what it saw in training:
    padding, if any, is the same constant.
    """
    settings = ModelMeta.parse(meta).crop_settings()
    size = int(meta["size"])
    placements, crops = [], []
    for face in faces:
        if not isinstance(face, Detection):
            face = Detection(tuple(int(v) for v in face), 0.0, "given", 0.0)
        placement = place_face(face, image.shape, meta)
        placements.append(placement)
        # The flash half of faces.crop_pair: one anti-aliased resample of the square.
        matrix = crop_matrix(placement.crop, size, placement.angle)
        crops.append(resample(image, matrix, size, settings["pad_mode"]))
    if not crops:
        return np.zeros((0, size, size, 3), np.float32), []
    return np.stack(crops).astype(np.float32, copy=False), placements


__all__ = ["Placement", "face_crops", "place_face"]
