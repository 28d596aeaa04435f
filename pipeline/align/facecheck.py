"""Do the two faces of a registered pair agree? (a plausibility check of the registration)

A pair is training data only if the studio face, warped by the registration, lies on the
flash face (the paper's Sec. 4 crops both images with the box found on the flash image). So
after registration we look for the face in both images with face_recognition
(:func:`pipeline.faces.detect.find_faces`) on the flash image and on the studio image warped
onto the flash grid (the ``auto`` detector: upright HOG, turned copies, then the CNN; then
upright HOG on a contrast-equalised studio copy before a face counts as missing), and compare:

* the boxes: intersection over union at least :data:`MIN_IOU` (HOG boxes of one face jump
  with the detector's scale steps: 0.62 at worst for the relit synthetic pairs of the 116
  shared portraits registered exactly, 0.25 for a studio shot turned on its side);
* the 68 landmarks (dlib's shape predictor), both fitted in the flash face's box: their mean
  distance at most :data:`MAX_LANDMARK_ERROR` of the box diagonal (0.040 at worst for those
  exact genuine pairs; a pose left unaligned moves them all);
* who it is, when the landmarks leave doubt (above :data:`IDENTITY_CHECK_ABOVE`): the
  distance of face_recognition's 128-d encodings at most :data:`MAX_IDENTITY_DISTANCE`.
  Another person's face (a mislabelled file), aligned as well as MI can, keeps landmarks
  only 6 to 9 % off; the encodings tell them apart: 0.82 and 0.86 for two other-person
  pairs of the shared portraits, at most 0.58 for the strongly relit genuine pairs (0.13 to
  0.37 for the real flash/no-flash pairs and Yale B).

A face in the flash image and none in the aligned studio image (a studio shot turned on its
side, a blank frame, a photo of something else) is suspect too. No face in the flash image
gives no evidence either way (the ITK brain slices, a photo the detector misses).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from pipeline.align.geometry import rescale_matrix, resize, warp_image
from pipeline.faces.detect import find_faces
from pipeline.faces.nms import iou

# Both images are compared on copies whose longer side is at most FACE_SIDE: a face of a
# third of a phone photo is ~130 px there, and HOG with one upsampling finds faces down to
# ~40 px of the copy. Two detections and two landmark fits: 0.06 to 0.2 s a pair on one busy
# core (Yale B to phone-size photos); the encodings, when needed, ~0.2 s more.
FACE_SIDE = 400
MIN_IOU = 0.4
MAX_LANDMARK_ERROR = 0.08
IDENTITY_CHECK_ABOVE = 0.02
MAX_IDENTITY_DISTANCE = 0.7


@dataclass(frozen=True)
class FaceAgreement:
    """How the flash face and the aligned studio face agree.

    Boxes are (top, right, bottom, left) in full-resolution flash pixels; ``studio_box`` is
    the studio face after warping (so on the same grid). ``iou`` and ``landmark_error`` are
    None when a face is missing, ``identity_distance`` also when it was not needed. ``reason`` says why the pair is suspect ("" when it is not);
    ``note`` says when there was no evidence (no face in the flash image).
    """

    flash_box: tuple[int, int, int, int] | None
    studio_box: tuple[int, int, int, int] | None
    iou: float | None
    landmark_error: float | None
    reason: str
    note: str = ""
    identity_distance: float | None = None

    @property
    def suspect(self) -> bool:
        """True when the faces disagree (``reason`` says how)."""
        return bool(self.reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (deterministic: rounded, no timings)."""
        return {
            "flash_box": list(self.flash_box) if self.flash_box else None,
            "studio_box": list(self.studio_box) if self.studio_box else None,
            "iou": None if self.iou is None else round(self.iou, 4),
            "landmark_error": (
                None if self.landmark_error is None else round(self.landmark_error, 4)
            ),
            "identity_distance": (
                None if self.identity_distance is None else round(self.identity_distance, 4)
            ),
            "reason": self.reason,
            "note": self.note,
        }


@cache
def _api() -> Any:
    # face_recognition warns about pkg_resources at import; its models load once per process.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition.api as api

    return api


def _uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(np.clip(np.rint(array[..., :3] * 255.0), 0, 255).astype(np.uint8))


def _equalised(image: np.ndarray) -> np.ndarray:
    """Grey uint8 RGB copy with local contrast equalised (CLAHE on luminance)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    flat = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(grey)
    return np.ascontiguousarray(np.repeat(flat[..., None], 3, axis=2))


def _landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 landmarks (x, y) of the face in ``box`` of a uint8 RGB image."""
    found = _api().face_landmarks(image, face_locations=[box], model="large")
    return np.array([p for part in found[0].values() for p in part], dtype=float)


