"""Tests of pipeline/evaluation/noise.py: the rows of differences with their noise (model vs
identity and oracle, this configuration vs others) and their markdown."""

from __future__ import annotations

from helpers.perimage import per_image

from pipeline.evaluation.noise import grid_noise_rows, noise_rows, render_noise
from pipeline.evaluation.stats import BETTER, TOO_FEW, WORSE


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


def test_grid_rows_pair_every_encoding_of_the_paper_s_claim_once() -> None:
    """A, B, C of one arch: A - C, B - C and B - A (the three pairs of C > B > A), each once;
    another arch against the reference arch at its encoding."""
    configs = {
        "deepflash/A": [per_image(0.02, seed=0)],
        "deepflash/B": [per_image(0.05, seed=1)],
        "deepflash/C": [per_image(0.03, seed=2)],
        "hdrnet/C": [per_image(0.01, seed=3)],
    }
    rows = grid_noise_rows(configs, metrics=("ssim_gt",))
    assert [r["comparison"] for r in rows] == [
        "deepflash/A - identity",
        "deepflash/B - identity",
        "deepflash/C - identity",
        "hdrnet/C - identity",
        "deepflash/A - deepflash/C",
        "deepflash/B - deepflash/C",
        "deepflash/B - deepflash/A",
        "hdrnet/C - deepflash/C",
    ]
    b_minus_a = next(r for r in rows if r["comparison"] == "deepflash/B - deepflash/A")
    assert b_minus_a["low"] < 0.03 < b_minus_a["high"]  # 0.05 - 0.02
    assert b_minus_a["verdict"] == BETTER
