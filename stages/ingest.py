"""DVC stage `ingest`: raw pairs (data.raw_dir, data.layout) -> manifest with a subject split."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import load_params
from pipeline.datasets.ingest import (
    DatasetError,
    build_manifest,
    ingest_metrics,
    prepare_derived_dir,
    read_dataset,
    reject_problem,
)
from pipeline.io import MANIFEST_PATH, write_csv, write_json, write_rejected

DERIVED = Path("data/interim/derived")
REJECTED = Path("reports/rejected.csv")
METRICS = Path("metrics/ingest.json")


def main() -> int:
    """Read, validate and split the raw pairs; write manifest, rejected list and metrics."""
    params = load_params(exit_on_error=True)
    data, ingest = params.data, params.ingest
    prepare_derived_dir(DERIVED)
    try:
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
    except DatasetError as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 1
    # The rejected list comes first: it is what a person needs when the stage fails below.
    write_rejected(REJECTED, ((r.file, r.reason) for r in result.rejected))
    manifest = build_manifest(result.pairs, ingest.train, ingest.val, ingest.seed)
    metrics = ingest_metrics(result, manifest)
    write_json(METRICS, metrics)
    problem = reject_problem(result, ingest.max_reject_fraction)
    if problem:
        print(f"ingest: {data.raw_dir} ({data.layout}): {problem} ({REJECTED})", file=sys.stderr)
        return 1
    write_csv(MANIFEST_PATH, manifest)
    splits = ", ".join(f"{s} {metrics[s]}" for s in ("train", "val", "test"))
    print(
        f"ingest: {metrics['pairs']} pairs of {metrics['subjects']} subjects ({splits}); "
        f"{metrics['rejected']} pairs rejected, {metrics['rejected_files']} files listed in "
        f"{REJECTED}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
