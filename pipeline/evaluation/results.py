"""Evaluation results as data: metric and system names, MLflow metric names, a text table.

Pure Python (no torch), so that the report stage and the CLI read results without loading a
model's dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

METRICS = ("loss", "accuracy", "ssim_pgt", "psnr_pgt", "ssim_gt", "psnr_gt")
SYSTEMS = ("model", "identity")


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


def format_table(results: Mapping[str, Any], scope: str = "full") -> str:
    """Plain-text table: one row per split and system, the six metrics as columns."""
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
    ]
    rows = [header]
    order = [s for s in ("train", "val", "test") if s in results]
    for split in order + sorted(k for k in results if k not in order):
        block = results[split]
        if not isinstance(block, Mapping) or scope not in block:
            if isinstance(block, Mapping):
                rows.append([split, "0", "-", *["-"] * 6])
            continue
        summary = block[scope]
        n = summary.get("images", block["images"])
        for system in SYSTEMS:
            m = summary[system]
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
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
