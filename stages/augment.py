"""DVC stage `augment`: the paper's 20 paired variants per face crop (pipeline/augment.py).

Reads data/interim/faces/index.csv; pairs of the splits in augment.splits get every variant
(rotations x {whole crop, face box} x {as is, mirrored}), the other splits only the identity.
Writes data/processed/<split>/<pair_id>__<variant>_{flash,studio,mask}.png (augment.materialise:
true) or, by default, the crop once as <pair_id>__crop_{flash,studio,mask}.png with each variant's
matrix in the index, warped by the training loader (the same pixels); data/processed/index.csv
(split, pair_id, subject, variant, flash, studio, mask, matrix, border_mode) and
metrics/augment.json. No bilateral-filtered copies: the filter runs on the device in training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.augment import augment_dataset
from pipeline.config import Params
from pipeline.io import empty_dir, read_stage_table, write_csv, write_json
from pipeline.stage import StageError, run_stage

FACES_INDEX = Path("data/interim/faces/index.csv")
OUT = Path("data/processed")
METRICS = Path("metrics/augment.json")


def augment(params: Params) -> None:
    """Write every variant of the face crops; write the index and metrics."""
    faces = read_stage_table(FACES_INDEX, "crop")
    if faces.empty:
        raise StageError(f"{FACES_INDEX}: no cropped pairs to augment")
    empty_dir(OUT)  # the stage's own output: no stale variants from an earlier run
    run = augment_dataset(faces, OUT, params.augment, progress=True)
    write_csv(OUT / "index.csv", run.index)
    write_json(METRICS, run.metrics)
    print(f"augment: {len(faces)} pair(s) -> {len(run.index)} image pair(s) in {OUT}")


def main() -> int:
    """Run the stage from the repository root."""
    return run_stage("augment", augment)


if __name__ == "__main__":
    sys.exit(main())
