"""Raw-layout readers (folder pairs, FAID naming, Extended Yale B) and the ingest manifest.

``read_dataset(raw_dir, layout, ...)`` finds flash/studio pairs in a raw folder, validates every
image (see :mod:`pipeline.datasets.validate`) and returns the usable pairs plus a reason for
every input it could not use. The raw folder is only read; images that have to be computed
(Yale B) are written to ``derived_dir``. :func:`build_manifest` adds the subject-level split.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pandas as pd

from pipeline.datasets import faid, pairs, yaleb
from pipeline.datasets.records import (
    Candidate,
    DatasetError,
    DatasetResult,
    Pair,
    Rejection,
)
from pipeline.datasets.split import SPLITS, split_sizes, split_subjects
from pipeline.datasets.validate import (
    ImageChecker,
    make_pair_id,
    scan_tree,
    validate_candidates,
    within,
)
from pipeline.io import DEFAULT_MAX_PIXELS

LAYOUTS = ("pairs", "faid", "yaleb")
MANIFEST_COLUMNS = (
    "pair_id",
    "subject",
    "pose",
    "split",
    "flash_path",
    "studio_path",
    "width",
    "height",
    "studio_width",
    "studio_height",
    "source",
)
DEFAULT_YALEB_LIGHTS = (
    "P00A+000E+20",
    "P00A-020E+10",
    "P00A+020E+10",
    "P00A-035E+15",
    "P00A+035E+15",
    "P00A-050E+00",
    "P00A+050E+00",
    "P00A+000E-20",
)
_DERIVED_README = """\
Images that ingest had to compute (never written into the raw folder), e.g. for Extended Yale B:
<pair_id>_flash.png (the camera-axis light shot as PNG) and <pair_id>_studio.png (the mean of the
ingest.yaleb_studio_lights shots). data/interim/manifest.csv points here for those pairs.
This file keeps the folder, a DVC output, non-empty for layouts that derive nothing.
"""


def read_dataset(
    raw_dir: str | os.PathLike,
    layout: str,
    *,
    derived_dir: str | os.PathLike | None = None,
    min_side: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    aspect_tolerance: float = 0.02,
    yaleb_studio_lights: tuple[str, ...] | list[str] = DEFAULT_YALEB_LIGHTS,
    progress: bool = False,
) -> DatasetResult:
    """Read ``raw_dir`` in ``layout`` (pairs | faid | yaleb): validated pairs and rejections.

    ``progress`` shows progress bars (stderr) while images are decoded and checked. Raises :class:`DatasetError` when the folder is missing, the layout unknown, or
    ``derived_dir`` is missing (yaleb) or inside the raw folder. Bad individual inputs never
    raise: they are returned as :class:`Rejection` (file, reason).
    """
    raw = Path(raw_dir)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if not raw.is_dir():
        raise DatasetError(f"{raw}: raw folder not found (data.raw_dir)")
    derived = Path(derived_dir) if derived_dir is not None else None
    if derived is not None and within(derived.resolve(), raw.resolve()):
        raise DatasetError(f"{derived}: derived folder inside the raw folder {raw} (read-only)")

    scan = scan_tree(raw)
    checker = ImageChecker(raw, min_side=min_side, max_pixels=max_pixels)
    if layout == "pairs":
        found = pairs.discover(raw, scan.files)
    elif layout == "faid":
        found = faid.discover(raw, scan.files)
    else:
        if derived is None:
            raise DatasetError("layout yaleb needs a derived folder for the computed images")
        derived.mkdir(parents=True, exist_ok=True)
        found = yaleb.discover(
            raw, scan.files, checker, list(yaleb_studio_lights), derived, progress=progress
        )
    accepted, invalid = validate_candidates(
        found.candidates, checker, aspect_tolerance, progress=progress
    )
    rejected = sorted(scan.rejected + found.rejected + invalid, key=lambda r: (r.file, r.reason))
    return DatasetResult(
        pairs=sorted(accepted, key=lambda p: p.pair_id),
        rejected=rejected,
        missing_lights=found.missing_lights,
    )


def prepare_derived_dir(path: str | os.PathLike) -> Path:
    """Create the derived-images folder with its README (a DVC output must not be empty)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.txt").write_text(_DERIVED_README)
    return path


def build_manifest(found: list[Pair], train: float, val: float, seed: int) -> pd.DataFrame:
    """The manifest: one row per pair with its subject-level split, sorted by pair_id."""
    splits = split_subjects((p.subject for p in found), train, val, seed)
    rows = [{**vars(p), "split": splits[p.subject]} for p in found]
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return frame.sort_values("pair_id", kind="stable").reset_index(drop=True)


def ingest_metrics(result: DatasetResult, manifest: pd.DataFrame) -> dict[str, float | int]:
    """Counts for metrics/ingest.json (flat numbers, so `dvc metrics show/diff` list them all)."""
    metrics: dict[str, float | int] = {
        "pairs": len(result.pairs),
        "rejected": len(result.rejected_pairs),
        "rejected_files": len(result.rejected),
        "reject_fraction": round(result.reject_fraction, 4),
        "subjects": int(manifest["subject"].nunique()) if len(manifest) else 0,
        "missing_studio_lights": result.missing_lights,
    }
    for split in SPLITS:
        rows = manifest[manifest["split"] == split] if len(manifest) else manifest
        metrics[split] = len(rows)
        metrics[f"subjects_{split}"] = int(rows["subject"].nunique()) if len(rows) else 0
    return metrics


def reject_problem(result: DatasetResult, max_reject_fraction: float) -> str | None:
    """A summary when no pair is usable or too many were rejected; None when all is well."""
    lost = len(result.rejected_pairs)
    total = len(result.pairs) + lost
    if result.pairs and result.reject_fraction <= max_reject_fraction:
        return None
    # One reason per lost pair: its own, not the "partner rejected" echo on the other file.
    per_pair: dict[str, str] = {}
    for r in result.rejected:
        if r.pair is not None and not r.reason.startswith("partner rejected"):
            per_pair.setdefault(r.pair, _reason_kind(r.reason))
    reasons = Counter(per_pair.values())
    top = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(10))
    if len(reasons) > 10:
        top += f"; {len(reasons) - 10} other reason(s)"
    if not result.pairs:
        head = f"no usable pair ({lost} rejected)"
    else:
        head = (
            f"{lost} of {total} pairs rejected ({result.reject_fraction:.0%}) > "
            f"max_reject_fraction {max_reject_fraction:.0%}"
        )
    return f"{head}. Reasons: {top or 'no pair images found'}. See the rejected list for files."


def _reason_kind(reason: str) -> str:
    # Group reasons by their first words (sizes, names and targets vary per file).
    for cut in (":", "(", " of pair"):
        reason = reason.split(cut)[0]
    return reason.strip()


__all__ = [
    "LAYOUTS",
    "MANIFEST_COLUMNS",
    "Candidate",
    "DatasetError",
    "DatasetResult",
    "Pair",
    "Rejection",
    "build_manifest",
    "ingest_metrics",
    "make_pair_id",
    "prepare_derived_dir",
    "read_dataset",
    "reject_problem",
    "split_sizes",
    "split_subjects",
]
