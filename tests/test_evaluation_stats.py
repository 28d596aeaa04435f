"""Tests of pipeline/evaluation/stats.py: known answers of the paired bootstrap over people
and seeds (a known shift, no difference, duplicated variants), the per-person tables and the
seed summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from pipeline.evaluation.stats import (
    BETTER,
    TOO_FEW,
    WITHIN_NOISE,
    WORSE,
    compare_tables,
    fmt_difference,
    paired_difference,
    person_scores,
    seed_summary,
)


def _people(n: int = 12, seed: int = 0) -> np.ndarray:
    # People differ a lot from each other (the between-person spread pairing removes).
    return np.random.default_rng(seed).normal(0.8, 0.08, size=n)


def test_a_known_shift_plus_noise_is_covered_and_found_better() -> None:
    base = _people()
    noise = np.random.default_rng(1).normal(0, 0.01, size=base.size)
    diff = paired_difference(base + 0.03 + noise, base)
    assert diff.low < 0.03 < diff.high
    assert diff.mean == pytest.approx(0.03 + noise.mean())
    assert diff.verdict == BETTER and diff.n_people == 12 and diff.n_seeds == 1
    # Pairing: the people's own spread (0.08) does not widen the interval of the shift.
    assert diff.high - diff.low < 0.02
    assert paired_difference(base, base + 0.03 + noise).verdict == WORSE
    # Lower is better (a loss): the same shift is worse.
    assert paired_difference(base + 0.03 + noise, base, higher_is_better=False).verdict == WORSE


def test_identical_systems_cover_zero_within_noise() -> None:
    base = _people()
    other = base + np.random.default_rng(2).normal(0, 0.01, size=base.size)
    same = paired_difference(base, base)
    assert same.mean == 0 and same.low == 0 == same.high and same.verdict == WITHIN_NOISE
    noisy = paired_difference(other - (other - base).mean(), base)  # zero-mean noise only
    assert noisy.low < 0 < noisy.high and noisy.verdict == WITHIN_NOISE


def _table(scores: dict[str, list[float]], system: str = "model") -> pd.DataFrame:
    rows = [
        {"split": "test", "subject": p, "pair_id": f"{p}_{k}", "variant": f"v{k}",
         "system": system, "ssim_gt": str(v)}
        for p, values in scores.items()
        for k, v in enumerate(values)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_duplicated_variants_do_not_narrow_the_interval() -> None:
    rng = np.random.default_rng(3)
    a = {f"p{i}": [0.8 + 0.02 * rng.standard_normal()] for i in range(10)}
    b = {p: [v[0] - 0.01 + 0.02 * rng.standard_normal()] for p, v in a.items()}
    once = compare_tables([_table(a)], [_table(b)], "test", "ssim_gt")
    twenty = {p: v * 20 for p, v in a.items()}, {p: v * 20 for p, v in b.items()}
    dup = compare_tables([_table(twenty[0])], [_table(twenty[1])], "test", "ssim_gt")
    # The sample size is the 10 people, however many variants each has.
    assert (dup.n_people, dup.verdict) == (once.n_people, once.verdict) == (10, BETTER)
    for field in ("mean", "spread", "low", "high"):
        assert getattr(dup, field) == pytest.approx(getattr(once, field), rel=1e-9)
    # What counting each variant as a sample would claim: an interval ~sqrt(20) = 4.5x narrower.
    rows = np.repeat(np.array([a[p][0] - b[p][0] for p in a]), 20)
    naive = scipy_stats.bootstrap((rows,), np.mean, method="percentile", random_state=0)
    ratio = (once.high - once.low) / np.ptp(naive.confidence_interval)
    assert 3.5 < ratio < 5.5


def test_seeds_are_resampled_within_each_system() -> None:
    people = _people(8)
    seeds = np.random.default_rng(4).normal(0, 0.01, size=(3, 1))
    a = people + 0.02 + seeds  # three trainings: each shifts every person alike
    one_seed = paired_difference(a[:1], people)
    three = paired_difference(a, people)
    assert three.n_seeds == 3 and one_seed.n_seeds == 1
    # A single seed hides the seed noise: its interval is (near) zero width.
    assert one_seed.high - one_seed.low < 1e-9 < three.high - three.low
    assert three.low < 0.02 + seeds.mean() < three.high


def test_one_person_one_seed_gives_no_estimate() -> None:
    diff = paired_difference([0.9], [0.8])
    assert diff.verdict == TOO_FEW and diff.mean == pytest.approx(0.1) and math.isnan(diff.low)
    assert fmt_difference(diff, 100.0)[-1] == TOO_FEW
    with pytest.raises(ValueError, match="different people"):
        paired_difference([0.9, 0.8], [0.8])


def test_person_scores_average_each_persons_images() -> None:
    table = pd.concat([_table({"b": [0.5, 0.7], "a": [0.9]}), _table({"a": [0.1]}, "identity")])
    scores, people = person_scores([table], "test", "model", "ssim_gt")
    assert people == ["a", "b"] and scores.tolist() == [[0.9, pytest.approx(0.6)]]
    model_vs_identity = compare_tables([table], [table], "test", "ssim_gt", "model", "identity")
    assert model_vs_identity.n_people == 1 and model_vs_identity.mean == pytest.approx(0.8)


def test_seed_summary() -> None:
    summary = seed_summary([88.20, 89.13, 88.47])
    assert summary["mean"] == pytest.approx(88.6) and summary["n"] == 3
    assert summary["std"] == pytest.approx(np.std([88.20, 89.13, 88.47], ddof=1))
    half = scipy_stats.t.ppf(0.975, 2) * summary["std"] / math.sqrt(3)
    assert summary["low"] == pytest.approx(88.6 - half) and summary["high"] == pytest.approx(
        88.6 + half
    )
    assert seed_summary([1.0]) == {"mean": 1.0, "std": None, "low": None, "high": None, "n": 1}
    cells = fmt_difference(paired_difference(_people() + 0.03, _people()), 100.0)
    assert cells[0] == "+3.00 ± 0.00" and cells[2:] == ["12", "1", BETTER]
