"""DVC stage `crop`: a data.size face square per registered pair (pipeline/faces/).

Reads data/interim/manifest.csv and data/interim/registered/<pair_id>.json; detects the face
on the flash image (tilted faces too), crops it (turned upright when its roll is beyond the
range of augment.rotations) and warps the studio image onto the same square with its
registration matrix (one interpolation). Writes data/interim/faces/ (<pair_id>_flash.png,
<pair_id>_studio.png, <pair_id>_mask.png (validity), <pair_id>.json, index.csv, rejected.csv)
and metrics/crop.json.
Pairs the registration rejected, unreadable images and (with crop.on_missing=reject) photos
without a face are skipped and listed in rejected.csv with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.faces.dataset import crop_dataset
from pipeline.io import (
    MANIFEST_PATH,
    empty_dir,
    read_stage_table,
    write_csv,
    write_json,
    write_rejected,
)
from pipeline.stage import StageError, run_stage

REGISTERED = Path("data/interim/registered")
OUT = Path("data/interim/faces")
METRICS = Path("metrics/crop.json")


def crop(params: Params) -> None:
    """Crop every registered manifest pair; write the crops, index, rejected list, metrics."""
    manifest = read_stage_table(MANIFEST_PATH, "ingest")
    empty_dir(OUT)  # the stage's own output: no stale crops from an earlier run
    run = crop_dataset(
        manifest,
        REGISTERED,
        OUT,
        params.crop,
        size=params.data.size,
        rotations=params.augment.rotations,
        progress=True,
    )
    write_csv(OUT / "index.csv", run.index)
    write_rejected(OUT / "rejected.csv", run.rejected)
    write_json(METRICS, run.metrics)
    m = run.metrics
    print(
        f"crop: {m['cropped']} pair(s) cropped ({m['detected']} detected, "
        f"{m['fallback']} centre fallback, {m['rotated']} turned upright, {m['padded']} padded), "
        f"{m['rejected']} rejected -> {OUT}"
    )
    if not m["cropped"]:
        raise StageError(f"no pair could be cropped; reasons in {OUT / 'rejected.csv'}")


def main() -> int:
    """Run the stage from the repository root."""
    return run_stage("crop", crop)


if __name__ == "__main__":
    sys.exit(main())
