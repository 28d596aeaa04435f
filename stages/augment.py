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

import pandas as pd

from pipeline.augment import augment_dataset
from pipeline.config import load_params
from pipeline.io import write_json

FACES_INDEX = Path("data/interim/faces/index.csv")
OUT = Path("data/processed")
METRICS = Path("metrics/augment.json")


def main() -> None:
    """Run the stage from the repository root."""
    params = load_params(exit_on_error=True).augment
    if not FACES_INDEX.is_file():
        sys.exit(f"{FACES_INDEX}: not found (run the crop stage first)")
    faces = pd.read_csv(FACES_INDEX, dtype={"pair_id": str, "subject": str, "split": str})
    if faces.empty:
        sys.exit(f"{FACES_INDEX}: no cropped pairs to augment")
    if OUT.exists():
        shutil.rmtree(OUT)  # the stage's own output: no stale variants from an earlier run
    run = augment_dataset(
        faces,
        OUT,
        splits=params.splits,
        rotations=params.rotations,
        border_mode=params.border_mode,
        workers=params.workers,
        progress=True,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    run.index.to_csv(OUT / "index.csv", index=False)
    write_json(METRICS, run.metrics)
    print(f"augment: {len(faces)} pair(s) -> {len(run.index)} image pair(s) in {OUT}")


if __name__ == "__main__":
    main()
