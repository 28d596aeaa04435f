"""DVC stage `register`: align each studio shot onto its flash shot (pipeline/registration.py).

Reads data/interim/manifest.csv; registers every pair in parallel (register.workers processes,
ITK capped at one thread each); writes data/interim/registered/<pair_id>.json, previews/
<pair_id>.jpg and index.csv (pair_id, status, reason), and metrics/register.json (counts,
failures, median seconds, median MI gain, and the residual error against truth.csv when the
raw folder has one, as the demo does). No aligned full-resolution copy is written: the crop
stage warps the studio photo once with this matrix composed with its crop.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

from pipeline.align.registration import (
    read_truth_matrices,
    register_dataset,
    registration_metrics,
    registration_options,
)
from pipeline.config import load_params
from pipeline.io import write_json

MANIFEST = Path("data/interim/manifest.csv")
OUT = Path("data/interim/registered")
METRICS = Path("metrics/register.json")


def main() -> None:
    """Load params, register every manifest pair, write the per-pair files, index and metrics."""
    params = load_params(exit_on_error=True)
    group = params.register
    if not MANIFEST.is_file():
        sys.exit(f"register: {MANIFEST} not found (run the ingest stage first)")
    manifest = pd.read_csv(MANIFEST, dtype={"pair_id": str, "subject": str, "pose": str})
    if OUT.exists():
        shutil.rmtree(OUT)  # DVC output: stale pairs from an older manifest must not survive
    (OUT / "previews").mkdir(parents=True)
    records = register_dataset(
        manifest,
        OUT,
        workers=group.workers,
        preview_side=group.preview_side,
        progress=True,
        **registration_options(group),
    )
    index = pd.DataFrame(records, columns=["pair_id", "status", "reason"])
    index.to_csv(OUT / "index.csv", index=False)
    metrics = registration_metrics(records, manifest, read_truth_matrices(params.data.raw_dir))
    write_json(METRICS, metrics)
    for r in records:
        if r["status"] != "ok":
            print(f"register: {r['pair_id']}: {r['status']} ({r['reason']})", file=sys.stderr)
    residual = metrics.get("residual_error_px", {}).get("mean")
    print(
        f"register: {metrics['ok']}/{metrics['pairs']} ok, {metrics['failures']} failed, "
        f"median {metrics['median_seconds'] or 0:.2f} s/pair"
        + (f", residual {residual:.2f} px" if residual is not None else "")
    )


if __name__ == "__main__":
    main()
