"""Non-maximum suppression (pipeline/faces/nms.py): one box per face, every person kept."""

from __future__ import annotations

import pytest

from pipeline.faces.nms import intersection, iou, same_face, suppress


def test_overlap_known_answers():
    a = (0, 100, 100, 0)  # top, right, bottom, left: 100 x 100
    b = (50, 150, 150, 50)  # shifted by half: 50 x 50 shared
    assert intersection(a, b) == 2500
    assert iou(a, b) == pytest.approx(2500 / 17500)
    assert iou(a, a) == 1.0 and iou(a, (200, 300, 300, 200)) == 0.0


def test_same_face_by_overlap_or_containment():
    big = (0, 100, 100, 0)
    assert same_face(big, (10, 95, 95, 10))  # IoU 0.72
    assert same_face(big, (20, 60, 60, 20))  # small box inside: IoU 0.16, all of it contained
    assert not same_face(big, (50, 150, 150, 50))  # neighbours in a group photo: IoU 0.14
    assert not same_face(big, (0, 200, 100, 100))  # side by side, touching
    assert not same_face(big, (0, 0, 0, 0))


def test_suppress_keeps_the_best_box_of_each_face_and_every_person():
    # Two detections of one face (the portrait that came back as "2 faces relit") and a
    # second person beside it.
    items = [
        ("dup", (12, 108, 110, 8), 0.4),
        ("face", (10, 110, 110, 10), 1.7),
        ("person2", (10, 230, 110, 130), 0.9),
    ]
    kept = suppress(items, lambda item: item[1], lambda item: item[2])
    assert [name for name, _, _ in kept] == ["face", "person2"]
    # Equal scores: the earlier item wins, deterministically.
    tie = [("a", (0, 10, 10, 0), 1.0), ("b", (0, 10, 10, 0), 1.0)]
    assert [n for n, _, _ in suppress(tie, lambda i: i[1], lambda i: i[2])] == ["a"]
    assert suppress([], lambda i: i, lambda i: 0.0) == []
