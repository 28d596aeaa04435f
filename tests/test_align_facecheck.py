"""pipeline/align/facecheck.py: the faces of a registered pair agree, or the reason they don't."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import shared_path

from pipeline.align.facecheck import (
    MAX_IDENTITY_DISTANCE,
    MAX_LANDMARK_ERROR,
    MIN_IOU,
    check_faces,
)
from pipeline.align.synthetic import pair_rng, synthetic_pair
from pipeline.datasets.ingest import DEFAULT_YALEB_LIGHTS
from pipeline.io import read_image

IDENTITY = np.eye(2, 3)


def portrait(name: str, side: int = 512) -> np.ndarray:
    image = read_image(shared_path("portraits", name))
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def test_a_genuine_pair_registered_exactly_agrees():
    flash, studio, truth = synthetic_pair(
        portrait("celebahq_ref_male_060259.jpg"), pair_rng(0, "facecheck")
    )
    agreement = check_faces(flash, studio, truth)
    assert not agreement.suspect, agreement.reason
    assert agreement.iou >= MIN_IOU and agreement.landmark_error < MAX_LANDMARK_ERROR
    assert agreement.to_dict()["flash_box"] == list(agreement.flash_box)
    # Without the registration the studio face sits elsewhere: the same check says so.
    unaligned = check_faces(flash, studio, IDENTITY)
    assert agreement.landmark_error < unaligned.landmark_error


def test_another_person_is_flagged_even_when_the_faces_overlap():
    # Two aligned CelebA-HQ portraits: the boxes overlap, the identities do not match.
    agreement = check_faces(
        portrait("celebahq_ref_female_015248.jpg"),
        portrait("celebahq_ref_female_030321.jpg"),
        IDENTITY,
    )
    assert agreement.suspect
    assert agreement.iou >= MIN_IOU
    assert agreement.identity_distance > MAX_IDENTITY_DISTANCE
    assert agreement.reason.startswith(("different_person:", "landmarks_disagree:"))


def test_a_studio_shot_on_its_side_is_flagged():
    flash = portrait("celebahq_ref_female_015248.jpg")
    agreement = check_faces(flash, np.ascontiguousarray(np.rot90(flash)), IDENTITY)
    # Unregistered here: the turned face is found (turned HOG copies or the CNN) but it is not
    # the same face in the same place. (After registration, in the folder test, the MI and
    # motion rules flag it as well.)
    assert agreement.suspect
    kinds = {"faces_disagree", "face_missing", "landmarks_disagree", "different_person"}
    assert agreement.reason.split(":")[0] in kinds


def test_no_face_in_the_studio_shot_is_flagged_and_no_face_at_all_is_no_evidence():
    flash = portrait("celebahq_ref_female_015248.jpg")
    texture = np.random.default_rng(0).uniform(0, 1, flash.shape).astype(np.float32)
    missing = check_faces(flash, texture, IDENTITY)
    assert missing.reason.startswith("face_missing: a face in the flash image at [")
    assert missing.studio_box is None and missing.iou is None
    brain = cv2.imread(str(shared_path("registration_itk", "BrainT1Slice.png")), 0) / 255.0
    none = check_faces(brain, brain, IDENTITY)
    assert not none.suspect and none.note == "no face in the flash image"


@pytest.mark.parametrize("person", ["yaleB01", "yaleB15"])
def test_yale_b_flash_and_soft_light_agree(person):
    # yaleB15's soft-lit studio face escapes HOG; the contrast-equalised second look finds it.
    folder = shared_path("yaleb", "CroppedYale", person)
    flash = read_image(folder / f"{person}_P00A+000E+00.pgm")
    lights = DEFAULT_YALEB_LIGHTS  # the ingest's studio: the mean of 8 light directions
    studio = np.mean([read_image(folder / f"{person}_{light}.pgm") for light in lights], 0)
    agreement = check_faces(flash, studio, IDENTITY)
    assert not agreement.suspect, agreement.reason
    assert agreement.landmark_error < 0.02
