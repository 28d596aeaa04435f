"""pipeline/align/pyramid.py: shading normalisation, the normalised frame, seeded MI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import data

from pipeline.align.geometry import identity_matrix, to_grey
from pipeline.align.pyramid import (
    build_pyramids,
    mutual_information,
    pixel_matrix,
    shading_normalised,
)


def test_shading_normalisation_removes_a_smooth_multiplicative_falloff():
    grey = to_grey(data.astronaut()[::2, ::2])  # 256 x 256
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    falloff = 1.0 / (1.0 + 1.5 * ((xx - 110) ** 2 + (yy - 100) ** 2) / 128**2)
    lit = grey * falloff  # a flash's inverse-square fall-off: a product
    plain = np.corrcoef(grey.ravel(), lit.ravel())[0, 1]
    a, b = shading_normalised(grey, 0.05), shading_normalised(lit, 0.05)
    normalised = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    # The fall-off decorrelates the raw images; after normalisation they nearly agree.
    assert plain < 0.9 and normalised > 0.98  # measured: 0.876 and 0.986
    assert shading_normalised(grey, 0.0) is grey  # 0 = plain luminance, untouched


def test_pyramid_frame_maps_the_identity_to_the_identity_between_sizes():
    fixed = to_grey(data.astronaut()[::2, ::2])  # 256 x 256
    moving = to_grey(data.astronaut()[::4, ::4][:, :100])  # another size: 100 x 128
    fixed_levels, moving_levels, unit = build_pyramids(fixed, moving, 128, 3, 0.05)
    assert [im.GetSize() for im in fixed_levels] == [(32, 32), (64, 64), (128, 128)]
    assert moving_levels[-1].GetSize() == (100, 128)
    assert unit == pytest.approx(0.5 * np.hypot(256, 256))
    got = pixel_matrix(sitk.AffineTransform(2), unit, (256, 256), (100, 128))
    np.testing.assert_allclose(got, identity_matrix((256, 256), (100, 128)), atol=1e-12)


def test_mutual_information_is_seeded_and_peaks_at_alignment():
    grey = to_grey(data.astronaut()[::2, ::2])
    levels, _, _ = build_pyramids(grey, grey, 256, 1, 0.05)
    image = levels[0]
    identity = sitk.AffineTransform(2)
    shifted = sitk.AffineTransform(2)
    shifted.SetTranslation((0.05, 0.0))  # 0.05 x unit = 9 px
    at_zero = mutual_information(image, image, identity, 50, 0)
    assert at_zero == mutual_information(image, image, identity, 50, 0)  # same pixels
    assert at_zero > mutual_information(image, image, shifted, 50, 0) + 0.3