def _encoding(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """face_recognition's 128-d identity encoding of the face in ``box``."""
    return np.asarray(_api().face_encodings(image, known_face_locations=[box])[0], dtype=float)


def _scaled(box: tuple[int, int, int, int], fx: float, fy: float) -> tuple[int, int, int, int]:
    top, right, bottom, left = box
    return (round(top * fy), round(right * fx), round(bottom * fy), round(left * fx))


def check_faces(
    flash: np.ndarray, studio: np.ndarray, matrix: np.ndarray, side: int = FACE_SIDE
) -> FaceAgreement:
    """Compare the flash face with the studio face warped onto the flash grid by ``matrix``.

    ``flash``/``studio``: float RGB (or grey) images in [0, 1] at their own resolutions;
    ``matrix``: the applied 2x3 registration (flash pixel -> studio pixel, full resolution).
    """
    fh, fw = flash.shape[:2]
    mh, mw = studio.shape[:2]
    s = min(1.0, side / max(fw, fh))
    pw, ph = max(1, round(fw * s)), max(1, round(fh * s))
    mpw, mph = max(1, round(mw * s)), max(1, round(mh * s))
    small_flash = resize(np.asarray(flash, dtype=np.float32), pw, ph)
    small_studio = resize(np.asarray(studio, dtype=np.float32), mpw, mph)
    # Warp the shrunk studio with the matrix taken to the shrunk copies: one interpolation.
    small_matrix = rescale_matrix(matrix, (pw / fw, ph / fh), (mpw / mw, mph / mh))
    aligned = warp_image(small_studio, small_matrix, (pw, ph))
    flash_u8, aligned_u8 = _uint8(small_flash), _uint8(aligned)
    to_full = (fw / pw, fh / ph)
    flash_faces = find_faces(flash_u8, detector="auto", max_side=side, upsample=1)
    if not flash_faces:
        return FaceAgreement(None, None, None, None, "", note="no face in the flash image")
    flash_box = flash_faces[0].box
    full_flash_box = _scaled(flash_box, *to_full)
    # A soft-lit studio face can be too flat for HOG (Yale B's yaleB15, the mean of 8 lights):
    # look again on a contrast-equalised copy before calling the face missing.
    studio_faces = find_faces(aligned_u8, detector="auto", max_side=side, upsample=1)
    if not studio_faces:
        studio_faces = find_faces(_equalised(aligned_u8), detector="hog", max_side=side, upsample=1)
    if not studio_faces:
        return FaceAgreement(
            full_flash_box,
            None,
            None,
            None,
            f"face_missing: a face in the flash image at {list(full_flash_box)}, "
            "none in the aligned studio image",
        )
    # The studio face that overlaps the flash face most (a group photo has several).
    studio_box = max((f.box for f in studio_faces), key=lambda b: (iou(flash_box, b), b))
    overlap = iou(flash_box, studio_box)
    top, right, bottom, left = flash_box
    diagonal = float(np.hypot(right - left, bottom - top))
    error = float(
        np.linalg.norm(
            _landmarks(flash_u8, flash_box) - _landmarks(aligned_u8, flash_box), axis=1
        ).mean()
        / diagonal
    )
    distance = None
    if error > IDENTITY_CHECK_ABOVE:
        distance = float(
            np.linalg.norm(_encoding(flash_u8, flash_box) - _encoding(aligned_u8, studio_box))
        )
    reason = ""
    if overlap < MIN_IOU:
        reason = f"faces_disagree: box overlap (IoU) {overlap:.2f} below {MIN_IOU}"
    elif error > MAX_LANDMARK_ERROR:
        reason = (
            f"landmarks_disagree: mean landmark distance {error:.3f} of the face size "
            f"(limit {MAX_LANDMARK_ERROR})"
        )
    elif distance is not None and distance > MAX_IDENTITY_DISTANCE:
        reason = (
            f"different_person: face encodings {distance:.2f} apart (limit {MAX_IDENTITY_DISTANCE})"
        )
    studio_full = _scaled(studio_box, *to_full)
    return FaceAgreement(full_flash_box, studio_full, overlap, error, reason, "", distance)


__all__ = [
    "FACE_SIDE",
    "IDENTITY_CHECK_ABOVE",
    "MAX_IDENTITY_DISTANCE",
    "MAX_LANDMARK_ERROR",
    "MIN_IOU",
    "FaceAgreement",
    "check_faces",
]
