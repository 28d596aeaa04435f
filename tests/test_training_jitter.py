"""Tests of pipeline/training/jitter.py: known transforms, one transform per pair, the mask;
and training with train.jitter and loss.ssim_weight (seeded, resumable)."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.training.jitter import (
    MAX_LOG_SCALE,
    MAX_ROTATION_DEG,
    MAX_SHIFT,
    jitter_batch,
    random_matrices,
    warp_batch,
)


def _batch(n: int = 2, side: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    flash = torch.rand(n, 3, side, side, generator=gen)
    return flash, flash * 0.5 + 0.1, torch.ones(n, 1, side, side)


def test_identity_and_mirror_are_exact() -> None:
    flash, studio, valid = _batch()
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    f, s, v = warp_batch(flash, studio, valid, identity)
    assert torch.allclose(f, flash, atol=1e-5) and torch.allclose(s, studio, atol=1e-5)
    assert torch.equal(v, valid)
    mirror = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    f, s, v = warp_batch(flash, studio, valid, mirror)
    assert torch.allclose(f, flash.flip(-1), atol=1e-5)
    assert torch.allclose(s, studio.flip(-1), atol=1e-5) and torch.equal(v, valid)


def test_a_shift_moves_pixels_and_marks_the_uncovered_border_invalid() -> None:
    flash, studio, valid = _batch(1, 16)
    # x_in = x_out + 0.25: the content moves left by 0.25 * 16 / 2 = 2 pixels.
    theta = torch.tensor([[[1.0, 0, 0.25], [0, 1.0, 0]]])
    f, s, v = warp_batch(flash, studio, valid, theta)
    assert torch.allclose(f[..., :14], flash[..., 2:], atol=1e-5)
    assert torch.allclose(s[..., :14], studio[..., 2:], atol=1e-5)
    assert v[..., :14].all() and not v[..., 14:].any()
    assert (f[..., 14:] == 0).all()  # constant padding, never mirrored


def test_pairs_share_one_transform_and_invalid_input_stays_invalid() -> None:
    flash, studio, valid = _batch(4, 24)
    valid[:, :, :, :4] = 0  # a padded left border
    torch.manual_seed(3)
    f, s, v = jitter_batch(flash, studio, valid, 1.0)
    # studio = 0.5 flash + 0.1 before: after the same warp, wherever both are valid.
    inside = v.bool().expand_as(f)
    assert torch.allclose(s[inside], 0.5 * f[inside] + 0.1, atol=1e-5)
    assert v.sum() < valid.sum()  # the border and what left the frame
    assert not torch.allclose(f, flash)


def test_matrices_stay_in_their_ranges_and_are_seeded() -> None:
    theta = random_matrices(500, 1.0, torch.Generator().manual_seed(0))
    det = theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]
    # |det| = 1 / scale^2; negative for the mirrored half.
    scale = 1 / det.abs().sqrt()
    assert scale.log().abs().max() <= MAX_LOG_SCALE + 1e-6
    assert 150 < (det < 0).sum() < 350
    # theta[1] = (sin * mirror, cos) / scale, mirror = sign(det).
    angle = torch.atan2(theta[:, 1, 0] * torch.sign(det), theta[:, 1, 1])
    assert angle.abs().max() <= math.radians(MAX_ROTATION_DEG) + 1e-6
    assert theta[:, :, 2].abs().max() <= MAX_SHIFT + 1e-6
    again = random_matrices(500, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(theta, again)
    half = random_matrices(500, 0.5, torch.Generator().manual_seed(0))
    assert half[:, :, 2].abs().max() <= MAX_SHIFT / 2 + 1e-6


def test_strength_zero_is_the_batch_itself_and_negative_is_refused() -> None:
    flash, studio, valid = _batch()
    out = jitter_batch(flash, studio, valid, 0.0)
    assert out[0] is flash and out[1] is studio and out[2] is valid
    with pytest.raises(ValueError, match="jitter strength"):
        random_matrices(2, -1.0)


def test_training_with_jitter_is_seeded_and_resumes_exactly(tmp_path) -> None:
    from helpers.trainingdata import make_processed, out_paths, same_state, tiny_params

    from pipeline.training.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = tmp_path / "data"
        make_processed(data, n_train=4, n_val=1)

        def run(out: str, epochs: int, jitter: float, ssim_weight: float = 0.0):
            settings = {"jitter": jitter, "epochs": epochs, "lr_schedule": "constant"}
            params = tiny_params(train=settings, loss={"ssim_weight": ssim_weight})
            return train(params, out_paths(data, tmp_path / out), progress=False)

        straight = run("a", 2, 1.0)
        assert same_state(run("b", 2, 1.0).model.state_dict(), straight.model.state_dict())
        plain = run("c", 2, 0.0)
        assert not same_state(plain.model.state_dict(), straight.model.state_dict())
        # One epoch, then a second one resumed from its checkpoint: the jitter draws continue.
        run("d", 1, 1.0)
        resumed = run("d", 2, 1.0)
        assert resumed.resumed_from_epoch == 1
        assert same_state(resumed.model.state_dict(), straight.model.state_dict())
        # loss.ssim_weight trains through the same loop (the SSIM term of the reconstruction).
        with_ssim = run("e", 2, 1.0, ssim_weight=0.1)
        assert not same_state(with_ssim.model.state_dict(), straight.model.state_dict())
        assert with_ssim.history[0]["train_loss"] > straight.history[0]["train_loss"]
    finally:
        torch.set_num_threads(threads)
