"""Test helper: evaluation results shaped like metrics/eval.json, with chosen numbers."""

from __future__ import annotations

from typing import Any

from pipeline.config import SPLITS


def system(ssim: float, psnr: float, loss: float = 0.01, accuracy: float = 95.0) -> dict:
    """One system's six metrics (the same SSIM/PSNR against both ground truths)."""
    return {
        "loss": loss,
        "accuracy": accuracy,
        "ssim_pgt": ssim,
        "psnr_pgt": psnr,
        "ssim_gt": ssim,
        "psnr_gt": psnr,
    }


def results(model_ssim: float, identity_ssim: float = 0.7, **extra: dict) -> dict[str, Any]:
    """eval.json of a model with validation SSIM ``model_ssim`` (train/test 0.01 higher);
    ``extra``: more systems (e.g. ``oracle=system(0.99, 40)``)."""
    out: dict[str, Any] = {}
    for i, split in enumerate(SPLITS):
        offset = 0.0 if split == "val" else 0.01 * (i + 1)
        block = {
            "model": system(model_ssim + offset, 20.0 + 10 * model_ssim),
            "identity": system(identity_ssim, 18.0, loss=0.02, accuracy=90.0),
            **extra,
        }
        out[split] = {
            "images": 20,
            "full": {"images": 20, **block},
            "protocol": {"images": 5, **block},
        }
    return out
