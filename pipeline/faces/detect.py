"""Face detection on a photo, tilted faces included (the paper's Section 4 face crop needs one).

The paper finds the face with face_recognition (dlib). Its fast HOG detector is trained on
roughly upright faces, and people hold phones at an angle and tilt their heads, so ``auto``
(the default) tries, in order, until one finds a face:

1. ``hog``: upright HOG on a copy whose longer side is at most ``max_side`` (the usual case,
   as fast as a single HOG call);
2. ``hog_rotated``: HOG on copies of that image turned by :data:`ROTATED_ANGLES` (a face
   tilted by 25 degrees is upright in the copy turned back by 25), boxes mapped back;
3. ``cnn``: dlib's CNN (MMOD) detector, which tolerates more pose and occlusion, on a copy of
   at most ``cnn_max_side`` (seconds per photo on a CPU, so only as the last resort).

``hog`` and ``cnn`` alone are still selectable. Overlapping boxes of one face are merged
(:mod:`pipeline.faces.nms`). Each face records which path found it and its roll: the tilt of
the line through its eyes (dlib's 5-point landmarks, measured where the face was found),
counter-clockwise on screen in degrees, the convention of the augmentation's rotations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import CropParams
from pipeline.faces.geometry import Box, box_area
from pipeline.faces.nms import suppress
from pipeline.io import atomic_output, uint8_to_float

DETECTORS = ("auto", "hog", "cnn")
# The detector's defaults are the crop params group's (one source for the crop stage, the
# register stage's face check, the demo sources and enhance).
_CROP = CropParams()
PATHS = ("hog", "hog_rotated", "cnn")
ROTATED_ANGLES = (25.0, -25.0, 50.0, -50.0)
"""Turns of the detection copy tried when upright HOG finds nothing (degrees). Upright HOG
covers about +-20 degrees of roll; 25 and 50 reach past 60 with overlap."""

# The CNN's boxes sit higher than HOG's brows-to-chin boxes, which the crop margin is tuned
# for: moved by this fraction of their size (x, y), they match the HOG box of the same face.
# Median over the 40 CelebA-HQ portraits of the shared test data, CNN on a 300 px copy (same
# size within 2 %, centre 0.07 right and 0.13 lower); see tests/test_faces_detect.py.
CNN_BOX_OFFSET = (0.07, 0.13)


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` (top, right, bottom, left) is the face's own upright box placed on the face: its
    centre is the face centre and its sides the face's width and height in the photo's pixels
    (for an upright face, the detector's box as is). ``roll`` is the tilt of the eye line in
    degrees, counter-clockwise on screen; ``path`` says which detector found it (``hog``,
    ``hog_rotated``, ``cnn``) and ``score`` how sure it was (detector units).
    """

    box: Box
    roll: float
    path: str
    score: float


# face_recognition.api loads every dlib model at import (the CNN and the recognition ResNet
# too, about a second) and face_recognition_models imports pkg_resources to name its files:
# the detector loads dlib's models itself, each on first use, from the models' folder.
_POSE_5_FILE = "shape_predictor_5_face_landmarks.dat"
_CNN_FILE = "mmod_human_face_detector.dat"


def _model_file(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install it)")
    return os.path.join(spec.submodule_search_locations[0], "models", name)


#: Held around every dlib call and model load: `deepflash enhance` finds the next photo's
#: faces in a read-ahead thread while the current photo's 68 landmarks are measured, and
#: concurrent dlib calls corrupted the heap (a segfault in a later garbage collection).
DLIB_LOCK = threading.RLock()


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepflash"


@cache
def _hog_detector() -> Any:
    """dlib's frontal HOG detector. Building it from dlib's embedded copy takes 0.3-0.5 s
    (decompression); its saved form loads in a millisecond, so it is saved once to the user's
    cache (per dlib version: the same detector, the same boxes) and read from there."""
    import dlib

    with DLIB_LOCK:
        return _load_hog(dlib)


def _load_hog(dlib: Any) -> Any:
    cached = _cache_dir() / f"frontal_face_detector-dlib{dlib.__version__}.svm"
    if cached.is_file():
        try:
            return dlib.fhog_object_detector(str(cached))
        except RuntimeError:  # damaged cache file: rebuild it below
            pass
    detector = dlib.get_frontal_face_detector()
    with contextlib.suppress(OSError):  # a read-only home only loses the speed-up
        with atomic_output(cached) as tmp:
            detector.save(str(tmp))
    return detector


@cache
def _pose_5() -> Any:
    """dlib's 5-point landmark predictor (the eye corners give the roll)."""
    import dlib

    with DLIB_LOCK:
        return dlib.shape_predictor(_model_file(_POSE_5_FILE))


@cache
def _cnn_detector() -> Any:
    """dlib's CNN (MMOD) face detector: loaded only when the HOG passes found nothing."""
    import dlib

    with DLIB_LOCK:
        return dlib.cnn_face_detection_model_v1(_model_file(_CNN_FILE))


