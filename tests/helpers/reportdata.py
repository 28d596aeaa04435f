"""Evaluation results with known numbers, shared by the report tests."""

from __future__ import annotations


def system(ssim: float, psnr: float, loss: float = 0.004, acc: float = 96.0) -> dict:
    """One system's metric means; against the raw gt 0.1 SSIM and 2 dB below the pgt ones."""
    return {
        "loss": loss,
        "accuracy": acc,
        "ssim_pgt": ssim,
        "psnr_pgt": psnr,
        "ssim_gt": ssim - 0.1,
        "psnr_gt": psnr - 2.0,
    }


def eval_results(ssim: float = 0.9, psnr: float = 21.0) -> dict:
    """eval.json of a run: train and val alike (40 images, protocol 30), an empty test split."""
    oracle = system(1.0, 100.0, 0.0, 100.0)  # vs gt: SSIM 0.9, PSNR 98 dB (fixture offsets)
    block = {
        "images": 40,
        "full": {
            "model": system(ssim, psnr),
            "identity": system(0.7, 15.0, 0.01, 90.0),
            "oracle": oracle,
        },
        "protocol": {
            "images": 30,
            "model": system(ssim + 0.01, psnr + 1),
            "identity": system(0.7, 15.0, 0.01, 90.0),
            "oracle": oracle,
        },
    }
    return {"train": block, "val": block, "test": {"images": 0}}
