"""pipeline/align/synthetic.py, and the registration on its pairs: in-range motion under a strong
flash-like relighting ends within 0.5 px, and no genuine pair is flagged. The full sweep
(every shared portrait, several seeds) is benchmarks/bench_registration.py --sweep."""

from __future__ import annotations

import cv2
import numpy as np
from conftest import shared_path

from pipeline.align.dataset import pair_record
from pipeline.align.geometry import affine_about_centre, decompose, grid_error, warp_image
from pipeline.align.mi import register
from pipeline.align.plausibility import judge_folder
from pipeline.align.synthetic import (
    MOTION_RANGE,
    flash_relight,
    pair_rng,
    random_motion,
    synthetic_pair,
)
from pipeline.config import RegisterParams
from pipeline.io import read_image


def test_random_motion_stays_in_range_and_is_reproducible():
    rng = pair_rng(3, "a.jpg")
    for _ in range(200):
        m = random_motion(rng, (400, 300))
        parts = decompose(m)
        assert abs(parts["angle"]) <= MOTION_RANGE["rotation_deg"] + 1e-9
        assert abs(parts["sx"] - 1) <= MOTION_RANGE["scale"] + 1e-9
        assert abs(parts["shear"]) <= MOTION_RANGE["shear"] + 1e-9
        centre = np.array([199.5, 149.5, 1.0])
        shift = (m @ centre - centre[:2]) / [400, 300]
        assert np.all(np.abs(shift) <= MOTION_RANGE["shift"] + 1e-9)
    np.testing.assert_array_equal(
        random_motion(pair_rng(3, "b.jpg"), (9, 9)), random_motion(pair_rng(3, "b.jpg"), (9, 9))
    )
    assert not np.allclose(
        random_motion(pair_rng(3, "b.jpg"), (9, 9)), random_motion(pair_rng(4, "b.jpg"), (9, 9))
    )


def test_relighting_is_flash_like():
    grey = np.full((100, 100, 3), 0.4, np.float32)
    lit = flash_relight(grey, pair_rng(0, "x"))
    # Bright where the light's axis hits, darker towards the corners, cooler (blue > red).
    assert lit[40, 45].mean() > 0.6 > 0.45 > lit[99, 99].mean()
    assert lit[..., 2].mean() > lit[..., 0].mean() * 1.3


def test_studio_shows_flash_pixel_p_at_matrix_p():
    image = np.zeros((200, 300, 3), np.float32)
    image[80:84, 120:124] = 1.0
    flash, studio, truth = synthetic_pair(image, pair_rng(0, "dot"))
    # Warping the studio back by the truth puts the dot where the flash image has it.
    back = warp_image(studio, truth, (300, 200), border_mode=cv2.BORDER_CONSTANT)
    y, x = np.unravel_index(back[..., 1].argmax(), back.shape[:2])
    assert (80 <= y <= 83) and (120 <= x <= 123)
    assert flash.shape == studio.shape == (200, 300, 3)
    big = np.zeros((1000, 800, 3), np.float32)
    assert synthetic_pair(big, pair_rng(0, "big"))[0].shape == (512, 410, 3)  # max_side 512


SUBSET = [
    "celebahq_ref_female_042373.jpg",
    "celebahq_ref_male_116032.jpg",
    "deepface_img13.jpg",
    "facealignment_aflw-test.jpg",
]


def test_in_range_motion_under_strong_relighting_converges_and_none_is_flagged():
    params = RegisterParams()
    records, errors = [], []
    for name in SUBSET:
        image = read_image(shared_path("portraits", name))
        for seed in (0, 1):
            flash, studio, truth = synthetic_pair(image, pair_rng(seed, name))
            result = register(flash, studio, params)
            errors.append(grid_error(result.estimated, truth, result.fixed_size))
            records.append(pair_record(f"{name}:{seed}", flash, studio, result, True))
    assert max(errors) < 0.5, errors
    assert all(r["status"] == "ok" for r in records)
    assert judge_folder(records, params.min_folder_pairs, params.outlier_z) == [[]] * 8
    assert len(records) >= params.min_folder_pairs  # the folder rules were on


def test_a_pair_that_once_ended_32_px_off():
    # A reported failure: 2.6 degrees, scale 1.037, a 25 px vertical shift and a flash-like
    # relighting ended 32 px off, reported ok. Same motion on a shared portrait (512 px).
    image = read_image(shared_path("portraits", "celebahq_ref_male_038919.jpg"))
    truth = affine_about_centre(2.6, 1.037, 0.0, (0.0, 25 / 512), (512, 512))
    flash, studio, _ = synthetic_pair(image, pair_rng(0, "32px"), 512, truth)
    result = register(flash, studio)
    assert result.ok and grid_error(result.matrix, truth, (512, 512)) < 0.5
