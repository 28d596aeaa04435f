"""Test helper: per-image score tables (metrics/per_image.csv as read_csv gives it) with a
known model shift per person."""

from __future__ import annotations

import numpy as np
import pandas as pd


def per_image(shift: float, people: int = 6, seed: int = 0, splits=("val", "test")) -> pd.DataFrame:
    """metrics/per_image.csv of a run: the model ``shift`` above the identity per person, the
    oracle 0.1 above the model, 3 variants per person (as text, like read_csv gives)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in splits:
        for p in range(people):
            base = 0.6 + 0.05 * p
            for v in range(3):
                noise = 0.002 * rng.standard_normal()
                for system, value in (
                    ("identity", base),
                    ("model", base + shift + noise),
                    ("oracle", base + shift + 0.1),
                ):
                    rows.append(
                        {"split": split, "subject": f"p{p}", "pair_id": f"p{p}_a",
                         "variant": f"v{v}", "system": system, "ssim_gt": f"{value:.8g}",
                         "psnr_gt": f"{20 * value:.8g}"}
                    )  # fmt: skip
    return pd.DataFrame(rows)
