"""Putting relit faces back (pipeline/enhance/blend.py): mask, upsampling, turned faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.enhance.blend import (
    MASK_AXES,
    blend,
    face_mask,
    mask_region,
    region_pixels,
    relit_change,
    upsample_to_region,
)
from pipeline.faces.geometry import crop_matrix

_upsample_to_region = upsample_to_region


def test_face_mask_profile_known_values() -> None:
    """1 inside (1 - F) r, exactly 0 from r on, the quintic smoothstep in between."""
    side, feather = 200, 0.5
    crop = (0, 0, side)
    mask = face_mask((side, side), crop, feather=feather)
    ry = MASK_AXES[1] * side / 2.0
    centre = side // 2  # pixel 100 has centre 100.5: 0.5 px right of and below the crop centre
    column = mask[:, centre]
    rx = MASK_AXES[0] * side / 2.0
    radius = np.hypot((np.arange(side) + 0.5 - side / 2.0) / ry, 0.5 / rx)
    t = np.clip((1 - radius) / feather, 0, 1)
    expected = t**3 * (t * (t * 6 - 15) + 10)
    np.testing.assert_allclose(column, expected, atol=1e-6)
    assert mask[centre, centre] == 1.0
    assert mask[0, 0] == 0.0 and mask[-1, :].max() == 0.0 and mask[:, -1].max() == 0.0
    # Slope bound of the smoothstep: 15/8 per feather width.
    slope = np.abs(np.diff(mask, axis=0)).max()
    assert slope <= 1.875 / (feather * MASK_AXES[0] * side / 2.0) + 1e-6
    with pytest.raises(ValueError, match="feather"):
        face_mask((4, 4), crop, feather=0.0)


def test_mask_region_bounds_the_mask() -> None:
    """Outside mask_region the mask is 0, so enhance never needs to look there."""
    shape = (300, 400)
    crop = (250, -40, 180)  # sticks out of the top and the right side
    x0, y0, x1, y1 = mask_region(crop, shape)
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    full = face_mask(shape, crop)
    outside = np.ones(shape, bool)
    outside[y0:y1, x0:x1] = False
    assert full[outside].max() == 0.0
    assert full[y0:y1, x0:x1].max() == 1.0


def test_upsample_to_region_equals_full_resize() -> None:
    """The one-affine upsampling equals cv2.resize to the crop's side, then cutting the region."""
    rng = np.random.default_rng(0)
    small = rng.random((16, 16, 3)).astype(np.float32)
    crop = (10, 20, 50)
    region = (25, 30, 55, 62)
    full = cv2.resize(small, (50, 50), interpolation=cv2.INTER_LINEAR)
    expected = full[region[1] - 20 : region[3] - 20, region[0] - 10 : region[2] - 10]
    np.testing.assert_allclose(_upsample_to_region(small, crop, region), expected, atol=1e-5)


def test_upsample_to_region_shrinks_small_faces_by_area() -> None:
    """A crop smaller than the network output is area-averaged (no aliasing), then cut."""
    small = np.zeros((64, 64, 3), np.float32)
    small[::2] = 1.0  # finest stripes: point sampling would alias them to all 0 or all 1
    out = _upsample_to_region(small, (5, 7, 16), (5, 7, 21, 23))
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_turned_mask_is_the_upright_mask_turned() -> None:
    """The blend ellipse of a face rolled 30 degrees: the upright mask turned by
    cv2.getRotationMatrix2D about the crop centre (within the interpolation's error), its
    region bounding it, and exactly 0 at the crop square's turned border."""
    crop, feather = (50, 50, 200), 0.4
    upright = face_mask((300, 300), crop, feather=feather)
    turned = face_mask((300, 300), crop, feather=feather, angle=30.0)
    turn = cv2.getRotationMatrix2D((149.5, 149.5), 30.0, 1.0)
    expected = cv2.warpAffine(upright, turn, (300, 300), flags=cv2.INTER_LINEAR)
    assert np.abs(turned - expected).max() < 0.03
    x0, y0, x1, y1 = mask_region(crop, (300, 300), 30.0)
    outside = np.ones((300, 300), bool)
    outside[y0:y1, x0:x1] = False
    assert turned[outside].max() == 0.0 and turned.max() == 1.0
    # An ellipse centre given apart from the crop's (a square moved into the photo).
    moved = face_mask((300, 300), crop, feather=feather, centre=(140.0, 160.0))
    ys, xs = np.indices(moved.shape)
    centroid = (float((xs * moved).sum() / moved.sum()), float((ys * moved).sum() / moved.sum()))
    assert centroid == pytest.approx((139.5, 159.5), abs=0.01)  # pixel-centre coordinates


def test_turned_upsampling_is_the_inverse_of_the_turned_crop() -> None:
    """Crop a picture turned upright with crop_matrix(angle), send the crop back with
    upsample_to_region(angle): the photo comes back (both one bilinear warp)."""
    rng = np.random.default_rng(1)
    photo = cv2.GaussianBlur(rng.random((240, 240, 3)).astype(np.float32), (0, 0), 4)
    crop, size, angle = (40, 40, 160), 160, -25.0
    small = cv2.warpAffine(
        photo,
        crop_matrix(crop, size, angle),
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    region = (80, 80, 160, 160)  # well inside the turned square
    back = upsample_to_region(small, crop, region, angle)
    np.testing.assert_allclose(back, photo[80:160, 80:160], atol=0.01)


def test_blend_normalises_overlaps_and_keeps_far_pixels() -> None:
    image = np.full((10, 12, 3), 0.5, np.float32)
    out = image.copy()
    masks = [np.ones((4, 6), np.float32), np.ones((4, 6), np.float32)]
    changes = [np.full((4, 6, 3), 0.2, np.float32), np.full((4, 6, 3), 0.2, np.float32)]
    blend(out, image, changes, masks, [(0, 0, 6, 4), (3, 0, 9, 4)])
    np.testing.assert_allclose(out[:4, :9], 0.7, atol=1e-7)  # 0.2, not 0.4, where both are
    assert np.array_equal(out[4:], image[4:]) and np.array_equal(out[:, 9:], image[:, 9:])


def test_one_face_with_its_region_pixels_given_blends_the_same_bytes() -> None:
    """A uint8 photo, one face: the relit change and the blend reuse one float copy of the
    region (enhance_image) and write exactly the bytes of converting it twice."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
    square = (5, 8, 40)  # x0, y0, side
    crop = rng.random((16, 16, 3), dtype=np.float32)
    y = rng.random((16, 16, 3), dtype=np.float32) * 0.2 + 0.4
    region = mask_region(square, photo.shape)
    mask = face_mask((region[3] - region[1], region[2] - region[0]), square, region[:2], 0.35)
    outs = []
    for reuse in (False, True):
        x = region_pixels(photo, region) if reuse else None
        change = relit_change(photo, crop, y, square, region, "C", 0.0, x)
        out = photo.copy()
        blend(out, photo, [change], [mask], [region], [x] if reuse else None)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], photo)  # the face did change
    x0, y0, x1, y1 = region
    assert np.array_equal(region_pixels(photo, region), photo[y0:y1, x0:x1] / np.float32(255))
