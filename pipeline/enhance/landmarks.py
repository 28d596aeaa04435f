"""dlib's 68 face landmarks, measured on an upright copy of a detected face.

The red-eye step (:mod:`pipeline.enhance.redeye`) needs the eye openings: points 36-41 and
42-47. The predictor runs on the crop's own resampling of the face, turned by its roll
(:func:`pipeline.faces.geometry.crop_matrix`), so a tilted face is measured upright and the
cost does not grow with the photo.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from typing import Any

import cv2
import numpy as np

from pipeline.faces.detect import DLIB_LOCK, Face
from pipeline.faces.geometry import crop_matrix, face_box_in_crop, square_crop_box
from pipeline.faces.resample import resample

#: Longer side of the upright face copy the landmarks are measured on (px).
LANDMARK_SIDE = 320
#: How far the face copy reaches beyond the face box, per side (square_crop_box's margin).
LANDMARK_MARGIN = 0.25
_LEFT_EYE, _RIGHT_EYE = slice(36, 42), slice(42, 48)


@cache
def _pose_68() -> Any:
    """dlib's 68-point landmark predictor, loaded once from face_recognition_models' folder
    (its package and face_recognition's api would load every other dlib model too)."""
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install it)")
    folder = spec.submodule_search_locations[0]
    with DLIB_LOCK:
        return dlib.shape_predictor(
            os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat")
        )


def face_landmarks(image: np.ndarray, face: Face, side: int = LANDMARK_SIDE) -> np.ndarray:
    """dlib's 68 landmarks of ``face`` as a 68 x 2 array of photo (x, y) pixel centres.

    The predictor runs on an upright copy of the face (turned by its roll, the crop's own
    resampling) whose side is at most ``side`` px: the points are as precise as the
    predictor is at that size, and the cost does not grow with the photo.
    """
    import dlib

    crop = square_crop_box(face.box, LANDMARK_MARGIN)
    size = max(1, min(side, crop[2]))
    to_photo = crop_matrix(crop, size, face.roll)
    upright = cv2.convertScaleAbs(resample(image, to_photo, size, "edge"), alpha=255.0)
    top, right, bottom, left = face_box_in_crop(face.box, crop, size, face.roll)
    with DLIB_LOCK:  # dlib is not safe to call from two threads at once
        shape = _pose_68()(upright, dlib.rectangle(left, top, right, bottom))
    points = np.array([(p.x, p.y, 1.0) for p in shape.parts()], np.float64)
    return points @ to_photo.T


def eye_landmarks(
    image: np.ndarray, face: Face, side: int = LANDMARK_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """The two eye openings of ``face`` (points 36-41 and 42-47 of :func:`face_landmarks`,
    6 x 2 photo points each): the one on the image's left first."""
    photo = face_landmarks(image, face, side)
    eyes = (photo[_LEFT_EYE], photo[_RIGHT_EYE])
    return eyes if eyes[0][:, 0].mean() <= eyes[1][:, 0].mean() else eyes[::-1]


__all__ = ["LANDMARK_MARGIN", "LANDMARK_SIDE", "eye_landmarks", "face_landmarks"]
