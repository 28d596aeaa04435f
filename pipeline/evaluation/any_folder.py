"""Evaluate a model file on any raw folder (``deepflash evaluate --raw-dir``): ingest, register
and crop every pair without augmentation, then the same metrics as the evaluate stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.config import Params
from pipeline.evaluation.evaluate import evaluate_model


class EvaluateError(RuntimeError):
    """A raw dataset cannot be evaluated (no usable pair, unreadable folder); says why."""


def evaluate_raw(
    model_path: str | os.PathLike,
    raw_dir: str | os.PathLike,
    layout: str,
    work_dir: str | os.PathLike,
    params: Params,
    device: str = "auto",
    samples_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate a model file on a raw dataset: read ``raw_dir`` in ``layout``, register and
    crop every pair into ``work_dir`` (no augmentation: one image per pair, split ``all``),
    then :func:`evaluate_model`. ``params``: the ingest, register, crop, augment (rotations)
    and evaluate groups are used (the crop side is the model's own size).

    Returns ``{"model", "raw_dir", "layout", "pairs", "metrics": {"all": ...},
    "rejected": [{file, reason}], "pair_details": [...]}``; raises :class:`EvaluateError`
    when no pair is usable.
    """
    import numpy as np
    import pandas as pd

    from pipeline.align.dataset import register_dataset
    from pipeline.datasets.ingest import DatasetError, read_dataset
    from pipeline.faces.crop import NoFaceError, crop_pair_files
    from pipeline.faces.dataset import crop_options
    from pipeline.io import ImageReadError, write_csv
    from pipeline.models import read_model_meta

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        meta = read_model_meta(model_path)  # checksum and zip CRCs verified
    except FileNotFoundError:
        raise EvaluateError(f"{model_path}: model file not found") from None
    except ValueError as error:  # our message names the file and the reason
        raise EvaluateError(str(error)) from None
    size = meta.size
    ing, reg_p, crop_p = params.ingest, params.register, params.crop
    try:
        found = read_dataset(
            raw_dir,
            layout,
            derived_dir=work / "derived",
            min_side=ing.min_side,
            max_pixels=ing.max_pixels,
            aspect_tolerance=ing.aspect_tolerance,
            yaleb_studio_lights=list(ing.yaleb_studio_lights),
        )
    except DatasetError as error:
        raise EvaluateError(str(error)) from None
    rejected = [{"file": r.file, "reason": r.reason} for r in found.rejected]
    # Every pair first, then the folder judges them (MI and motion against the other pairs,
    # faces after warping), as the register stage does: suspect pairs are skipped and listed.
    pairs = pd.DataFrame(
        [(p.pair_id, p.flash_path, p.studio_path) for p in found.pairs],
        columns=["pair_id", "flash_path", "studio_path"],
    )
    registered = {r["pair_id"]: r for r in register_dataset(pairs, None, reg_p, progress=True)}
    rows: list[dict[str, Any]] = []
    for pair in tqdm(found.pairs, desc="crop", unit="pair", leave=False):
        registration = registered[pair.pair_id]
        if registration["status"] == "rejected":
            rejected.append(
                {"file": pair.studio_path, "reason": f"registration: {registration['reason']}"}
            )
            continue
        try:
            record = crop_pair_files(
                pair.pair_id,
                pair.flash_path,
                pair.studio_path,
                np.asarray(registration["matrix"], dtype=np.float64),
                work / "faces",
                size=size,
                max_pixels=ing.max_pixels,
                **crop_options(crop_p, params.augment.rotations),
            )
        except ImageReadError as error:
            rejected.append({"file": error.path, "reason": error.reason})
            continue
        except NoFaceError as error:
            rejected.append({"file": pair.flash_path, "reason": str(error)})
            continue
        rows.append(
            {
                "split": "all",
                "pair_id": pair.pair_id,
                "subject": pair.subject,
                "variant": "identity",
                "flash": str(Path(record["flash"]).resolve()),
                "studio": str(Path(record["studio"]).resolve()),
                "mask": str(Path(record["mask"]).resolve()),
                "registration": registration["status"],
                "mi_before": registration["mi_before"],
                "mi_after": registration["mi_after"],
                "crop": record["method"],
            }
        )
    if not rows:
        reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in rejected[:5]) or "no pairs found"
        raise EvaluateError(f"{raw_dir}: no usable pair in layout {layout!r} ({reasons})")
    index = write_csv(work / "index.csv", pd.DataFrame(rows))
    metrics = evaluate_model(
        model_path,
        index,
        params.evaluate,
        root=work,
        splits=("all",),
        device=device,
        samples_dir=samples_dir,
    )
    return {
        "model": str(model_path),
        "raw_dir": str(raw_dir),
        "layout": layout,
        "arch": meta.arch,
        "encoding": meta.encoding,
        "size": size,
        "pairs": len(rows),
        "metrics": metrics,
        "rejected": rejected,
        "pair_details": rows,
    }
