"""Whether a difference between two systems is real: a paired bootstrap over people and seeds.

The augmented variants of one photo and the photos of one person are not independent samples:
the number of people is the sample size. So every score is first averaged per person (and
seed), and the bootstrap resamples people, the same people for both systems (paired), and,
independently per system, its seeds when it has several (a different seed is another draw of
the training, not the same draw paired across systems). The statistic is the difference of
the per-person means, people weighted equally.

Inputs are per-person score arrays of shape (seeds, people) with the people in the same
order for both systems (:func:`person_scores` builds them from ``metrics/per_image.csv``
tables). A system that does not depend on the seed (the identity baseline) has one row.

scipy.stats.bootstrap is not used: it resamples one set of observations (paired samples
share their indices), while here people are resampled jointly for both systems and seeds
independently within each, a two-level (clustered) resampling it does not express.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BETTER, WORSE, WITHIN_NOISE, TOO_FEW = "better", "worse", "within noise", "too few people"
CONFIDENCE = 0.95
RESAMPLES = 4000


@dataclass(frozen=True)
class Difference:
    """A difference a - b with its noise.

    ``mean``: the observed difference of per-person means; ``spread``: the standard deviation
    of its bootstrap distribution (its standard error); ``low``/``high``: the 95 % percentile
    interval; ``verdict``: better / worse (the interval excludes 0, in the direction of
    ``higher_is_better``), within noise (it covers 0), or too few people (one person and one
    seed per system: nothing to resample, no estimate of the noise).
    """

    mean: float
    spread: float
    low: float
    high: float
    n_people: int
    n_seeds: int
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (no estimate: None)."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(self).items()
        }


def _as_seeds_by_people(values: np.ndarray | Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"expected (seeds, people) scores, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("scores must be finite (PSNR is capped at 100 dB)")
    return array


def verdict(low: float, high: float, higher_is_better: bool = True) -> str:
    """better / worse when the interval excludes 0, else within noise."""
    if low > 0 or high < 0:
        return BETTER if (low > 0) == higher_is_better else WORSE
    return WITHIN_NOISE


def paired_difference(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    *,
    higher_is_better: bool = True,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Difference:
    """The paired bootstrap of mean(a) - mean(b) over people (and seeds).

    ``a``, ``b``: per-person scores, shape (seeds, people) or (people,), the same people in
    the same columns. ``n_seeds`` of the result is the larger seed count of the two.
    """
    a, b = _as_seeds_by_people(a), _as_seeds_by_people(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the systems score different people: {a.shape[1]} vs {b.shape[1]}")
    n_people = a.shape[1]
    n_seeds = max(a.shape[0], b.shape[0])
    observed = float(a.mean() - b.mean())
    if n_people == 1 and n_seeds == 1:
        return Difference(observed, math.nan, math.nan, math.nan, 1, 1, TOO_FEW)
    rng = np.random.default_rng(seed)
    people = rng.integers(0, n_people, size=(resamples, n_people))

    def resampled_means(x: np.ndarray) -> np.ndarray:
        seeds = rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))
        # per resample: the mean over its seeds of each person, then over its people
        per_person = x[seeds].mean(axis=1)  # (resamples, people)
        return np.take_along_axis(per_person, people, axis=1).mean(axis=1)

    draws = resampled_means(a) - resampled_means(b)
    tail = 100 * (1 - confidence) / 2
    low, high = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
    return Difference(
        observed,
        float(draws.std(ddof=1)),
        low,
        high,
        n_people,
        n_seeds,
        verdict(low, high, higher_is_better),
    )


def person_scores(
    tables: Sequence[Any], split: str, system: str, metric: str, people: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Per-person means of ``metric`` of ``system`` on ``split``: one row per table (one table
    per seed, ``metrics/per_image.csv`` read by :func:`pipeline.io.read_csv`), one column per
    person (sorted, or ``people``: those every table has, in that order). Returns the
    (seeds, people) array and the people."""
    means = []
    for table in tables:
        rows = table[(table["split"] == split) & (table["system"] == system)]
        means.append(rows[metric].astype(float).groupby(rows["subject"]).mean())
    common = set(means[0].index)
    for series in means[1:]:
        common &= set(series.index)
    order = [p for p in people if p in common] if people is not None else sorted(common)
    if not order:
        raise ValueError(f"no person has {system} scores of {metric} on split {split}")
    return np.stack([series.loc[order].to_numpy() for series in means]), order


def compare_tables(
    a: Sequence[Any],
    b: Sequence[Any],
    split: str,
    metric: str,
    system_a: str = "model",
    system_b: str = "model",
    **kwargs: Any,
) -> Difference:
    """:func:`paired_difference` of ``system_a`` in the seed tables ``a`` minus ``system_b``
    in ``b`` (the same tables for model vs identity), on the people both have."""
    scores_a, people_a = person_scores(a, split, system_a, metric)
    scores_b, people = person_scores(b, split, system_b, metric, people_a)
    if people != people_a:  # b lacks some of a's people: pair on the shared ones
        scores_a, _ = person_scores(a, split, system_a, metric, people)
    return paired_difference(scores_a, scores_b, **kwargs)


def seed_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, standard deviation (n - 1) and the 95 % t interval of the mean of one score over
    seeds (``n``: the seed count); std and interval None with one seed. The t interval, not a
    bootstrap: with 3 seeds a bootstrap only ever sees 10 distinct resamples."""
    from scipy import stats

    array = np.asarray([float(v) for v in values], dtype=np.float64)
    if array.size == 0:
        raise ValueError("no value to summarise")
    summary: dict[str, float | int | None] = {
        "mean": float(array.mean()),
        "std": None,
        "low": None,
        "high": None,
        "n": int(array.size),
    }
    if array.size > 1:
        std = float(array.std(ddof=1))
        half = (
            float(stats.t.ppf(0.5 + CONFIDENCE / 2, array.size - 1)) * std / math.sqrt(array.size)
        )
        summary.update(std=std, low=summary["mean"] - half, high=summary["mean"] + half)
    return summary


def fmt_difference(
    diff: Mapping[str, Any] | Difference, scale: float = 1.0, digits: int = 2
) -> list[str]:
    """Table cells of a difference: mean ± spread, [low, high], n people, n seeds, verdict."""
    d = diff.as_dict() if isinstance(diff, Difference) else diff
    if d["verdict"] == TOO_FEW:
        return [
            f"{scale * d['mean']:+.{digits}f}",
            "-",
            str(d["n_people"]),
            str(d["n_seeds"]),
            TOO_FEW,
        ]
    return [
        f"{scale * d['mean']:+.{digits}f} ± {scale * d['spread']:.{digits}f}",
        f"[{scale * d['low']:+.{digits}f}, {scale * d['high']:+.{digits}f}]",
        str(d["n_people"]),
        str(d["n_seeds"]),
        d["verdict"],
    ]


__all__ = [
    "BETTER",
    "CONFIDENCE",
    "RESAMPLES",
    "TOO_FEW",
    "WITHIN_NOISE",
    "WORSE",
    "Difference",
    "compare_tables",
    "fmt_difference",
    "paired_difference",
    "person_scores",
    "seed_summary",
    "verdict",
]
