"""Is a registration plausible? Per pair and against the other pairs of its folder.

Mutual information always finds *some* maximum: a studio image of another person, or one
turned on its side, registers with status "ok" and a wild matrix, and the crop stage would
then write another person's face onto the flash face as training data. Three independent
signals flag such pairs, each with a reason that names the figure and its limit:

* faces: the flash face and the aligned studio face must agree (:mod:`pipeline.align.facecheck`);
* MI after registration against the folder's own distribution: a robust outlier rule on
  log MI (median and MAD, scaled to a standard deviation) flags a pair far *below* the
  others; it needs ``min_folder_pairs`` pairs, since with a few pairs there is no
  distribution;
* the motion (rotation, scale, shear, shift of the matrix) against the folder's typical
  motion: flagged above ``median + outlier_z x MAD`` of the folder, and never below the
  :data:`MOTION_FLOOR` envelope: the largest pose change expected between the two shots of a
  pair (1.6 x the demo's widest misalignment: 5 degrees, 5 % scale, 0.03 shear, 3 % shift),
  so in-range motion is never a false alarm, even in a folder of nearly still pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Motion below these is never suspect (degrees, |scale - 1|, shear, fraction of the side).
MOTION_FLOOR = {"angle": 8.0, "scale": 0.08, "shear": 0.05, "shift": 0.05}
MOTION_NAMES = {"angle": "rotation", "scale": "scale change", "shear": "shear", "shift": "shift"}
MOTION_UNITS = {"angle": " deg", "scale": "", "shear": "", "shift": " of the side"}
# The MI rule works on log MI: MI values of one folder spread by a factor (1.0 to 1.6 for the
# relit synthetic portraits), not by an amount. Its spread is at least MI_MIN_SPREAD (in log
# units): a folder of near-identical pairs (a MAD near 0) must not flag a pair a little below
# the rest (with z 5: never above 0.61 x the median).
MI_MIN_SPREAD = 0.1
MI_FLOOR = 1e-3  # MI (nats) below this counts as this (log of 0)
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x this = its standard deviation


def _robust(values: Sequence[float]) -> tuple[float, float]:
    """Median and MAD-based standard deviation of ``values``."""
    array = np.asarray(values, dtype=float)
    median = float(np.median(array))
    return median, MAD_TO_SIGMA * float(np.median(np.abs(array - median)))


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def mi_limit(values: Sequence[float], z: float) -> tuple[float, float]:
    """(folder median, lowest plausible MI) of the MI-after values of a folder.

    Robust z on log MI: the lowest plausible value is ``median x exp(-z x sigma)`` with sigma
    the MAD-based spread of log MI (at least :data:`MI_MIN_SPREAD`).
    """
    logs = np.log(np.maximum(np.asarray(values, dtype=float), MI_FLOOR))
    median, sigma = _robust(logs)
    return float(np.exp(median)), float(np.exp(median - z * max(sigma, MI_MIN_SPREAD)))


def motion_limits(motions: Sequence[dict[str, Any]], z: float, use_folder: bool) -> dict:
    """Per motion component: (folder median of |value|, highest plausible |value|)."""
    limits: dict[str, tuple[float, float]] = {}
    for key, floor in MOTION_FLOOR.items():
        values = [abs(float(m[key])) for m in motions if _finite(m.get(key))]
        if use_folder and values:
            median, sigma = _robust(values)
            limits[key] = (median, max(floor, median + z * sigma))
        else:
            limits[key] = (float(np.median(values)) if values else 0.0, floor)
    return limits


def judge_folder(records: Sequence[dict[str, Any]], min_pairs: int, z: float) -> list[list[str]]:
    """The reasons each pair of a folder is suspect (an empty list: plausible).

    ``records``: the register stage's per-pair records (``status``, ``mi_after``, ``motion``
    and, when the face check ran, ``faces`` with its ``reason``). Rejected pairs are neither
    judged nor part of the folder's statistics; the folder rules apply when at least
    ``min_pairs`` pairs remain (the motion floor applies always).
    """
    live = [i for i, r in enumerate(records) if r.get("status") != "rejected"]
    mis = [float(records[i]["mi_after"]) for i in live if _finite(records[i].get("mi_after"))]
    use_folder = len(live) >= min_pairs
    mi_median, mi_low = mi_limit(mis, z) if use_folder and mis else (float("nan"), -math.inf)
    # Motion statistics over the estimates that are applied (an identity fallback is no motion).
    moved = [records[i].get("motion") or {} for i in live if records[i].get("status") == "ok"]
    limits = motion_limits(moved, z, use_folder)
    verdicts: list[list[str]] = [[] for _ in records]
    for i in live:
        record, reasons = records[i], verdicts[i]
        face_reason = (record.get("faces") or {}).get("reason")
        if face_reason:
            reasons.append(face_reason)
        mi = record.get("mi_after")
        if _finite(mi) and float(mi) < mi_low:
            reasons.append(
                f"mi_outlier: MI {float(mi):.3f} after registration, far below the folder's "
                f"median {mi_median:.3f} (limit {mi_low:.3f})"
            )
        if record.get("status") != "ok":
            continue
        for key, (median, limit) in limits.items():
            value = (record.get("motion") or {}).get(key)
            if _finite(value) and abs(float(value)) > limit:
                unit = MOTION_UNITS[key]
                reasons.append(
                    f"unusual_motion: {MOTION_NAMES[key]} {abs(float(value)):.3f}{unit} "
                    f"(limit {limit:.3f}{unit}, folder median {median:.3f})"
                )
    return verdicts


def apply_verdicts(
    records: list[dict[str, Any]], verdicts: Sequence[Sequence[str]], on_suspect: str
) -> None:
    """Record each pair's suspect reasons; with ``on_suspect`` "reject", reject those pairs.

    A rejected pair keeps its matrix in the record (for diagnosis) and gets status "rejected"
    with the reasons, so the crop stage skips it and says why; "keep" only records them.
    """
    if on_suspect not in ("reject", "keep"):
        raise ValueError(f"on_suspect must be 'reject' or 'keep', got {on_suspect!r}")
    for record, reasons in zip(records, verdicts, strict=True):
        record["suspect"] = list(reasons)
        if not reasons or record.get("status") == "rejected":
            continue
        if on_suspect == "reject":
            record["status"] = "rejected"
            record["reason"] = "suspect: " + "; ".join(reasons)
        else:
            kept = "suspect (kept): " + "; ".join(reasons)
            record["reason"] = f"{record['reason']}; {kept}" if record.get("reason") else kept


__all__ = [
    "MI_FLOOR",
    "MI_MIN_SPREAD",
    "MOTION_FLOOR",
    "apply_verdicts",
    "judge_folder",
    "mi_limit",
    "motion_limits",
]
