"""Crop geometry (pipeline/faces/geometry.py): the square, its placement, the matrices."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipeline.faces.geometry import (
    box_centre,
    center_crop_box,
    compose,
    crop_angle,
    crop_matrix,
    face_box_in_crop,
    invert,
    nominal_face_box,
    place_crop,
    square_crop_box,
)


def test_square_crop_box_known_answers():
    # 200 px box, margin 0.4 on each side -> 360 px square on the same centre (200, 200).
    assert square_crop_box((100, 300, 300, 100), 0.4) == (20, 20, 360)
    # Non-square box: the longer side (200, vertical) sets the square.
    assert square_crop_box((100, 260, 300, 140), 0.4) == (20, 20, 360)
    assert square_crop_box((10, 60, 60, 10), 0.0) == (10, 10, 50)
    assert center_crop_box(168, 192) == (0, 12, 168)
    assert center_crop_box(400, 300) == (50, 0, 300)
    # Photo box -> crop box: the 360 px square becomes 128 px, edges scale by 128/360.
    assert face_box_in_crop((100, 300, 300, 100), (20, 20, 360), 128) == (28, 100, 100, 28)
    # The no-face box is what square_crop_box would have grown into the whole crop.
    assert nominal_face_box(128, 0.4) == (28, 100, 100, 28)
    with pytest.raises(ValueError, match="empty face box"):
        square_crop_box((10, 10, 20, 10), 0.4)


@pytest.mark.parametrize(
    ("face", "size", "margin", "min_margin", "expected"),
    [
        # Fits as is: the square of square_crop_box, untouched.
        ((100, 200, 200, 100), (400, 300), 0.4, 0.0, (60, 60, 180)),
        # Near the top-left corner: shifted inside, same side, face still inside.
        ((10, 60, 60, 10), (400, 300), 0.4, 0.0, (0, 0, 90)),
        # Near the bottom-right corner: shifted back inside.
        ((250, 390, 290, 350), (400, 300), 0.4, 0.0, (328, 228, 72)),
        # 360 px square in a 300 px tall photo: shrunk to 300 about the face, then shifted.
        ((100, 300, 300, 100), (400, 300), 0.4, 0.0, (50, 0, 300)),
        # Yale B: the face box is the whole 168 px width and 180 of 192 rows. Shrunk to the
        # box itself (min_margin 0): 6 px of padding each side, none vertically.
        ((0, 168, 180, 0), (168, 192), 0.4, 0.0, (-6, 0, 180)),
        # With min_margin 0.1 it stops at 216 px and pads more.
        ((0, 168, 180, 0), (168, 192), 0.4, 0.1, (-24, -18, 216)),
    ],
    ids=["fits", "top-left", "bottom-right", "shrunk", "yaleb", "yaleb-min-margin"],
)
def test_place_crop_shifts_then_shrinks_then_pads(face, size, margin, min_margin, expected):
    width, height = size
    crop = place_crop(face, width, height, margin, min_margin)
    assert crop == expected
    x0, y0, side = crop
    top, right, bottom, left = face
    # The face box stays inside the crop...
    assert x0 <= left and right <= x0 + side and y0 <= top and bottom <= y0 + side
    # ...and padding is left only where the square is larger than the photo.
    if side <= min(width, height):
        assert 0 <= x0 and x0 + side <= width and 0 <= y0 and y0 + side <= height


@pytest.mark.parametrize("angle", [-50.0, -30.0, 25.0, 45.0])
def test_turned_square_footprint_stays_inside_the_photo(angle):
    # A face near the right edge: the turned square's corners reach further than its sides.
    face = (120, 390, 200, 310)
    width, height = 420, 400
    x0, y0, side = place_crop(face, width, height, 0.4, 0.0, angle)
    corners = np.array([[-0.5, -0.5], [-0.5, 127.5], [127.5, -0.5], [127.5, 127.5]])
    matrix = crop_matrix((x0, y0, side), 128, angle)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    assert mapped[:, 0].min() >= -0.5 - 1e-6 and mapped[:, 0].max() <= width - 0.5 + 1e-6
    assert mapped[:, 1].min() >= -0.5 - 1e-6 and mapped[:, 1].max() <= height - 0.5 + 1e-6
    assert side == 144  # no shrink was needed: 1.8 x the 80 px box


def test_place_crop_refuses_bad_margins():
    with pytest.raises(ValueError, match="min_margin"):
        place_crop((0, 10, 10, 0), 20, 20, 0.2, 0.3)


def test_turned_crop_matrix_is_getrotationmatrix2d_turn_about_the_centre():
    crop, size, angle = (40, 30, 200), 100, 35.0
    matrix = crop_matrix(crop, size, angle)
    # The output's centre lands on the square's centre (pixel-centre coordinates).
    centre = matrix @ np.array([49.5, 49.5, 1.0])
    np.testing.assert_allclose(centre, [139.5, 129.5], atol=1e-9)
    # Its linear part is 2x (scale) OpenCV's rotation by the same angle.
    rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, 1.0)[:, :2]
    np.testing.assert_allclose(matrix[:, :2], 2.0 * rotation, atol=1e-12)
    # Angle 0 keeps the exact upright formula.
    np.testing.assert_array_equal(
        crop_matrix(crop, size, 0.0), [[2.0, 0.0, 40.5], [0.0, 2.0, 30.5]]
    )


def test_an_upright_crop_of_a_turned_picture_undoes_the_turn():
    """A picture turned by +30 degrees (cv2.getRotationMatrix2D, counter-clockwise), cropped
    with angle 30, comes back as the original: the crop turns faces upright."""
    rng = np.random.default_rng(0)
    original = cv2.GaussianBlur(rng.random((200, 200)).astype(np.float32), (0, 0), 3)
    turn = cv2.getRotationMatrix2D((99.5, 99.5), 30.0, 1.0)
    turned = cv2.warpAffine(original, turn, (200, 200), flags=cv2.INTER_CUBIC)
    back = cv2.warpAffine(
        turned,
        crop_matrix((50, 50, 100), 100, 30.0),
        (100, 100),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
    )
    np.testing.assert_allclose(back, original[50:150, 50:150], atol=0.01)


def test_face_box_in_a_turned_crop_keeps_centre_and_size():
    face = (150, 250, 270, 150)  # 100 wide, 120 tall, centre (200, 210): room all round
    crop = place_crop(face, 400, 400, 0.4, 0.0, 40.0)
    box = face_box_in_crop(face, crop, 216, 40.0)
    k = 216 / crop[2]
    assert box_centre(box) == pytest.approx((108, 108), abs=1.0)
    assert box[1] - box[3] == pytest.approx(100 * k, abs=1) and box[2] - box[0] == pytest.approx(
        120 * k, abs=1
    )


def test_compose_invert_and_crop_angle():
    inner = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -1.0]])
    outer = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 3.0]])
    point = np.array([3.0, 4.0, 1.0])
    np.testing.assert_allclose(compose(outer, inner) @ point, outer @ np.append(inner @ point, 1))
    np.testing.assert_allclose(compose(invert(outer), outer), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    # Rolls the augmentation shows the network are cropped as they are; beyond, upright.
    assert crop_angle(15.0, (-20.0, 20.0)) == 0.0
    assert crop_angle(-20.0, (-20.0, 20.0)) == 0.0
    assert crop_angle(27.5, (-20.0, 20.0)) == 27.5
    assert crop_angle(-40.0, (-20.0, 20.0)) == -40.0
    assert math.isclose(crop_angle(25.0, (-30.0, 30.0)), 0.0)
