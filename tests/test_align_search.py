"""pipeline/align/search.py: the capture search widens what the registration converges from."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from skimage import data

from pipeline.align.geometry import affine_about_centre, grid_error, to_grey
from pipeline.align.mi import register, register_params
from pipeline.align.pyramid import build_pyramids
from pipeline.align.search import capture_search
from pipeline.align.synthetic import pair_rng, synthetic_pair

NO_CAPTURE = {"capture_rotation_deg": 0.0, "capture_scale": 0.0, "capture_shift": 0.0}


def moved_pair(rotation: float, shift: tuple[float, float], side: int = 256):
    base = cv2.resize(data.astronaut().astype(np.float32) / 255, (side, side))
    truth = affine_about_centre(rotation, 1.0 if rotation >= 0 else 0.94, 0.0, shift, (side, side))
    flash, studio, _ = synthetic_pair(base, pair_rng(0, "capture"), side, truth)
    return flash, studio, truth


@pytest.mark.parametrize(("rotation", "shift"), [(-8.0, (-0.06, 0.06)), (10.0, (0.05, 0.05))])
def test_capture_search_converges_where_a_local_start_gets_stuck(rotation, shift):
    # Beyond the in-range motion (8-10 degrees, 6-7 % of the side): from the identity alone the
    # optimisation ends 15 to 94 px off; from the capture search's start, within 0.1 px.
    flash, studio, truth = moved_pair(rotation, shift)
    stuck = register(flash, studio, **NO_CAPTURE)
    assert grid_error(stuck.estimated, truth, (256, 256)) > 10
    found = register(flash, studio)
    assert found.ok, found.reason
    assert grid_error(found.matrix, truth, (256, 256)) < 0.5


def test_capture_search_ranks_the_true_pose_first_and_keeps_starts_distinct():
    flash, studio, truth = moved_pair(-8.0, (-0.06, 0.06))
    fixed, moving, _ = build_pyramids(to_grey(flash), to_grey(studio), 256, 3, 0.05)
    centre = (0.5 * 255 / (0.5 * math.hypot(256, 256)),) * 2  # the image centre, normalised
    starts = capture_search(fixed[0], moving[0], centre, register_params(starts=3), 1)
    assert len(starts) == 3
    scale, angle, tx, ty = starts[0]
    # Grid steps: 0.04 scale, 4 degrees, 2 % of the side; the best is a neighbour of the truth.
    assert abs(scale - 0.94) <= 0.04 + 1e-9 and abs(math.degrees(angle) + 8.0) <= 4.0 + 1e-6
    shift_px = np.array([tx, ty]) * 0.5 * math.hypot(256, 256)
    assert np.abs(shift_px - np.array([-0.06, 0.06]) * 256).max() <= 0.02 * 256 + 1e-6
    # Distinct starts: no two are grid neighbours in scale, rotation and shift at once.
    step = np.array([0.04, math.radians(4.0)]) * 1.01
    shift_step = 0.02 * 256 / (0.5 * math.hypot(256, 256))  # in the normalised frame
    for i in range(3):
        for j in range(i):
            close = np.all(np.abs(starts[i][:2] - starts[j][:2]) <= step)
            assert not (close and math.hypot(*(starts[i][2:] - starts[j][2:])) <= 1.5 * shift_step)
    # No capture range: the identity is the only start.
    only = capture_search(fixed[0], moving[0], centre, register_params(**NO_CAPTURE), 1)
    assert len(only) == 1 and np.allclose(only[0], sitk.Similarity2DTransform().GetParameters())
