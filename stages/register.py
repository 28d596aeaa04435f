"""DVC stage `register`: align each studio shot onto its flash shot (pipeline/align/).

Reads data/interim/manifest.csv; registers every pair in parallel (register.workers processes,
ITK capped at one thread each), compares the faces after warping, then judges every pair
against the folder (MI, motion) and rejects the suspect ones (register.on_suspect). Writes
data/interim/registered/<pair_id>.json (no timings: the same bytes on every run),
previews/<pair_id>.jpg and index.csv (pair_id, status, reason); reports/rejected_register.csv
(file, reason) for every pair the crop stage will skip; and metrics/register.json (counts,
suspects with their reasons, timings, and the residual error against truth.csv when the raw
folder has one, as the demo does). The rejected list is this stage's own output: ingest owns
reports/rejected.csv, and one file cannot be the output of two DVC stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from pipeline.align.dataset import (
    read_truth_matrices,
    register_dataset,
    registration_metrics,
    rejected_rows,
)
from pipeline.config import Params
from pipeline.io import (
    MANIFEST_PATH,
    empty_dir,
    read_stage_table,
    write_csv,
    write_json,
    write_rejected,
)
from pipeline.stage import run_stage

OUT = Path("data/interim/registered")
REJECTED = Path("reports/rejected_register.csv")
METRICS = Path("metrics/register.json")


def register(params: Params) -> None:
    """Register every manifest pair, write the per-pair files, lists and metrics."""
    group = params.register
    manifest = read_stage_table(MANIFEST_PATH, "ingest")
    # DVC output: stale pairs from an older manifest must not survive.
    (empty_dir(OUT) / "previews").mkdir()
    records = register_dataset(manifest, OUT, group, progress=True)
    write_csv(OUT / "index.csv", pd.DataFrame(records, columns=["pair_id", "status", "reason"]))
    write_rejected(REJECTED, rejected_rows(records, manifest))
    metrics = registration_metrics(
        records, manifest, read_truth_matrices(params.data.raw_dir), group
    )
    write_json(METRICS, metrics)
    for r in records:
        if r["status"] != "ok" or r.get("suspect"):
            print(f"register: {r['pair_id']}: {r['status']} ({r['reason']})", file=sys.stderr)
    residual = metrics.get("residual_error_px", {}).get("mean")
    print(
        f"register: {metrics['ok']}/{metrics['pairs']} ok, {metrics['rejected']} rejected "
        f"({metrics['suspect']} suspect, {group.on_suspect}), "
        f"median {metrics['median_cpu_seconds'] or 0:.2f} s/pair"
        + (f", residual {residual:.2f} px" if residual is not None else "")
        + (f"; rejected pairs listed in {REJECTED}" if metrics["rejected"] else "")
    )


def main() -> int:
    """Run the stage from the repository root."""
    return run_stage("register", register)


if __name__ == "__main__":
    sys.exit(main())
