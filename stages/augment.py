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
from pathlib import Path

from pipeline.augment import augment_dataset
from pipeline.config import load_params
from pipeline.io import read_stage_table, write_csv, write_json

FACES_INDEX = Path("data/interim/faces/index.csv")
OUT = Path("data/processed")
METRICS = Path("metrics/augment.json")


def main() -> int:
    """Run the stage from the repository root."""
    augment = load_params(exit_on_error=True).augment
    try:
        faces = read_stage_table(FACES_INDEX, "crop")
    except FileNotFoundError as error:
        print(f"augment: {error}", file=sys.stderr)
        return 1
    if faces.empty:
        print(f"augment: {FACES_INDEX}: no cropped pairs to augment", file=sys.stderr)
        return 1
    if OUT.exists():
        shutil.rmtree(OUT)  # the stage's own output: no stale variants from an earlier run
    run = augment_dataset(faces, OUT, augment, progress=True)
    write_csv(OUT / "index.csv", run.index)
    write_json(METRICS, run.metrics)
    print(f"augment: {len(faces)} pair(s) -> {len(run.index)} image pair(s) in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
