"""DVC stage `ingest`: raw pairs (data.raw_dir, data.layout) -> manifest with a subject split."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.datasets.ingest import (
    DatasetError,
    build_manifest,
    ingest_metrics,
    prepare_derived_dir,
    read_dataset,
    reject_problem,
)
from pipeline.io import MANIFEST_PATH, write_csv, write_json, write_rejected
from pipeline.stage import StageError, run_stage

DERIVED = Path("data/interim/derived")
REJECTED = Path("reports/rejected.csv")
METRICS = Path("metrics/ingest.json")


def ingest_raw(params: Params) -> None:
    """Read, validate and split the raw pairs; write manifest, rejected list and metrics."""
    data, ingest = params.data, params.ingest
    prepare_derived_dir(DERIVED)
    result = read_dataset(
        data.raw_dir,
        data.layout,
        derived_dir=DERIVED,
        min_side=ingest.min_side,
        max_pixels=ingest.max_pixels,
        aspect_tolerance=ingest.aspect_tolerance,
        yaleb_studio_lights=ingest.yaleb_studio_lights,
        progress=True,
    )
    # The rejected list comes first: it is what a person needs when the stage fails below.
    write_rejected(REJECTED, ((r.file, r.reason) for r in result.rejected))
    manifest = build_manifest(result.pairs, ingest.train, ingest.val, ingest.seed)
    metrics = ingest_metrics(result, manifest)
    write_json(METRICS, metrics)
    problem = reject_problem(result, ingest.max_reject_fraction)
    if problem:
        raise StageError(f"{data.raw_dir} ({data.layout}): {problem} ({REJECTED})")
    write_csv(MANIFEST_PATH, manifest)
    splits = ", ".join(f"{s} {metrics[s]}" for s in ("train", "val", "test"))
    print(
        f"ingest: {metrics['pairs']} pairs of {metrics['subjects']} subjects ({splits}); "
        f"{metrics['rejected']} pairs rejected, {metrics['rejected_files']} files listed in "
        f"{REJECTED}"
    )


def main() -> int:
    """Run the stage from the repository root."""
    return run_stage("ingest", ingest_raw, (DatasetError,))


if __name__ == "__main__":
    sys.exit(main())