def load_detector(cnn: bool = True) -> None:
    """Load the detector's dlib models now (HOG, 5-point landmarks, and the CNN with ``cnn``).

    A stage calls it before starting worker processes: forked workers then share the loaded
    models instead of each loading them again.
    """
    _hog_detector()
    _pose_5()
    if cnn:
        _cnn_detector()


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


def _shrunk(
    image: np.ndarray, max_side: int, in_float: bool = False
) -> tuple[np.ndarray, float, float]:
    """uint8 RGB copy with the longer side at most ``max_side`` and the (x, y) factors back.

    ``in_float``: a uint8 image is shrunk from its float values (x / 255), as its float twin is.
    """
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor < 1.0:
        small_w, small_h = max(1, round(width * factor)), max(1, round(height * factor))
        source = np.asarray(image)
        if in_float and source.dtype == np.uint8:
            source = uint8_to_float(source)
        # Shrink before the uint8 conversion: INTER_AREA on the original values, one rounding.
        small = cv2.resize(source, (small_w, small_h), interpolation=cv2.INTER_AREA)
    else:
        small, small_w, small_h = np.asarray(image), width, height
    # Box edges scale with the image edges: 0 -> 0 and small_w -> width.
    return _to_uint8_rgb(small), width / small_w, height / small_h


