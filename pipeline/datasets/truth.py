"""truth.csv: the demo generator's known misalignment per pair (2x3 studio -> flash matrix).

Written by :mod:`pipeline.datasets.demo`, read by registration to measure its residual error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TRUTH_COLUMNS = (
    "subject",
    "pose",
    "flash",
    "studio",
    "width",
    "height",
    "a",
    "b",
    "tx",
    "c",
    "d",
    "ty",
    "rotation_deg",
    "scale",
    "shear",
    "shift_x",
    "shift_y",
    "face_x",
    "face_y",
    "face_w",
    "face_h",
)


def read_truth(path: str | Path) -> pd.DataFrame:
    """Load truth.csv; adds a ``matrix`` column of 2x3 float64 arrays."""
    truth = pd.read_csv(path, dtype={"subject": str, "pose": str})
    truth["matrix"] = [
        np.array([[r.a, r.b, r.tx], [r.c, r.d, r.ty]], dtype=np.float64) for r in truth.itertuples()
    ]
    return truth
