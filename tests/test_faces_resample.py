"""One anti-aliased resampling (pipeline/faces/resample.py) and its validity mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from pipeline.faces.geometry import IDENTITY, crop_matrix
from pipeline.faces.resample import resample, valid_mask


def _astronaut(side: int = 512) -> np.ndarray:
    image = skdata.astronaut().astype(np.float32) / 255.0
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def _centroid(channel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(channel > 1e-4)
    weights = channel[ys, xs]
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


@pytest.mark.parametrize(
    ("crop", "size"),
    [((150, 50, 200), 100), ((120, 40, 250), 100), ((100, 20, 330), 100), ((180, 80, 50), 100)],
    ids=["shrink-2x", "shrink-2.5x", "shrink-3.3x", "enlarge-2x"],
)
def test_crop_moves_a_marker_to_the_predicted_pixel(crop, size):
    # A smooth marker (Gaussian blob, sigma 6 px) centred at photo pixel (203.0, 101.5): its
    # centroid is not biased by the sampling grid, so it pins the geometry to 0.02 px.
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    blob = np.exp(-((xx - 203.0) ** 2 + (yy - 101.5) ** 2) / (2 * 6.0**2))
    image = np.repeat(blob[..., None], 3, axis=2)
    out = resample(image, crop_matrix(crop, size), size)
    x0, y0, side = crop
    s = side / size
    cx, cy = _centroid(out[..., 0])
    assert cx == pytest.approx((203.0 - x0 + 0.5) / s - 0.5, abs=0.02)
    assert cy == pytest.approx((101.5 - y0 + 0.5) / s - 0.5, abs=0.02)
    # Mass is kept: an output pixel is s^2 photo pixels.
    assert out[..., 0].sum() == pytest.approx(blob.sum() / s**2, rel=0.01)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize(
    "crop",
    [(-4, -3, 18), (-25, -20, 60), (-40, -30, 18)],
    ids=["over-the-edge", "larger-than-photo", "off-the-photo"],
)
def test_padding_outside_the_photo_follows_numpy_pad(mode, crop):
    rng = np.random.default_rng(0)
    image = rng.random((10, 12, 3), dtype=np.float32)
    # Scale 1 and whole-pixel offsets: every sample is an exact pixel, so the result must
    # equal numpy.pad's (same mode names and meaning), however far the square reaches.
    x0, y0, side = crop
    out = resample(image, crop_matrix(crop, side), side, pad_mode=mode)
    big = 100
    padded = np.pad(image, ((big, big), (big, big), (0, 0)), mode=mode)
    expected = padded[y0 + big : y0 + big + side, x0 + big : x0 + big + side]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The validity mask is exactly the photo's pixels.
    inside = np.zeros((side, side), bool)
    inside[max(0, -y0) : max(0, 10 - y0), max(0, -x0) : max(0, 12 - x0)] = True
    np.testing.assert_array_equal(valid_mask(image.shape, crop_matrix(crop, side), side), inside)


def test_a_shrunk_crop_flush_with_the_photo_edge_is_valid_and_not_darkened():
    """A square ending exactly at the photo's edge: every output pixel's footprint is in the
    photo, so all valid, and the anti-aliasing filter's tail past the edge does not pull in
    zeros (constant equals edge padding there)."""
    image = np.full((300, 300, 3), 0.8, np.float32)
    matrix = crop_matrix((0, 0, 300), 64)  # 4.7x shrink: pyramid and blur both reach out
    assert valid_mask(image.shape, matrix, 64).all()
    out = resample(image, matrix, 64, "constant")
    np.testing.assert_allclose(out, 0.8, atol=1e-6)
    np.testing.assert_array_equal(out, resample(image, matrix, 64, "edge"))


def test_valid_mask_of_a_turned_square_marks_the_corners_outside():
    # A 100 px square turned 45 degrees about the centre of a 100 px photo: its corners
    # (footprint 141 px wide) leave the photo; the middle is valid.
    matrix = crop_matrix((0, 0, 100), 50, 45.0)
    valid = valid_mask((100, 100), matrix, 50)
    assert valid[25, 25] and valid[10, 25] and valid[25, 40]
    assert not valid[0, 0] and not valid[0, 49] and not valid[49, 0] and not valid[49, 49]
    # The valid area is the photo seen through the turned square: a regular octagon of
    # 2 (sqrt 2 - 1) = 82.8 % of the square, less the output pixels straddling its edges.
    assert 0.78 < valid.mean() < 2 * (np.sqrt(2) - 1)
    image = np.full((100, 100, 3), 0.5, np.float32)
    out = resample(image, matrix, 50, "constant")
    assert np.all(out[~valid] == 0.0)
    np.testing.assert_allclose(out[valid], 0.5, atol=1e-6)


@pytest.mark.parametrize(
    ("side", "period"),
    [(704, 2.0), (704, 3.3), (1440, 2.5), (1440, 6.0)],
)
def test_downscaling_is_anti_aliased(side, period):
    # Vertical cosine gratings at 2.7x to 9x the frequency the output can hold (its Nyquist
    # period is 2 * side / 160: 8.8 or 18 source px) must come out an even grey (their mean);
    # sampling the same grid without the filter gives bands of moire.
    x = np.arange(1600, dtype=np.float32)
    grating = np.broadcast_to(
        (0.5 + 0.5 * np.cos(2 * np.pi * x / period))[None, :, None], (1600, 1600, 3)
    )
    matrix = crop_matrix((60, 60, side), 160)
    out = resample(grating, matrix, 160)
    assert out.mean() == pytest.approx(0.5, abs=0.01)
    assert out.std() < 0.01
    naive = cv2.warpAffine(
        np.ascontiguousarray(grating),
        matrix,
        (160, 160),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    assert naive.std() > 0.1


def test_uint8_input_matches_float_input():
    """A uint8 photo gives the very crop of its float twin (x / 255, as read_image reads it)."""
    image = _astronaut()
    as_uint8 = np.rint(image * 255).astype(np.uint8)
    a = resample(as_uint8, crop_matrix((50, 60, 300), 128), 128)
    b = resample(as_uint8.astype(np.float32) / 255, crop_matrix((50, 60, 300), 128), 128)
    np.testing.assert_array_equal(a, b)


def test_bad_matrices_are_refused():
    image = _astronaut(64)
    with pytest.raises(ValueError, match="2x3"):
        resample(image, np.eye(3), 32)
    with pytest.raises(ValueError, match="degenerate"):
        resample(image, np.zeros((2, 3)), 32)
    with pytest.raises(ValueError, match="pad mode"):
        resample(image, IDENTITY, 32, pad_mode="wrap")
