"""Tests of pipeline/evaluation/noise.py: the rows of differences with their noise (model vs
identity and oracle, this configuration vs others) and their markdown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.evaluation.noise import noise_rows, render_noise
from pipeline.evaluation.stats import BETTER, TOO_FEW, WORSE


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


def test_rows_against_the_systems_and_other_configurations() -> None:
    this = [per_image(0.05, seed=0), per_image(0.05, seed=1)]  # two seeds
    other = [per_image(0.02, seed=2)]
    rows = noise_rows(this, {"hdrnet/C": other}, metrics=("ssim_gt",))
    assert [(r["split"], r["comparison"]) for r in rows] == [
        ("val", "model - identity"),
        ("val", "model - oracle"),
        ("val", "this - hdrnet/C"),
        ("test", "model - identity"),
        ("test", "model - oracle"),
        ("test", "this - hdrnet/C"),
    ]
    by = {(r["split"], r["comparison"]): r for r in rows}
    ident = by[("test", "model - identity")]
    assert ident["verdict"] == BETTER and ident["n_people"] == 6 and ident["n_seeds"] == 2
    assert ident["low"] < 0.05 < ident["high"]
    assert by[("test", "model - oracle")]["verdict"] == WORSE
    versus = by[("test", "this - hdrnet/C")]
    assert versus["low"] < 0.03 < versus["high"] and versus["verdict"] == BETTER
    text = "\n".join(render_noise(rows, "Noise"))
    assert "| test | model - identity | SSIM % vs gt | +5.0" in text
    assert "| 6 | 2 | better |" in text


def test_one_person_is_too_few_and_missing_splits_are_skipped() -> None:
    rows = noise_rows([per_image(0.05, people=1, splits=("test",))], metrics=("psnr_gt",))
    assert [r["split"] for r in rows] == ["test", "test"]
    assert {r["verdict"] for r in rows} == {TOO_FEW} and rows[0]["low"] is None
    text = "\n".join(render_noise(rows, "Noise"))
    row = next(line for line in text.splitlines() if "model - identity" in line)
    assert row.startswith("| test | model - identity | PSNR dB vs gt | +1.0")  # 20 x 0.05
    assert row.endswith("| - | 1 | 1 | too few people |")
    assert render_noise([], "Noise")[-2] == "(no per-person scores)"
