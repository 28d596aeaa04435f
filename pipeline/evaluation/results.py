"""Evaluation results as data: metric and system names, MLflow metric names, a text table.

Pure Python (no torch), so that the report stage and the CLI read results without loading a
model's dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# ssim_pgt_matlab: ssim_pgt in the paper's convention (MATLAB's ssim), for Tables 2 and 3.
METRICS = ("loss", "accuracy", "ssim_pgt", "psnr_pgt", "ssim_gt", "psnr_gt", "ssim_pgt_matlab")
PAPER_SSIM = "ssim_pgt_matlab"
SSIM_CONVENTIONS = {
    "ssim_pgt": "torchmetrics (Gaussian 11x11, sigma 1.5, reflect padding, per channel): "
    "the training signal",
    PAPER_SSIM: "MATLAB's ssim, the paper's (Gaussian sigma 1.5, 11 taps, replicate padding, "
    "an RGB image as a volume)",
}
# model: the trained network; identity: output = the flash image (doing nothing); oracle: a
# perfect network (output = the true target), the encoding's ceiling (eq. 8).
SYSTEMS = ("model", "identity", "oracle")
# gap_closed is reported against the raw ground truth, the one reference every encoding shares.
GAP_METRICS = ("ssim_gt", "psnr_gt")
# metrics/per_image.csv: one row per image and system; subject is the person, pair_id the
# source photo (pair) and variant its augmented copy, so runs on the same data pair row by row.
PER_IMAGE_COLUMNS = ("split", "subject", "pair_id", "variant", "system", *METRICS)
PSNR_CAP = 100.0  # dB; the PSNR of identical images, so that every value is finite JSON


def gap_closed(model: float | None, identity: float | None, oracle: float | None) -> float | None:
    """(model - identity) / (oracle - identity): the share of the gap between doing nothing
    and the encoding's ceiling that the model closes (1 = at the ceiling, below 0 = worse than
    doing nothing). None when undefined: a value is missing or not finite, the ceiling does
    not beat the identity, or it is the PSNR cap (an exact reconstruction: encodings A and B,
    whose ceiling is the studio image itself)."""
    values = (model, identity, oracle)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return None
    if oracle >= PSNR_CAP or oracle - identity <= 1e-9:
        return None
    return float((model - identity) / (oracle - identity))


def flat_metrics(results: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """``eval.<split>.<full|protocol>.<system>.<metric>`` -> value (MLflow metric names)."""
    flat: dict[str, float] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{key}.{k}")
        elif isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node):
            flat[key] = float(node)

    walk(results, prefix)
    return flat


def _percent(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{100 * value:.1f}"


def format_table(results: Mapping[str, Any], scope: str = "full") -> str:
    """Plain-text table: one row per split and system (model, identity, oracle), the six
    metrics as columns, and on the model row the share of the identity-to-oracle gap it
    closes in SSIM and PSNR against the raw ground truth (``-``: undefined)."""
    header = [
        "split",
        "images",
        "system",
        "loss",
        "acc %",
        "SSIM pgt",
        "PSNR pgt",
        "SSIM gt",
        "PSNR gt",
        "gap SSIM %",
        "gap PSNR %",
    ]
    rows = [header]
    order = [s for s in ("train", "val", "test") if s in results]
    for split in order + sorted(k for k in results if k not in order):
        block = results[split]
        if not isinstance(block, Mapping) or scope not in block:
            if isinstance(block, Mapping):
                rows.append([split, "0", "-", *["-"] * 8])
            continue
        summary = block[scope]
        n = summary.get("images", block["images"])
        gaps = summary.get("gap_closed") or {}
        for system in SYSTEMS:
            if system not in summary:  # results written before the oracle existed
                continue
            m = summary[system]
            gap = [_percent(gaps.get(g)) if system == "model" else "" for g in GAP_METRICS]
            rows.append(
                [
                    split,
                    str(n),
                    system,
                    f"{m['loss']:.5f}",
                    f"{m['accuracy']:.2f}",
                    f"{100 * m['ssim_pgt']:.2f}",
                    f"{m['psnr_pgt']:.2f}",
                    f"{100 * m['ssim_gt']:.2f}",
                    f"{m['psnr_gt']:.2f}",
                    *gap,
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
