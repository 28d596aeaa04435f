"""Red-eye: found in each eye of a face from its 68-point landmarks and repaired, on the
full-resolution photo after relighting.

Why a separate step: the paper left red-eye to hand editing, and its network cannot learn it
(studio pairs have no flash; encoding C relights a bilateral-filtered low-frequency layer and
passes the pupils, a few pixels of high frequency, through untouched). The classic repair
(Petschnigg et al. 2004) needs a second, no-flash photo; this one works on the flash photo
alone.

1. **Eyes**: dlib's 68-point landmarks on an upright copy of the face of at most 320 px
   (:mod:`pipeline.enhance.landmarks`: the crop's own resampling and turn, so tilted faces and
   faces behind glasses are measured upright); points 36-41 and 42-47 are the eye openings,
   in photo pixels.
2. **Candidates**: in a box around each eye opening, pixels inside the opening (grown by
   :data:`OPENING_MARGIN`: a pupil shows between the lids) with r / (g + b) > 1,
   r - max(g, b) > :data:`RED_MARGIN` and a hue within :data:`PIXEL_HUE` of red (a
   saturated red, not warm skin or a brown iris), closed over small gaps (a catch-light
   splits a pupil) and grouped into 8-connected regions.
3. **Confirmation** (what makes a red region a pupil, and keeps red eye shadow, red frames,
   skin, lid margins and lips untouched): its 75th-percentile ratio is at least
   :data:`MIN_REDNESS`, the mean hue of its reddest quarter in :data:`HUE_RANGE` (and, in
   its orange end, :data:`ORANGE_HUES`, a redness of :data:`ORANGE_REDNESS`: a pupil over a
   brown iris leans orange, and so do the weakly red lid margins), its size at least
   :data:`MIN_PIXELS` and its convex-hull diameter in :data:`DIAMETER_RANGE` of the eye
   width, its centroid inside the eye opening and away from the corners
   (:data:`AXIS_RANGE`), and its hull round (hull area over the disc of that diameter at
   least :data:`MIN_ROUNDNESS`: a lid may cut the disc, a streak is not one). A confirmed
   pupil is then grown to the red pixels connected to it nearby, at a lower ratio
   (:data:`GROW_FRACTION`, :data:`GROW_RATIO`): the rim of the red disc where the red
   clipped at white over a bright iris or lid.
4. **Repair** (:mod:`pipeline.enhance.pupil`, on the relit photo, with the mask, weights and
   the iris ring's colour rule found on the photo as read): a dark pupil of the ring's
   colour with its own green and blue, a soft edge, the catch-light kept.

Everything here is a pure function of arrays; pixels outside the repaired pupils are
returned bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.enhance.landmarks import eye_landmarks
from pipeline.enhance.pupil import (
    IrisColour,
    dilate,
    iris_tint,
    pupil_weight,
    redness_gate,
    repair_pupil,
)
from pipeline.faces.detect import Face as Detection

MODES = ("auto", "off")
#: r - max(g, b) a red pixel exceeds besides r / (g + b) > 1 (values in [0, 1]).
RED_MARGIN = 0.12
#: The 75th percentile of r / (g + b) over a pupil candidate must reach this.
MIN_REDNESS = 1.25
#: Largest hue distance from pure red of a single red pixel (degrees).
PIXEL_HUE = 20.0
#: The mean hue of a pupil, degrees from pure red (negative: toward magenta). A lit retina
#: seen through a dark pupil has g close to b (-10 to -3 on the two real red-eye photos of
#: the shared test data); red lid margins, the inner corner and skin have g above b and
#: lean to orange (+8 to +20 on the shared portraits' eyes).
HUE_RANGE = (-25.0, 10.0)
#: ... and the last ORANGE_HUES degrees of it (+5 to +10: a pupil glowing over a brown
#: iris, whose green above blue shifts it toward orange; also where the weakly red lid
#: margins of the shared portraits begin) count only at a 75th-percentile r / (g + b) of
#: ORANGE_REDNESS (painted pupils: 1.8 and more; the shared portraits' red lid margins and
#: corners there: 1.26-1.68).
ORANGE_HUES = 5.0
ORANGE_REDNESS = 1.7
#: Where a pupil's centroid may lie along the line between the eye's corners (0: the outer
#: landmark 36/42 side, 1: the other corner): the iris moves this far when the eye looks
#: aside; the pink inner corner and red lid ends lie outside.
AXIS_RANGE = (0.2, 0.8)
#: Convex-hull diameter of a pupil as a fraction of the eye opening's width.
DIAMETER_RANGE = (0.05, 0.40)
MIN_ROUNDNESS = 0.4
#: A confirmed pupil takes in the red pixels connected to it up to this fraction of its
#: diameter beyond it (:func:`_grow`).
GROW_FRACTION = 0.25
#: ... those pixels need r / (g + b) above this and r - max(g, b) above 2 RED_MARGIN.
GROW_RATIO = 0.75
#: Fewest pixels of a pupil: a red speck in a small face's eye is not judged.
MIN_PIXELS = 4
#: The box searched around each eye opening, grown by this fraction of the eye width.
SEARCH_MARGIN = 0.15
#: Red pixels count only inside the eye opening grown by this fraction of the eye width.
OPENING_MARGIN = 0.04
#: Radius of the closing that joins a pupil's red pieces, as a fraction of the eye width.
CLOSE_FRACTION = 0.05
_EPS = 1e-6


@dataclass(frozen=True)
class EyeRedeye:
    """One eye: ``status`` corrected | found (a red pupil, not repaired) | none, with the
    ``reason``; ``pixels`` the red pupil's size and ``changed`` how many photo pixels the
    repair changed; ``centre`` (x, y) of the eye opening in photo pixels."""

    side: str
    status: str
    reason: str
    centre: tuple[float, float]
    pixels: int = 0
    changed: int = 0


@dataclass(frozen=True)
class FaceRedeye:
    """One face's eyes and its status: corrected if any eye was, else found, else none."""

    status: str
    eyes: tuple[EyeRedeye, ...]
    reason: str = ""


