"""pipeline/align/plausibility.py: folder rules (MI and motion outliers) and verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.align.plausibility import (
    MOTION_FLOOR,
    apply_verdicts,
    judge_folder,
    mi_limit,
    motion_limits,
)

STILL = {"angle": 0.5, "scale": 0.01, "shear": 0.005, "shift": 0.01}


def record(mi: float, status: str = "ok", face: str = "", **moved: float) -> dict:
    return {
        "status": status,
        "reason": "",
        "mi_after": mi,
        "motion": {**STILL, **moved},
        "faces": {"reason": face},
    }


def folder(n: int, mi: float = 1.0) -> list[dict]:
    # A genuine folder: MI spread around `mi` by +-5 %, small motions.
    return [record(mi * (0.95 + 0.1 * i / max(1, n - 1))) for i in range(n)]


def test_mi_far_below_the_folder_is_flagged_only_with_enough_pairs():
    pairs = folder(10) + [record(0.45)]
    verdicts = judge_folder(pairs, min_pairs=8, z=5.0)
    assert verdicts[:10] == [[]] * 10
    assert len(verdicts[10]) == 1 and verdicts[10][0].startswith("mi_outlier: MI 0.450")
    # 0.994 x exp(-5 x 0.1): the log-MI spread of this tight folder is below the 0.1 floor.
    assert "median 0.994 (limit 0.603)" in verdicts[10][0]
    # Too few pairs for a distribution: no MI rule at all.
    assert judge_folder(folder(4) + [record(0.45)], min_pairs=8, z=5.0) == [[]] * 5


def test_mi_limit_is_robust_and_has_a_spread_floor():
    # Median 1.0; MAD-based spread 0 (identical values) -> the floor: exp(-5 x 0.1) = 0.607.
    median, low = mi_limit([1.0] * 9, z=5.0)
    assert median == pytest.approx(1.0) and low == pytest.approx(np.exp(-0.5))
    # One wild value (even a negative MI) does not move median and MAD (a mean and std would).
    median, low = mi_limit([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, -50.0], z=5.0)
    assert median == pytest.approx(1.0) and low == pytest.approx(np.exp(-0.5))
    # A folder spread by a factor (0.7 to 1.4) gets a wider limit: log spread 0.21 > 0.1.
    median, low = mi_limit([0.7, 0.8, 0.9, 1.0, 1.0, 1.1, 1.2, 1.4], z=5.0)
    assert median == pytest.approx(1.0) and 0.2 < low < 0.35


def test_motion_inside_the_floor_is_never_flagged():
    # A still folder (tiny MAD) and a pair at the floor's edge: in-range motion, kept.
    edge = {k: v * 0.99 for k, v in MOTION_FLOOR.items()}
    pairs = folder(10) + [record(1.0, **edge)]
    assert judge_folder(pairs, min_pairs=8, z=5.0)[-1] == []
    # A mislabelled pair (another person) once registered with a 16 % zoom and a 61 px shift.
    wild = record(1.0, scale=0.16, shift=61 / 512)
    reasons = judge_folder(folder(10) + [wild], min_pairs=8, z=5.0)[-1]
    assert [r.split(":")[0] for r in reasons] == ["unusual_motion", "unusual_motion"]
    assert "scale change 0.160 (limit 0.080" in reasons[0] and "shift 0.119" in reasons[1]
    # The floor holds with few pairs too (no folder statistics).
    alone = judge_folder([wild], min_pairs=8, z=5.0)[0]
    assert [r.split(" (")[0] for r in alone] == [r.split(" (")[0] for r in reasons]


def test_a_folder_that_moves_a_lot_raises_its_own_limit():
    shaky = [record(1.0, angle=6.0 + 0.5 * i) for i in range(10)]  # hand-held: 6 to 10.5 deg
    limits = motion_limits([r["motion"] for r in shaky], z=5.0, use_folder=True)
    median, limit = limits["angle"]
    assert median == pytest.approx(8.25) and limit > 12.0
    assert judge_folder([*shaky, record(1.0, angle=11.0)], min_pairs=8, z=5.0)[-1] == []
    assert judge_folder([*shaky, record(1.0, angle=40.0)], min_pairs=8, z=5.0)[-1]


def test_faces_reason_and_rejected_pairs():
    pairs = [
        *folder(9),
        record(1.0, face="faces_disagree: box overlap (IoU) 0.10 below 0.5"),
        record(0.01, status="rejected"),  # neither judged nor in the statistics
        record(0.9, status="identity_fallback", angle=30.0),  # identity applied: no motion
    ]
    verdicts = judge_folder(pairs, min_pairs=8, z=5.0)
    assert verdicts[9] == ["faces_disagree: box overlap (IoU) 0.10 below 0.5"]
    assert verdicts[10] == [] and verdicts[11] == []


def test_apply_verdicts_rejects_or_keeps_with_the_reason():
    pairs = [record(1.0), record(1.0), record(1.0, status="rejected")]
    pairs[2]["reason"] = "flat_image: moving image has no contrast"
    verdicts = [[], ["mi_outlier: x", "unusual_motion: y"], ["mi_outlier: z"]]
    rejected = [dict(p) for p in pairs]
    apply_verdicts(rejected, verdicts, "reject")
    assert [p["status"] for p in rejected] == ["ok", "rejected", "rejected"]
    assert rejected[1]["reason"] == "suspect: mi_outlier: x; unusual_motion: y"
    assert rejected[2]["reason"] == "flat_image: moving image has no contrast"  # already out
    assert rejected[1]["suspect"] == verdicts[1] and rejected[0]["suspect"] == []
    kept = [dict(p) for p in pairs]
    apply_verdicts(kept, verdicts, "keep")
    assert [p["status"] for p in kept] == ["ok", "ok", "rejected"]
    assert kept[1]["reason"] == "suspect (kept): mi_outlier: x; unusual_motion: y"
    with pytest.raises(ValueError, match="on_suspect"):
        apply_verdicts(kept, verdicts, "ignore")
