"""pipeline/align/geometry.py: pixel conventions, matrices between copies, motion, errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipeline.align.geometry import (
    IDENTITY,
    affine_about_centre,
    decompose,
    grid_error,
    identity_matrix,
    motion,
    rescale_matrix,
    scale_matrix,
    to_grey,
    warp_image,
)


def test_resize_pixel_centre_convention():
    # x_small = (x + 0.5) * s - 0.5: full-res pixels 0 and 1 average into small pixel 0.
    np.testing.assert_allclose(scale_matrix(0.5) @ [0.5, 0.5, 1], [0, 0, 1])
    np.testing.assert_allclose(scale_matrix(0.25) @ [1.5, 1.5, 1], [0, 0, 1])
    # Round trip down and up is the identity; the identity between sizes keeps the view.
    m = affine_about_centre(2.0, 1.01, 0.0, (0.01, 0.0), (100, 100))
    back = rescale_matrix(rescale_matrix(m, 0.5, 0.25), 2.0, 4.0)
    np.testing.assert_allclose(back, m, atol=1e-12)
    ident = identity_matrix((100, 80), (50, 40))
    np.testing.assert_allclose(ident @ [99.5, 79.5, 1], [49.5, 39.5])
    # cv2.resize agrees: a bright pixel's centre lands where the matrix says.
    img = np.zeros((64, 64), np.float32)
    img[20:22, 40:42] = 1
    small = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
    x, y = np.unravel_index(small.argmax(), small.shape)[::-1]
    np.testing.assert_allclose(scale_matrix(0.5) @ [40.5, 20.5, 1], [x, y, 1])


def test_affine_about_centre_decomposes_into_its_parameters():
    m = affine_about_centre(-3.0, 1.04, 0.02, (0.01, -0.02), (200, 100))
    parts = decompose(m)
    assert parts["angle"] == pytest.approx(-3.0)
    assert parts["sx"] == pytest.approx(1.04) and parts["sy"] == pytest.approx(1.04)
    assert parts["shear"] == pytest.approx(0.02)
    # The centre moves by the shift: (0.01 * 200, -0.02 * 100) px.
    centre = np.array([99.5, 49.5, 1.0])
    np.testing.assert_allclose(m @ centre - centre[:2], [2.0, -2.0], atol=1e-12)
    assert decompose(np.diag([1.0, -1.0]))["det"] < 0  # a reflection


def test_warp_maps_fixed_pixels_to_moving_pixels():
    # A bright dot at moving pixel (30, 12) lands at fixed pixel (20, 10) for a shift (10, 2).
    moving = np.zeros((40, 50), np.float32)
    moving[12, 30] = 1.0
    shift = np.array([[1.0, 0.0, 10.0], [0.0, 1.0, 2.0]])
    aligned = warp_image(moving, shift, (50, 40), border_mode=cv2.BORDER_CONSTANT)
    assert np.unravel_index(aligned.argmax(), aligned.shape) == (10, 20)


def test_motion_is_in_fixed_pixels_whatever_the_studio_resolution():
    assert motion(identity_matrix((400, 300), (200, 150)), (400, 300), (200, 150)) == {
        "angle": pytest.approx(0.0, abs=1e-12),
        "scale": pytest.approx(0.0, abs=1e-12),
        "shear": pytest.approx(0.0, abs=1e-12),
        "shift": pytest.approx(0.0, abs=1e-12),
    }
    m = affine_about_centre(4.0, 0.97, -0.01, (0.03, 0.04), (400, 300))
    half = rescale_matrix(m, 1.0, 0.5)  # the same motion, studio at half resolution
    got = motion(half, (400, 300), (200, 150))
    assert got["angle"] == pytest.approx(4.0)
    assert got["scale"] == pytest.approx(0.03)
    assert got["shear"] == pytest.approx(-0.01)
    assert got["shift"] == pytest.approx(math.hypot(12.0, 12.0) / 400)
    assert all(math.isnan(v) for v in motion(np.full((2, 3), np.nan), (4, 4), (4, 4)).values())


def test_grid_error_is_the_mean_displacement():
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 4.0]])
    assert grid_error(shift, IDENTITY, (100, 80)) == pytest.approx(5.0)
    # A scale about the origin: displacement grows linearly, mean over the grid = half the max.
    zoom = np.array([[1.01, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert grid_error(zoom, IDENTITY, (101, 2)) == pytest.approx(0.5)


def test_to_grey_scales_integers_and_refuses_bad_arrays():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 1] = 255
    np.testing.assert_allclose(to_grey(rgb), 0.587, atol=1e-6)
    assert to_grey(np.full((20, 20), 65535, np.uint16)).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="moving: image contains NaN"):
        to_grey(np.full((20, 20), np.nan, np.float32), "moving")
    with pytest.raises(ValueError, match="fixed: expected"):
        to_grey(np.zeros((4, 5, 6, 7)), "fixed")
    with pytest.raises(ValueError, match=r"too small to register \(10x12\)"):
        to_grey(np.zeros((12, 10)))