def _shape(mask: np.ndarray) -> tuple[float, float]:
    """(convex-hull diameter, convex-hull area) of a region, on its pixels' corners (a single
    pixel is 1 across, area 1)."""
    ys, xs = np.nonzero(mask)
    corners = np.concatenate(
        [np.stack([xs + dx, ys + dy], axis=1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)]
    ).astype(np.float32)
    hull = cv2.convexHull(corners)[:, 0, :]
    gaps = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((gaps**2).sum(axis=2).max())), float(cv2.contourArea(hull))


def _redness(patch: np.ndarray, full: bool = False) -> tuple[np.ndarray, ...]:
    """r / (g + b) and the red-pixel mask of a float RGB patch (with ``full``, also
    r - max(g, b) and the unsigned hue from red, degrees)."""
    r, g, b = patch[..., 0], patch[..., 1], patch[..., 2]
    ratio = r / (g + b + _EPS)
    lead = r - np.maximum(g, b)
    # Hue from red = 60 deg * (g - b) / (r - min(g, b)) when r is the largest channel: a
    # brown iris or warm skin (g well above b) is orange, a lit retina is not.
    hue = 60.0 * np.abs(g - b) / np.maximum(r - np.minimum(g, b), _EPS)
    red = (ratio > 1.0) & (lead > RED_MARGIN) & (hue <= PIXEL_HUE)
    return (ratio, red, lead, hue) if full else (ratio, red)


def _signed_hue(pixels: np.ndarray) -> np.ndarray:
    """Hue in degrees in (-180, 180] of N x 3 float RGB pixels (0 = pure red)."""
    hsv = cv2.cvtColor(pixels[None].astype(np.float32), cv2.COLOR_RGB2HSV)[0]
    hue = hsv[:, 0]
    return np.where(hue > 180.0, hue - 360.0, hue)