def _eye_roll(image: np.ndarray, rect: Any) -> float:
    """Roll in degrees of the face in ``rect``: the eye line's tilt (5-point landmarks)."""
    with DLIB_LOCK:
        shape = _pose_5()(image, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    # Points 0-1 are the corners of the eye on the image's right, 2-3 of the other one.
    dx, dy = points[0:2].mean(axis=0) - points[2:4].mean(axis=0)
    return math.degrees(math.atan2(-dy, dx))  # y points down: up on screen is -y


def _rect_face(
    rect: Any,
    score: float,
    roll: float,
    path: str,
    to_photo: np.ndarray,
    fx: float,
    fy: float,
    size: tuple[int, int],
    box_scale: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> Face | None:
    """A detector rectangle on a (turned, shrunk) copy as a :class:`Face` of the photo.

    ``to_photo`` maps the copy's pixels to the detection copy's, ``fx``/``fy`` that copy's
    to the photo's; ``box_scale`` scales the rectangle's size (a shrunk turned copy) and
    ``offset`` moves its centre by that fraction of its size (the CNN's boxes).
    """
    height, width = size
    if to_photo is _NO_TURN and box_scale == 1.0 and offset == (0.0, 0.0):
        # Upright: box edges scale with the image edges (0 -> 0, copy width -> photo width).
        edges = (rect.top() * fy, rect.right() * fx, rect.bottom() * fy, rect.left() * fx)
    else:
        # Centre in the copy's pixel-centre coordinates, mapped back to the shrunk photo,
        # then to edge coordinates at the photo's scale; the size scales alike.
        cx = (rect.left() + rect.right()) / 2.0 - 0.5 + offset[0] * (rect.right() - rect.left())
        cy = (rect.top() + rect.bottom()) / 2.0 - 0.5 + offset[1] * (rect.bottom() - rect.top())
        sx, sy = to_photo @ np.array([cx, cy, 1.0])
        cx, cy = (sx + 0.5) * fx, (sy + 0.5) * fy
        if not (0.0 <= cx < width and 0.0 <= cy < height):
            return None  # found on the turned copy's empty corners
        half_w = (rect.right() - rect.left()) * fx * box_scale / 2.0
        half_h = (rect.bottom() - rect.top()) * fy * box_scale / 2.0
        edges = (cy - half_h, cx + half_w, cy + half_h, cx - half_w)
    limits = (height, width, height, width)
    box = tuple(int(np.clip(round(v), 0, limit)) for v, limit in zip(edges, limits, strict=True))
    if box[2] <= box[0] or box[1] <= box[3]:
        return None
    return Face(box, round(roll, 2) + 0.0, path, round(float(score), 4))  # + 0.0: no -0.0


_NO_TURN = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _hog(
    small: np.ndarray, upsample: int, angle: float, fx: float, fy: float, size: tuple[int, int]
) -> list[Face]:
    """HOG faces on ``small`` turned by ``angle`` degrees (0: as is), in photo pixels."""
    if angle == 0.0:
        turned, to_small, shrink = small, _NO_TURN, 1.0
    else:
        h, w = small.shape[:2]
        centre = ((w - 1) / 2.0, (h - 1) / 2.0)
        cos = abs(math.cos(math.radians(angle)))
        sin = abs(math.sin(math.radians(angle)))
        # A canvas holding the whole turned copy (no face cut off at a corner), shrunk to the
        # upright copy's pixel count: each pass costs what the upright one does (HOG time
        # grows with the area), and faces of 10 % of the photo stay well above HOG's 40 px.
        shrink = min(1.0, math.sqrt(w * h / ((w * cos + h * sin) * (w * sin + h * cos))))
        out_w = math.ceil((w * cos + h * sin) * shrink)
        out_h = math.ceil((w * sin + h * cos) * shrink)
        matrix = cv2.getRotationMatrix2D(centre, angle, shrink)
        matrix[:, 2] += ((out_w - 1) / 2.0 - centre[0], (out_h - 1) / 2.0 - centre[1])
        turned = cv2.warpAffine(small, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
        to_small = cv2.invertAffineTransform(matrix)
    with DLIB_LOCK:
        rects, scores, _ = _hog_detector().run(turned, upsample, 0.0)
    path = "hog" if angle == 0.0 else "hog_rotated"
    faces = []
    for rect, score in zip(rects, scores, strict=True):
        roll = _eye_roll(turned, rect) - angle  # a turn by +a adds a to every roll
        face = _rect_face(rect, score, roll, path, to_small, fx, fy, size, 1.0 / shrink)
        if face is not None:
            faces.append(face)
    return faces


def _cnn(image: np.ndarray, max_side: int, in_float: bool = False) -> list[Face]:
    """CNN (MMOD) faces on a copy of at most ``max_side`` px, in photo pixels.

    No upsampling: the CNN costs seconds per photo already; a larger ``max_side`` finds
    smaller faces (about 80 px of the copy and up).
    """
    small, fx, fy = _shrunk(image, max_side, in_float)
    faces = []
    with DLIB_LOCK:
        found_faces = _cnn_detector()(small, 0)
    for found in found_faces:
        roll = _eye_roll(small, found.rect)
        face = _rect_face(
            found.rect, found.confidence, roll, "cnn", _NO_TURN, fx, fy, image.shape[:2],
            offset=CNN_BOX_OFFSET,
        )  # fmt: skip
        if face is not None:
            faces.append(face)
    return faces


def _largest_first(faces: list[Face]) -> list[Face]:
    # Ties in area are broken by position, so the order is deterministic.
    return sorted(faces, key=lambda f: (-box_area(f.box), f.box[0], f.box[3], f.box[2], f.box[1]))


def find_faces(
    image: np.ndarray,
    detector: str = _CROP.detector,
    max_side: int = _CROP.detect_max_side,
    upsample: int = _CROP.upsample,
    cnn_max_side: int = _CROP.cnn_max_side,
    angles: tuple[float, ...] = ROTATED_ANGLES,
    *,
    shrink_in_float: bool = False,
) -> list[Face]:
    """Every face in ``image`` (HxW(x3) float in [0, 1] or uint8), largest first.

    ``detector``: ``auto`` (upright HOG, then HOG on turned copies, then the CNN, each only
    when the previous found nothing), ``hog`` (upright HOG only) or ``cnn`` (the CNN only, on
    a copy of at most ``cnn_max_side`` px). HOG runs on an area-averaged copy of at most
    ``max_side`` px; ``upsample`` is face_recognition's ``number_of_times_to_upsample`` (at
    800 px with 1 upsampling faces down to about 40 px of the copy, 5 % of its side, are
    found; the CNN, never upsampled, finds faces of about 80 px and up: 20 % of a 400 px
    copy).
    Boxes are in the input's pixels, clipped to it; duplicates of one face are merged.
    ``shrink_in_float``: a uint8 ``image`` is shrunk from its float values (x / 255), so that
    it gets the very faces of the same photo read as float (enhance keeps photos in uint8).
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; use one of {DETECTORS}")
    if max_side < 1 or cnn_max_side < 1 or upsample < 0:
        raise ValueError(
            f"max_side and cnn_max_side must be >= 1 and upsample >= 0 "
            f"(got {max_side}, {cnn_max_side}, {upsample})"
        )
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    faces: list[Face] = []
    if detector == "cnn":
        faces = _cnn(image, cnn_max_side, shrink_in_float)
    else:
        small, fx, fy = _shrunk(image, max_side, shrink_in_float)
        faces = _hog(small, upsample, 0.0, fx, fy, (height, width))
        if not faces and detector == "auto":
            for angle in angles:  # the first turn that finds a face ends the search
                faces = _hog(small, upsample, float(angle), fx, fy, (height, width))
                if faces:
                    break
        if not faces and detector == "auto":
            faces = _cnn(image, cnn_max_side, shrink_in_float)
    return _largest_first(suppress(faces, lambda f: f.box, lambda f: f.score))


def detect_faces(
    image: np.ndarray,
    detector: str = _CROP.detector,
    max_side: int = _CROP.detect_max_side,
    upsample: int = _CROP.upsample,
    cnn_max_side: int = _CROP.cnn_max_side,
) -> list[Box]:
    """The boxes of :func:`find_faces` (top, right, bottom, left), largest first."""
    found = find_faces(image, detector, max_side, upsample, cnn_max_side)
    return [face.box for face in found]


__all__ = [
    "CNN_BOX_OFFSET",
    "DETECTORS",
    "PATHS",
    "ROTATED_ANGLES",
    "Face",
    "detect_faces",
    "find_faces",
    "load_detector",
]
