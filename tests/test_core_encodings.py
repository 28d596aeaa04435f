"""Encodings A, B, C: targets, reconstruction (eq. 2) and preconditioned ground truth (eq. 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.bilateral import bilateral_filter
from pipeline.core.encodings import (
    ENCODINGS,
    make_target,
    network_input,
    preconditioned_ground_truth,
    reconstruct,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blur_np(image: np.ndarray) -> np.ndarray:
    return bilateral_filter(image, 3.0, 0.4)


def _blur_t(image: torch.Tensor) -> torch.Tensor:
    return bilateral_filter(image, 3.0, 0.4)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((24, 20, 3)).astype(np.float32)
    o = np.clip(0.6 * x + 0.2 + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    return x, o


def test_targets_by_hand():
    x = np.array([0.8], np.float32)
    o = np.array([0.2], np.float32)
    halve = lambda im: im / 2  # noqa: E731 - a stand-in BL with an easy answer
    assert make_target(x, o, "A", halve) == pytest.approx(0.2)
    assert make_target(x, o, "B", halve) == pytest.approx((0.8 - 0.2 + 1) / 2)  # 0.8
    assert make_target(x, o, "C", halve) == pytest.approx((0.4 - 0.1 + 1) / 2)  # 0.65
    assert network_input(x, "A", halve) == pytest.approx(0.8)
    assert network_input(x, "B", halve) == pytest.approx(0.8)
    assert network_input(x, "C", halve) == pytest.approx(0.4)
    # eq. 2 and eq. 8: x - 2y + 1
    assert reconstruct(x, np.array([0.65]), "C") == pytest.approx(0.8 - 1.3 + 1)
    assert reconstruct(x, np.array([0.65]), "A") == pytest.approx(0.65)
    assert preconditioned_ground_truth(x, np.array([0.8]), "B") == pytest.approx(0.2)


@pytest.mark.parametrize("encoding", ["A", "B"])
def test_reconstruction_of_the_target_is_the_studio_image(pair, encoding):
    x, o = pair
    t = make_target(x, o, encoding, _blur_np)
    np.testing.assert_allclose(reconstruct(x, t, encoding), o, atol=1e-6)
    np.testing.assert_allclose(preconditioned_ground_truth(x, t, encoding), o, atol=1e-6)


def test_encoding_c_reconstructs_eq_8(pair):
    x, o = pair
    t = make_target(x, o, "C", _blur_np)
    expected = x - _blur_np(x) + _blur_np(o)  # eq. 8: flash details on studio lighting
    np.testing.assert_allclose(reconstruct(x, t, "C"), expected, atol=1e-6)
    np.testing.assert_allclose(preconditioned_ground_truth(x, t, "C"), expected, atol=1e-6)
    # It is not o itself: the flash image's fine detail stays.
    assert np.abs(expected - o).mean() > 1e-2
    assert network_input(x, "C", _blur_np) is not x
    np.testing.assert_allclose(network_input(x, "C", _blur_np), _blur_np(x))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_torch_and_numpy_agree(pair, encoding):
    x, o = pair
    xt = torch.from_numpy(x).permute(2, 0, 1)[None]
    ot = torch.from_numpy(o).permute(2, 0, 1)[None]
    t_np = make_target(x, o, encoding, _blur_np)
    t_t = make_target(xt, ot, encoding, _blur_t)
    assert isinstance(t_t, torch.Tensor)
    np.testing.assert_allclose(t_t[0].permute(1, 2, 0).numpy(), t_np, atol=1e-5)
    rec = reconstruct(xt, t_t, encoding)
    np.testing.assert_allclose(
        rec[0].permute(1, 2, 0).numpy(), reconstruct(x, t_np, encoding), atol=1e-5
    )


def test_identity_output_reconstructs_the_flash_image(pair):
    # The identity baseline: y = make_target(x, x) gives back x (0.5 for B, ~0.5 for C).
    x, _ = pair
    for encoding in ENCODINGS:
        y = make_target(x, x, encoding, _blur_np)
        np.testing.assert_allclose(reconstruct(x, y, encoding), x, atol=1e-6)
    np.testing.assert_allclose(make_target(x, x, "B", _blur_np), 0.5, atol=1e-7)


def test_unknown_encoding():
    with pytest.raises(ValueError, match="unknown encoding 'D'"):
        make_target(np.zeros(1), np.zeros(1), "D", _blur_np)
    with pytest.raises(ValueError, match="expected one of A, B, C"):
        reconstruct(np.zeros(1), np.zeros(1), "c")
