"""Non-maximum suppression: one box per face when several detections overlap.

dlib's HOG detector runs five filters (frontal, left/right profile, tilted left/right) and the
rotated passes of :mod:`pipeline.faces.detect` see the same face at several angles, so one face
can come back as two overlapping boxes ("2 faces relit" on a single portrait). Two boxes are the
same face when they overlap a lot (IoU) or when one lies mostly inside the other (a face box
within a larger one); the higher-scoring box is kept. Faces of different people in a group
photo overlap little, if at all, so they all survive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from pipeline.faces.geometry import Box, box_area

T = TypeVar("T")

IOU_THRESHOLD = 0.3
"""Boxes overlapping at least this much (intersection over union) are one face."""
CONTAINED_THRESHOLD = 0.6
"""A box whose area lies at least this much inside another is the same face."""


def intersection(a: Box, b: Box) -> int:
    """Area in pixels shared by two (top, right, bottom, left) boxes."""
    top, right = max(a[0], b[0]), min(a[1], b[1])
    bottom, left = min(a[2], b[2]), max(a[3], b[3])
    return max(0, bottom - top) * max(0, right - left)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    shared = intersection(a, b)
    union = box_area(a) + box_area(b) - shared
    return shared / union if union else 0.0


def same_face(a: Box, b: Box) -> bool:
    """Whether two detections are one face: IoU >= 0.3, or 60 % of the smaller inside the other."""
    shared = intersection(a, b)
    smaller = min(box_area(a), box_area(b))
    if smaller == 0:
        return False
    return iou(a, b) >= IOU_THRESHOLD or shared / smaller >= CONTAINED_THRESHOLD


def suppress(items: Sequence[T], box: Callable[[T], Box], score: Callable[[T], float]) -> list[T]:
    """``items`` without the lower-scoring duplicates of each face, in descending score order.

    Greedy, as usual: take the best remaining item, drop every item that :func:`same_face`
    matches it, repeat. Ties in score keep the earlier item (the order is deterministic).
    """
    order = sorted(range(len(items)), key=lambda i: (-score(items[i]), i))
    kept: list[T] = []
    for i in order:
        if not any(same_face(box(items[i]), box(other)) for other in kept):
            kept.append(items[i])
    return kept


__all__ = ["CONTAINED_THRESHOLD", "IOU_THRESHOLD", "intersection", "iou", "same_face", "suppress"]
