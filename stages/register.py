"""DVC stage `register`: align each studio shot onto its flash shot (pipeline/registration.py).

Reads data/interim/manifest.csv; registers every pair in parallel (register.workers processes,
ITK capped at one thread each); writes data/interim/registered/<pair_id>.json, previews/
<pair_id>.jpg and index.csv (pair_id, status, reason), and metrics/register.json (counts,
failures, median seconds, median MI gain, and the residual error against truth.csv when the
raw folder has one, as the demo does). No aligned full-resolution copy is written: the crop
stage warps the studio photo once with this matrix composed with its crop.
"""

from __future__ import annotations

import csv
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import load_params
from pipeline.io import write_json
from pipeline.registration import cap_itk_threads, grid_error, identity_matrix, register_files

MANIFEST = Path("data/interim/manifest.csv")
OUT = Path("data/interim/registered")
METRICS = Path("metrics/register.json")


def _job(job: tuple[str, str, str, int, dict[str, Any]]) -> dict[str, Any]:
    pair_id, flash, studio, preview_side, options = job
    return register_files(pair_id, flash, studio, OUT, preview_side, **options)


def run_jobs(jobs: list[tuple], workers: int) -> list[dict[str, Any]]:
    """Register all pairs over ``workers`` processes (in this process when 1), with a bar."""
    bar = tqdm(total=len(jobs), desc="register", unit="pair", file=sys.stderr)
    records: list[dict[str, Any]] = []
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        cap_itk_threads(1)
        for job in jobs:
            records.append(_job(job))
            bar.update()
    else:
        with ProcessPoolExecutor(workers, initializer=cap_itk_threads, initargs=(1,)) as pool:
            for record in pool.map(_job, jobs):
                records.append(record)
                bar.update()
    bar.close()
    return records


def truth_table(raw_dir: Path) -> dict[tuple[str, str], np.ndarray]:
    """(subject, pose) -> true 2x3 matrix from raw_dir/truth.csv (the demo's); {} when absent."""
    path = raw_dir / "truth.csv"
    if not path.is_file():
        return {}
    from pipeline.demo import read_truth  # only demo data has a truth file

    truth = read_truth(path)
    return {(str(r.subject), str(r.pose)): r.matrix for r in truth.itertuples()}


def summarise(records: list[dict[str, Any]], manifest: pd.DataFrame, truth: dict) -> dict[str, Any]:
    """metrics/register.json: counts, failures, medians and (with truth) residual errors."""
    statuses = [r["status"] for r in records]
    failures = [r for r in records if r["status"] != "ok"]
    reasons: dict[str, int] = {}
    for r in failures:
        kind = (r["reason"] or "unknown").split(":")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    gains = [
        r["mi_after"] - r["mi_before"]
        for r in records
        if r["status"] == "ok" and r["mi_after"] is not None and r["mi_before"] is not None
    ]
    timed = [r for r in records if r.get("iterations")]
    metrics: dict[str, Any] = {
        "pairs": len(records),
        "ok": statuses.count("ok"),
        "identity_fallback": statuses.count("identity_fallback"),
        "rejected": statuses.count("rejected"),
        "failures": len(failures),
        "failure_reasons": reasons,
        "median_seconds": float(np.median([r["seconds"] for r in timed])) if timed else None,
        "median_cpu_seconds": (
            float(np.median([r["cpu_seconds"] for r in timed])) if timed else None
        ),
        "median_mi_gain": float(np.median(gains)) if gains else None,
    }
    if truth:
        residual, before = [], []
        rows = manifest.set_index("pair_id")
        for r in records:
            row = rows.loc[r["pair_id"]]
            true = truth.get((str(row.subject), str(row.pose)))
            if true is None or r["status"] == "rejected":
                continue
            size = (int(row.width), int(row.height))
            studio = (int(row.studio_width), int(row.studio_height))
            residual.append(grid_error(np.asarray(r["matrix"]), true, size))
            before.append(grid_error(identity_matrix(size, studio), true, size))
        if residual:
            metrics["residual_error_px"] = {
                "mean": float(np.mean(residual)),
                "median": float(np.median(residual)),
                "max": float(np.max(residual)),
                "pairs": len(residual),
            }
            # The same measure with no registration at all, for scale.
            metrics["unregistered_error_px"] = {
                "mean": float(np.mean(before)),
                "median": float(np.median(before)),
            }
    return metrics


def main() -> None:
    """Load params, register every manifest pair, write the per-pair files, index and metrics."""
    params = load_params()
    p = params.register
    if not MANIFEST.is_file():
        sys.exit(f"register: {MANIFEST} not found (run the ingest stage first)")
    manifest = pd.read_csv(MANIFEST, dtype={"pair_id": str, "subject": str, "pose": str})
    if OUT.exists():
        shutil.rmtree(OUT)  # DVC output: stale pairs from an older manifest must not survive
    (OUT / "previews").mkdir(parents=True)
    options = {
        "max_side": p.max_side,
        "optimizer": p.optimizer,
        "iterations": p.iterations,
        "levels": p.levels,
        "histogram_bins": p.histogram_bins,
        "sampling_fraction": p.sampling_fraction,
        "seed": p.seed,
        "on_failure": p.on_failure,
        "threads": 1,
    }
    jobs = [
        (row.pair_id, row.flash_path, row.studio_path, p.preview_side, options)
        for row in manifest.itertuples()
    ]
    records = run_jobs(jobs, p.workers)

    with open(OUT / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_id", "status", "reason"])
        for r in records:
            writer.writerow([r["pair_id"], r["status"], r["reason"]])
    metrics = summarise(records, manifest, truth_table(Path(params.data.raw_dir)))
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
