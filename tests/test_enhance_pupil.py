"""The pupil repair's colour rule, on hand-made iris rings with known answers."""

from __future__ import annotations

import numpy as np

from pipeline.enhance import pupil


def _ring() -> tuple[np.ndarray, np.ndarray]:
    """A 2 x 4 patch: a brown iris (0.4, 0.3, 0.2) and a grey sclera (0.8) in the ring (top
    row), a red pupil below it."""
    patch = np.array(
        [
            [[0.4, 0.3, 0.2], [0.8, 0.8, 0.8], [0.4, 0.3, 0.2], [0.8, 0.8, 0.8]],
            [[0.7, 0.08, 0.08], [0.7, 0.06, 0.10], [0.97, 0.97, 0.97], [0.7, 0.10, 0.02]],
        ],
        np.float32,
    )
    ring = np.zeros((2, 4), bool)
    ring[0] = True
    return patch, ring


def test_iris_tint_fits_the_ring() -> None:
    """r = a g + b b through the iris (0.4 = 0.3 a + 0.2 b) and the sclera (0.8 = 0.8 (a + b))
    gives a = 2, b = -1; r / (g + b) spans 0.5 (grey) to 0.8 (iris), (g - b) / (g + b) 0 to
    0.2 (two pixels of each colour: the 1st and 99th percentiles are those colours')."""
    patch, ring = _ring()
    colour = pupil.iris_tint(patch, ring)
    np.testing.assert_allclose(colour.gains, (2.0, -1.0), atol=1e-6)
    np.testing.assert_allclose(colour.ratio, (0.5, 0.8), atol=1e-5)
    np.testing.assert_allclose(colour.balance, (0.0, 0.2), atol=1e-5)
    assert pupil.iris_tint(patch, np.zeros((2, 4), bool)) == pupil.IrisColour()


def test_repair_pupil_known_pixels() -> None:
    """Full weight: a pupil of g = b = 0.08 gets r = 2 g - b = 0.08 (r / (g + b) 0.5, inside
    the ring's range); a magenta one (g 0.06, b 0.10: balance -0.25) is held at the ring's
    lowest balance, g = b = 0.08, then the same; an orange one (g 0.10, b 0.02: balance
    0.67) is held at 0.2, g 0.072, b 0.048, r = 2 g - b = 0.096 (ratio 0.8, the top).
    Weight 0 leaves a pixel exactly as it was."""
    patch, ring = _ring()
    colour = pupil.iris_tint(patch, ring)
    weight = np.array([[0, 0, 0, 0], [1, 1, 0, 1]], np.float32)
    out = pupil.repair_pupil(patch, weight, colour)
    np.testing.assert_allclose(out[1, 0], (0.08, 0.08, 0.08), atol=1e-6)
    np.testing.assert_allclose(out[1, 1], (0.08, 0.08, 0.08), atol=1e-6)
    np.testing.assert_allclose(out[1, 3], (0.096, 0.072, 0.048), atol=1e-6)
    assert np.array_equal(out[weight == 0], patch[weight == 0])
