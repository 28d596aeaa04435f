"""DVC stage `augment`: the paper's 20 paired variants per face crop (pipeline/augment.py).

Reads data/interim/faces/index.csv; pairs of the splits in augment.splits get every variant
(rotations x {whole crop, face box} x {as is, mirrored}), the other splits only the identity.
Writes data/processed/<split>/<pair_id>__<variant>_{flash,studio}.png,
data/processed/index.csv (split, pair_id, subject, variant, flash, studio) and
metrics/augment.json. No bilateral-filtered copies: the filter runs on the device in training.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from tqdm import tqdm

from pipeline.augment import augment_pair_files
from pipeline.config import load_params
from pipeline.io import write_json

FACES_INDEX = Path("data/interim/faces/index.csv")
OUT = Path("data/processed")
METRICS = Path("metrics/augment.json")
INDEX_COLUMNS = ["split", "pair_id", "subject", "variant", "flash", "studio"]


def parallel_map(fn: Callable[[Any], Any], jobs: list[Any], workers: int) -> Iterator[Any]:
    """``map(fn, jobs)`` in order, over ``workers`` processes (in this process when 1)."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        yield from map(fn, jobs)
        return
    # One OpenCV thread per process: the pool already uses the cores.
    with ProcessPoolExecutor(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        yield from pool.map(fn, jobs)


def _augment_one(job: tuple[Any, ...]) -> list[tuple[str, str, str]]:
    pair_id, flash, studio, box, split, augment, rotations, border_mode = job
    return augment_pair_files(
        pair_id,
        flash,
        studio,
        box,
        OUT / split,
        augment=augment,
        rotations=rotations,
        border_mode=border_mode,
    )


def main() -> None:
    """Run the stage from the repository root."""
    params = load_params().augment
    if not FACES_INDEX.is_file():
        sys.exit(f"{FACES_INDEX}: not found (run the crop stage first)")
    faces = pd.read_csv(FACES_INDEX, dtype={"pair_id": str, "subject": str, "split": str})
    if faces.empty:
        sys.exit(f"{FACES_INDEX}: no cropped pairs to augment")
    if OUT.exists():
        shutil.rmtree(OUT)  # the stage's own output: no stale variants from an earlier run
    jobs = [
        (
            row.pair_id,
            row.flash,
            row.studio,
            (int(row.face_top), int(row.face_right), int(row.face_bottom), int(row.face_left)),
            row.split,
            row.split in params.splits,
            tuple(params.rotations),
            params.border_mode,
        )
        for row in faces.itertuples(index=False)
    ]
    index = []
    results = parallel_map(_augment_one, jobs, params.workers)
    rows = faces.itertuples(index=False)
    progress = tqdm(zip(rows, results, strict=True), total=len(jobs), desc="augment", unit="pair")
    for row, written in progress:
        for variant, flash, studio in written:
            index.append((row.split, row.pair_id, row.subject, variant, flash, studio))
    table = pd.DataFrame(index, columns=INDEX_COLUMNS)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "index.csv", index=False)
    per_split = Counter(table.split)
    augmented = sum(1 for job in jobs if job[5])
    write_json(
        METRICS,
        {
            "pairs": len(jobs),
            "pairs_augmented": augmented,
            "variants_per_pair": len(params.rotations) * 4,
            "images": len(table),
            **{f"images_{split}": per_split.get(split, 0) for split in ("train", "val", "test")},
        },
    )
    print(f"augment: {len(jobs)} pair(s) -> {len(table)} image pair(s) in {OUT}")


if __name__ == "__main__":
    main()
