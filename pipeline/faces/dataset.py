"""The crop stage over a dataset: every registered manifest pair, in worker processes.

Reads the register stage's ``<pair_id>.json`` per pair, crops with
:func:`pipeline.faces.crop.crop_pair_files` and collects the index
(``data/interim/faces/index.csv``), the rejected inputs with their reasons, and the counts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import CropParams
from pipeline.faces.crop import NoFaceError, crop_pair_files, rotations_range
from pipeline.faces.detect import load_detector
from pipeline.io import ImageReadError, read_json
from pipeline.parallel import parallel_map

INDEX_COLUMNS = (
    "pair_id",
    "subject",
    "split",
    "flash",
    "studio",
    "face_top",
    "face_right",
    "face_bottom",
    "face_left",
    "mask",
)
"""Columns of ``data/interim/faces/index.csv`` (the face box is in the crop's pixels; ``mask``
is the validity mask PNG, white where the crop holds photo pixels)."""


def registration_matrix(path: str | os.PathLike) -> tuple[np.ndarray | None, str]:
    """The 2x3 matrix of a register-stage JSON file, or ``(None, reason)`` when unusable.

    Unusable: no file, registration status ``rejected``, unreadable JSON, or a matrix that
    is not a finite, invertible 2x3 matrix.
    """
    path = Path(path)
    if not path.is_file():
        return None, "no registration result (run the register stage)"
    try:
        record = read_json(path)
        if record.get("status") == "rejected":
            return None, f"registration rejected: {record.get('reason') or 'no reason'}"
        matrix = np.asarray(record["matrix"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"unreadable registration ({error.__class__.__name__}: {error})"
    if matrix.shape != (2, 3) or not np.all(np.isfinite(matrix)):
        return None, f"registration matrix is not a finite 2x3 matrix: {record['matrix']}"
    if abs(np.linalg.det(matrix[:, :2])) < 1e-6:
        return None, "registration matrix is degenerate"
    return matrix, ""


def crop_options(crop: CropParams, rotations: Sequence[float]) -> dict[str, Any]:
    """:func:`pipeline.faces.crop.crop_faces` keyword arguments (the group's own field names)
    from the ``crop`` params group and ``augment.rotations`` (one mapping for the crop stage
    and ``deepflash evaluate``).

    The rotations' range is the roll the network sees in training: a face tilted beyond it
    is cropped turned upright.
    """
    return {
        "detector": crop.detector,
        "detect_max_side": crop.detect_max_side,
        "upsample": crop.upsample,
        "cnn_max_side": crop.cnn_max_side,
        "margin": crop.margin,
        "min_margin": crop.min_margin,
        "pad_mode": crop.pad_mode,
        "on_missing": crop.on_missing,
        "upright_range": rotations_range(rotations),
    }


@dataclass
class CropRun:
    """What :func:`crop_dataset` did: index rows, rejected inputs (file, reason), counts."""

    index: pd.DataFrame
    rejected: list[tuple[str, str]]
    metrics: dict[str, int]


def _crop_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """One pair for :func:`crop_dataset` (module level: it runs in worker processes)."""
    pair_id, flash_path, studio_path, matrix, out_dir, size, options = job
    try:
        return crop_pair_files(
            pair_id, flash_path, studio_path, matrix, out_dir, size=size, **options
        )
    except ImageReadError as error:
        return {"pair_id": pair_id, "file": error.path, "reason": error.reason}
    except NoFaceError as error:
        return {"pair_id": pair_id, "file": str(flash_path), "reason": str(error)}


def crop_dataset(
    manifest: pd.DataFrame,
    registered_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    crop: CropParams,
    *,
    size: int,
    rotations: Sequence[float],
    progress: bool = False,
) -> CropRun:
    """Crop every manifest pair with its registration into ``out_dir`` (crop stage contract).

    ``manifest`` needs columns pair_id, subject, split, flash_path, studio_path;
    ``registered_dir`` holds the register stage's ``<pair_id>.json``; ``crop`` is the params
    group and ``rotations`` is ``augment.rotations`` (see :func:`crop_options`). Pairs
    without a usable registration, with an unreadable image or (``on_missing="reject"``)
    without a face are rejected with the file and the reason; nothing raises for one bad
    pair. Pairs run in ``crop.workers`` processes.
    """
    options = crop_options(crop, rotations)
    rejected: list[tuple[str, str]] = []
    rows, jobs = {}, []
    for row in manifest.sort_values("pair_id").itertuples(index=False):
        path = Path(registered_dir) / f"{row.pair_id}.json"
        matrix, reason = registration_matrix(path)
        if matrix is None:
            rejected.append((str(path), reason))
            continue
        rows[row.pair_id] = row
        jobs.append((row.pair_id, row.flash_path, row.studio_path, matrix, out_dir, size, options))

    load_detector()  # before the workers fork: they share the loaded models
    index = []
    counts = {"detected": 0, "center": 0, "multiple_faces": 0, "rotated": 0, "padded": 0}
    paths = {"hog": 0, "hog_rotated": 0, "cnn": 0}
    results = parallel_map(_crop_job, jobs, crop.workers)
    for result in tqdm(results, total=len(jobs), desc="crop", unit="pair", disable=not progress):
        if "reason" in result:
            rejected.append((result["file"], result["reason"]))
            continue
        counts[result["method"]] += 1
        counts["multiple_faces"] += len(result["faces"]) > 1
        counts["rotated"] += result["angle"] != 0.0
        counts["padded"] += result["valid_fraction"] < 1.0
        if result["faces"]:
            paths[result["faces"][0]["path"]] += 1
        row = rows[result["pair_id"]]
        box = result["face_box"]  # top, right, bottom, left: the index's face columns
        index.append(
            (row.pair_id, row.subject, row.split, result["flash"], result["studio"], *box,
             result["mask"])
        )  # fmt: skip
    metrics = {
        "pairs": len(manifest),
        "cropped": len(index),
        "detected": counts["detected"],
        **{f"detected_{path}": n for path, n in paths.items()},
        "fallback": counts["center"],
        "rejected": len(rejected),
        "multiple_faces": counts["multiple_faces"],
        "rotated": counts["rotated"],
        "padded": counts["padded"],
    }
    return CropRun(pd.DataFrame(index, columns=list(INDEX_COLUMNS)), rejected, metrics)


__all__ = [
    "INDEX_COLUMNS",
    "CropRun",
    "crop_dataset",
    "crop_options",
    "registration_matrix",
]
