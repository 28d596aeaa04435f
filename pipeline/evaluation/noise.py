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

from pipeline.config import ENCODINGS
from pipeline.evaluation.report import md_table
from pipeline.evaluation.stats import compare_tables, fmt_difference

NOISE_METRICS = ("ssim_gt", "psnr_gt")
NOISE_SPLITS = ("val", "test")
_UNITS = {"ssim_gt": ("SSIM % vs gt", 100.0), "psnr_gt": ("PSNR dB vs gt", 1.0)}


def _splits(tables: Sequence[Any], splits: Sequence[str]) -> list[str]:
    present = set(tables[0]["split"])
    return [s for s in splits if s in present]


def _row(
    split: str, comparison: str, metric: str, a: Sequence[Any], b: Sequence[Any], systems: tuple
) -> dict[str, Any]:
    diff = compare_tables(a, b, split, metric, *systems)
    return {"split": split, "comparison": comparison, "metric": metric, **diff.as_dict()}


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
            for system in ("identity", "oracle"):
                rows.append(
                    _row(split, f"model - {system}", metric, tables, tables, ("model", system))
                )
            for label, theirs in (others or {}).items():
                if split in set(theirs[0]["split"]):
                    rows.append(
                        _row(split, f"this - {label}", metric, tables, theirs, ("model", "model"))
                    )
    return rows


def grid_noise_rows(
    configs: Mapping[str, Sequence[Any]],
    splits: Sequence[str] = ("test",),
    metrics: Sequence[str] = NOISE_METRICS,
    reference_encoding: str = "C",
    reference_arch: str = "deepflash",
) -> list[dict[str, Any]]:
    """The grid's rows: per configuration ``"<arch>/<encoding>"`` (-> its seed tables), model -
    identity; then each encoding minus ``reference_encoding`` of the same arch (A - C, B - C),
    each other encoding minus those before it (B - A: with the two before, all three pairs
    of the paper's claim C > B > A, Sec. 4), and each arch minus ``reference_arch`` with the
    same encoding."""
    pairs = [(f"{key} - identity", key, key, ("model", "identity")) for key in configs]
    for key in configs:
        arch, encoding = key.split("/", 1)
        others = [f"{arch}/{reference_encoding}", f"{reference_arch}/{encoding}"]
        if encoding != reference_encoding:
            others += [f"{arch}/{e}" for e in sorted(ENCODINGS) if e < encoding]
        for other in dict.fromkeys(others):
            if other != key and other in configs:
                pairs.append((f"{key} - {other}", key, other, ("model", "model")))
    rows: list[dict[str, Any]] = []
    for split in splits:
        for metric in metrics:
            for label, a, b, systems in pairs:
                if all(split in set(configs[k][0]["split"]) for k in (a, b)):
                    rows.append(_row(split, label, metric, configs[a], configs[b], systems))
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


__all__ = ["NOISE_METRICS", "NOISE_SPLITS", "grid_noise_rows", "noise_rows", "render_noise"]
