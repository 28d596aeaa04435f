"""DVC stage `crop`: a data.size face square per registered pair (pipeline/faces.py).

Reads data/interim/manifest.csv and data/interim/registered/<pair_id>.json; detects the face
on the flash image, crops it and warps the studio image onto the same square with its
registration matrix (one interpolation). Writes data/interim/faces/ (<pair_id>_flash.png,
<pair_id>_studio.png, <pair_id>.json, index.csv, rejected.csv) and metrics/crop.json.
Pairs the registration rejected, unreadable images and (with crop.on_missing=reject) photos
without a face are skipped and listed in rejected.csv with the reason.
"""

from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import CropParams, load_params
from pipeline.faces import NoFaceError, crop_pair_files, load_detector
from pipeline.io import ImageReadError, read_json, write_json

MANIFEST = Path("data/interim/manifest.csv")
REGISTERED = Path("data/interim/registered")
OUT = Path("data/interim/faces")
METRICS = Path("metrics/crop.json")
INDEX_COLUMNS = [
    "pair_id",
    "subject",
    "split",
    "flash",
    "studio",
    "face_top",
    "face_right",
    "face_bottom",
    "face_left",
]


def registration_matrix(pair_id: str) -> tuple[np.ndarray | None, str, str]:
    """(matrix or None, file, reason it cannot be used) from the register stage's JSON."""
    path = REGISTERED / f"{pair_id}.json"
    if not path.is_file():
        return None, str(path), "no registration result (run the register stage)"
    try:
        record = read_json(path)
        status = record.get("status")
        if status == "rejected":
            return None, str(path), f"registration rejected: {record.get('reason') or 'no reason'}"
        matrix = np.asarray(record["matrix"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return None, str(path), f"unreadable registration ({error.__class__.__name__}: {error})"
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        return (
            None,
            str(path),
            f"registration matrix is not a finite 2x3 matrix: {record['matrix']}",
        )
    if abs(np.linalg.det(matrix[:, :2])) < 1e-6:
        return None, str(path), "registration matrix is degenerate"
    return matrix, "", ""


def _init_worker() -> None:
    # One OpenCV thread per process: the pool already uses the cores.
    cv2.setNumThreads(1)


def parallel_map(fn: Callable[[Any], Any], jobs: list[Any], workers: int) -> Iterator[Any]:
    """``map(fn, jobs)`` in order, over ``workers`` processes (in this process when 1)."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        yield from pool.map(fn, jobs)


def _crop_one(job: tuple[str, str, str, np.ndarray, int, CropParams]) -> dict[str, Any]:
    pair_id, flash_path, studio_path, matrix, size, crop = job
    try:
        record = crop_pair_files(
            pair_id,
            flash_path,
            studio_path,
            matrix,
            OUT,
            size=size,
            detector=crop.detector,
            max_side=crop.detect_max_side,
            upsample=crop.upsample,
            margin=crop.margin,
            pad_mode=crop.pad_mode,
            on_missing=crop.on_missing,
        )
    except ImageReadError as error:
        return {"pair_id": pair_id, "file": error.path, "reason": error.reason}
    except NoFaceError as error:
        return {"pair_id": pair_id, "file": flash_path, "reason": str(error)}
    return record


def main() -> None:
    """Run the stage from the repository root."""
    params = load_params()
    crop, size = params.crop, params.data.size
    if not MANIFEST.is_file():
        sys.exit(f"{MANIFEST}: not found (run the ingest stage first)")
    manifest = pd.read_csv(MANIFEST, dtype=str, keep_default_na=False).sort_values("pair_id")
    if OUT.exists():
        shutil.rmtree(OUT)  # the stage's own output: no stale crops from an earlier run
    OUT.mkdir(parents=True)

    rejected: list[dict[str, str]] = []
    jobs = []
    for row in manifest.itertuples(index=False):
        matrix, file, reason = registration_matrix(row.pair_id)
        if matrix is None:
            rejected.append({"file": file, "reason": reason})
            continue
        jobs.append((row.pair_id, row.flash_path, row.studio_path, matrix, size, crop))

    rows_by_pair = {row.pair_id: row for row in manifest.itertuples(index=False)}
    index: list[dict[str, Any]] = []
    counts = {"detected": 0, "center": 0}
    multi = 0
    load_detector()  # before the workers fork: they share the loaded models
    results = parallel_map(_crop_one, jobs, crop.workers)
    for result in tqdm(results, total=len(jobs), desc="crop", unit="pair"):
        if "reason" in result:
            rejected.append({"file": result["file"], "reason": result["reason"]})
            continue
        counts[result["method"]] += 1
        multi += len(result["faces"]) > 1
        top, right, bottom, left = result["face_box"]
        source = rows_by_pair[result["pair_id"]]
        index.append(
            {
                "pair_id": result["pair_id"],
                "subject": source.subject,
                "split": source.split,
                "flash": result["flash"],
                "studio": result["studio"],
                "face_top": top,
                "face_right": right,
                "face_bottom": bottom,
                "face_left": left,
            }
        )

    pd.DataFrame(index, columns=INDEX_COLUMNS).to_csv(OUT / "index.csv", index=False)
    with open(OUT / "rejected.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "reason"])
        writer.writeheader()
        writer.writerows(rejected)
    write_json(
        METRICS,
        {
            "pairs": len(manifest),
            "cropped": len(index),
            "detected": counts["detected"],
            "fallback": counts["center"],
            "rejected": len(rejected),
            "multiple_faces": multi,
        },
    )
    print(
        f"crop: {len(index)} pair(s) cropped ({counts['detected']} detected, "
        f"{counts['center']} centre fallback), {len(rejected)} rejected -> {OUT}"
    )
    if not index:
        sys.exit(f"crop: no pair could be cropped; reasons in {OUT / 'rejected.csv'}")


if __name__ == "__main__":
    main()
