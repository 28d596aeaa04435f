"""The rows of the report and of ``deepflash grid table`` that say whether a difference is
real: each difference with its paired bootstrap over people and seeds
(:func:`pipeline.evaluation.stats.compare_tables`) and a verdict.

Inputs are per-image tables (``metrics/per_image.csv`` read by :func:`pipeline.io.read_csv`),
a list of them per configuration: one table per seed. Differences between configurations are
taken against the raw ground truth, the one reference every encoding shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.evaluation.report import md_table
from pipeline.evaluation.stats import compare_tables, fmt_difference

NOISE_METRICS = ("ssim_gt", "psnr_gt")
NOISE_SPLITS = ("val", "test")
_UNITS = {"ssim_gt": ("SSIM % vs gt", 100.0), "psnr_gt": ("PSNR dB vs gt", 1.0)}


def _splits(tables: Sequence[Any], splits: Sequence[str]) -> list[str]:
    present = set(tables[0]["split"])
    return [s for s in splits if s in present]


def noise_rows(
    tables: Sequence[Any],
    others: Mapping[str, Sequence[Any]] | None = None,
    splits: Sequence[str] = NOISE_SPLITS,
    metrics: Sequence[str] = NOISE_METRICS,
) -> list[dict[str, Any]]:
    """Per split and metric: model - identity, model - oracle of ``tables`` (one per seed),
    then its model minus the model of each of ``others`` (label -> its seed tables) on the
    people both scored. Rows: split, comparison, metric and the
    :class:`~pipeline.evaluation.stats.Difference` fields."""
    rows: list[dict[str, Any]] = []
    for split in _splits(tables, splits):
        for metric in metrics:
            pairs = [
                ("model - identity", tables, "identity"),
                ("model - oracle", tables, "oracle"),
            ]
            pairs += [
                (f"this - {label}", theirs, "model") for label, theirs in (others or {}).items()
            ]
            for comparison, reference, system in pairs:
                if split not in set(reference[0]["split"]):
                    continue
                diff = compare_tables(tables, reference, split, metric, "model", system)
                rows.append(
                    {"split": split, "comparison": comparison, "metric": metric, **diff.as_dict()}
                )
    return rows


def render_noise(rows: Sequence[Mapping[str, Any]], title: str) -> list[str]:
    """Markdown lines of :func:`noise_rows`: mean ± spread, 95 % interval, people, seeds and
    the verdict per row, SSIM in percent points."""
    lines = [
        f"## {title}",
        "",
        "Differences of per-person means (every person weighs the same, whatever their number of "
        "photos and augmented variants); spread: the bootstrap standard error; interval: 95 %, "
        "paired bootstrap resampling people (and, independently per system, seeds); better / "
        "worse: the interval excludes 0; within noise: it does not; too few people: one person "
        "and one seed, no estimate of the noise.",
        "",
    ]
    if not rows:
        return lines + ["(no per-person scores)", ""]
    table = []
    for row in rows:
        label, scale = _UNITS.get(row["metric"], (row["metric"], 1.0))
        table.append([row["split"], row["comparison"], label, *fmt_difference(row, scale)])
    header = ["split", "difference", "metric", "mean ± spread", "95 % interval", "people", "seeds"]
    return lines + md_table([*header, "verdict"], table) + [""]


__all__ = ["NOISE_METRICS", "NOISE_SPLITS", "noise_rows", "render_noise"]