def _along(polygon: np.ndarray, x: float, y: float) -> float:
    """Position of (x, y) projected on the line from corner 0 to corner 3 of an eye opening
    (0 at the first corner, 1 at the other)."""
    axis = polygon[3] - polygon[0]
    return float(np.dot((x, y) - polygon[0], axis) / max(float(np.dot(axis, axis)), _EPS))


def _search_box(eye: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around an eye opening, grown by SEARCH_MARGIN of its width."""
    width = float(np.hypot(*(eye[3, :2] - eye[0, :2])))
    grow = SEARCH_MARGIN * width
    x0 = max(0, math.floor(eye[:, 0].min() - grow))
    y0 = max(0, math.floor(eye[:, 1].min() - grow))
    x1 = min(shape[1], math.ceil(eye[:, 0].max() + grow) + 1)
    y1 = min(shape[0], math.ceil(eye[:, 1].max() + grow) + 1)
    return x0, y0, x1, y1


def _as_float(patch: np.ndarray) -> np.ndarray:
    if patch.dtype == np.uint8:
        return patch.astype(np.float32) / 255.0
    return patch.astype(np.float32, copy=False)


def find_pupil(
    patch: np.ndarray, eye: np.ndarray, origin: tuple[int, int]
) -> tuple[np.ndarray | None, str]:
    """The red pupil in ``patch`` (float RGB, its top-left at photo ``origin``) of the eye
    opening ``eye`` (6 x 2 photo points): (bool mask or None, reason).

    The largest red region that passes every test of the module docstring wins; without one,
    the reason names the test the largest red region failed.
    """
    ratio, red, lead, hue = _redness(patch, full=True)
    width = float(np.hypot(*(eye[3, :2] - eye[0, :2])))
    polygon = eye[:, :2] - np.array(origin, np.float64)
    # A pupil shows inside the eye opening (the lids cover the rest of it): red eye shadow,
    # lids, frames and backgrounds outside the opening (grown a little: landmark error) are
    # never candidates.
    opening = np.zeros(red.shape, np.uint8)
    cv2.fillPoly(opening, [np.rint(polygon).astype(np.int32)], 1)
    grow = max(1, round(OPENING_MARGIN * width))
    opening = cv2.dilate(opening, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    # The rim the confirmed pupil may grow into (:func:`_grow`): clearly red by a lower
    # ratio (the flash's red clipped at white over a bright iris or lid), anywhere.
    loose = (ratio > GROW_RATIO) & (lead > 2.0 * RED_MARGIN) & (hue <= PIXEL_HUE)
    red &= opening.astype(bool)
    if not red.any():
        return None, "no red pixels"
    # A closing joins the pieces of a pupil that the catch-light and darker speckles split.
    close = max(1, round(CLOSE_FRACTION * width))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close + 1, 2 * close + 1))
    joined = cv2.morphologyEx(red.astype(np.uint8), cv2.MORPH_CLOSE, disc).astype(bool)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        joined.astype(np.uint8), connectivity=8
    )
    failures = []
    for label in sorted(range(1, count), key=lambda k: -stats[k, cv2.CC_STAT_AREA]):
        region = labels == label
        mask = region & red
        if not mask.any():
            continue
        across, hull_area = _shape(region)
        diameter = across / max(width, _EPS)
        # The reddest quarter: a small pupil is mostly soft edge, blended with the iris.
        redness = float(np.percentile(ratio[mask], 75))
        core = mask & (ratio >= redness)
        hue = float(np.mean(_signed_hue(patch[core])))
        cx, cy = centroids[label]
        roundness = hull_area / (math.pi / 4.0 * across**2)
        if redness < MIN_REDNESS:
            failures.append(f"redness {redness:.2f} < {MIN_REDNESS}")
        elif not HUE_RANGE[0] <= hue <= HUE_RANGE[1]:
            failures.append(f"hue {hue:.1f} deg, not red")
        elif hue > HUE_RANGE[1] - ORANGE_HUES and redness < ORANGE_REDNESS:
            failures.append(f"hue {hue:.1f} deg with redness {redness:.2f}, orange")
        elif stats[label, cv2.CC_STAT_AREA] < MIN_PIXELS:
            failures.append(f"{stats[label, cv2.CC_STAT_AREA]} px, too few to judge")
        elif not DIAMETER_RANGE[0] <= diameter <= DIAMETER_RANGE[1]:
            failures.append(f"size {diameter:.2f} of the eye width")
        elif cv2.pointPolygonTest(polygon.astype(np.float32), (float(cx), float(cy)), False) < 0:
            failures.append("outside the eye opening")
        elif not AXIS_RANGE[0] <= _along(polygon, cx, cy) <= AXIS_RANGE[1]:
            failures.append("at the corner of the eye")
        elif roundness < MIN_ROUNDNESS:
            failures.append(f"roundness {roundness:.2f} < {MIN_ROUNDNESS}")
        else:
            return _grow(region, loose, across), "red pupil"
    return None, failures[0]


def _grow(region: np.ndarray, red: np.ndarray, across: float) -> np.ndarray:
    """A confirmed pupil grown to the whole red disc: the red pixels (:func:`_redness`, now
    also outside the eye opening: a lid margin the landmarks put over the pupil's rim)
    connected to it within :data:`GROW_FRACTION` of its diameter. Confirmation judged the
    pupil; this only keeps its rim from staying red."""
    near = dilate(region, max(1, round(GROW_FRACTION * across)))
    count, labels = cv2.connectedComponents((red & near | region).astype(np.uint8), connectivity=8)
    keep = np.unique(labels[region])
    return np.isin(labels, keep[keep > 0])


@dataclass(frozen=True)
class PupilFix:
    """A red pupil found, ready to repair: ``box`` (x0, y0, x1, y1) in photo pixels and, over
    it, the feathered pupil mask ``feather``, the repair's ``weight`` (``feather`` times the
    found photo's redness) and the ``tint`` of the dark pupil (:func:`iris_tint`, measured
    on the found photo: a relight's warm cast stays out of it)."""

    box: tuple[int, int, int, int]
    feather: np.ndarray
    weight: np.ndarray
    tint: IrisColour


def find_eye(image: np.ndarray, eye: np.ndarray, side: str) -> tuple[EyeRedeye, PupilFix | None]:
    """The red pupil of one eye opening ``eye`` (6 x 2 photo points) of ``image`` (HxWx3
    uint8 or float in [0, 1]): (status found or none with the reason, the fix or None)."""
    centre = (round(float(eye[:, 0].mean()), 1), round(float(eye[:, 1].mean()), 1))
    x0, y0, x1, y1 = _search_box(eye, image.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return EyeRedeye(side, "none", "eye outside the photo", centre), None
    patch = _as_float(image[y0:y1, x0:x1])
    pupil, reason = find_pupil(patch, eye, (x0, y0))
    if pupil is None:
        return EyeRedeye(side, "none", reason, centre), None
    # The iris and sclera: the eye opening less a pixel of its edge (lash and lid line).
    inside = np.zeros(pupil.shape, np.uint8)
    cv2.fillPoly(inside, [np.rint(eye[:, :2] - (x0, y0)).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
    feather, weight, ring = pupil_weight(patch, pupil, inside)
    found = EyeRedeye(side, "found", reason, centre, int(pupil.sum()))
    return found, PupilFix((x0, y0, x1, y1), feather, weight, iris_tint(patch, ring))


def repair_eye(image: np.ndarray, found: EyeRedeye, fix: PupilFix) -> EyeRedeye:
    """Repair a found pupil in ``image`` in place (the photo it was found on, or that photo
    relit: same size); only pixels whose value the repair changes are written."""
    x0, y0, x1, y1 = fix.box
    view = image[y0:y1, x0:x1]
    patch = _as_float(view)
    # Red on either photo: a relight that warms the iris rim past r / (g + b) = 1 there is
    # repaired too (inside the pupil's feathered reach only).
    weight = np.maximum(fix.weight, fix.feather * redness_gate(patch))
    repaired = repair_pupil(patch, weight, fix.tint)
    if image.dtype == np.uint8:
        repaired = np.clip(np.rint(repaired * 255.0), 0, 255).astype(np.uint8)
    else:
        repaired = repaired.astype(image.dtype)
    changed = np.any(repaired != view, axis=2)
    view[changed] = repaired[changed]
    return EyeRedeye(
        found.side, "corrected", found.reason, found.centre, found.pixels, int(changed.sum())
    )


def correct_eye(image: np.ndarray, eye: np.ndarray, side: str, correct: bool = True) -> EyeRedeye:
    """:func:`find_eye`, then with ``correct`` :func:`repair_eye` on the same photo."""
    found, fix = find_eye(image, eye, side)
    return repair_eye(image, found, fix) if correct and fix is not None else found


def _face_status(eyes: tuple[EyeRedeye, ...], reason: str = "") -> FaceRedeye:
    statuses = {eye.status for eye in eyes}
    return FaceRedeye(
        next((s for s in ("corrected", "found") if s in statuses), "none"), eyes, reason
    )


FaceFinding = tuple[FaceRedeye, tuple[PupilFix | None, ...]]


def find_redeye(image: np.ndarray, faces: list[Detection]) -> list[FaceFinding]:
    """Red pupils of every face of an upright RGB photo (uint8 or float in [0, 1]), measured
    on this photo (in enhance: the flash photo as read, whose colours are the camera's; the
    relight warms skin and lids toward red): per face, its report and each eye's fix."""
    results: list[FaceFinding] = []
    for face in faces:
        try:
            eyes = eye_landmarks(image, face)
        except (RuntimeError, ValueError) as error:  # dlib refuses a degenerate face box
            results.append((FaceRedeye("none", (), f"no landmarks ({error})"), ()))
            continue
        found = [
            find_eye(image, eye, side) for eye, side in zip(eyes, ("left", "right"), strict=True)
        ]
        results.append((_face_status(tuple(f for f, _ in found)), tuple(x for _, x in found)))
    return results


def repair_redeye(image: np.ndarray, findings: list[FaceFinding]) -> list[FaceRedeye]:
    """Repair the pupils of :func:`find_redeye` in ``image`` (that photo, or it relit) in
    place; one :class:`FaceRedeye` per face, in order."""
    results = []
    for report, fixes in findings:
        eyes = tuple(
            eye if fix is None else repair_eye(image, eye, fix)
            for eye, fix in zip(report.eyes, fixes, strict=True)
        )
        results.append(_face_status(eyes, report.reason))
    return results


def correct_redeye(
    image: np.ndarray, faces: list[Detection], correct: bool = True
) -> list[FaceRedeye]:
    """Red-eye of every face of ``image`` found and, with ``correct``, repaired in place."""
    findings = find_redeye(image, faces)
    return repair_redeye(image, findings) if correct else [report for report, _ in findings]


def summary(results: list[FaceRedeye]) -> str:
    """One line for a photo's report: ``corrected (2/2 eyes)`` per face, comma-separated."""
    parts = []
    for face in results:
        done = sum(eye.status == "corrected" for eye in face.eyes)
        parts.append(f"{face.status} ({done}/{len(face.eyes)} eyes)")
    return ", ".join(parts)


__all__ = [
    "MODES",
    "EyeRedeye",
    "FaceRedeye",
    "PupilFix",
    "correct_eye",
    "correct_redeye",
    "find_eye",
    "find_pupil",
    "find_redeye",
    "repair_eye",
    "repair_redeye",
    "summary",
]
