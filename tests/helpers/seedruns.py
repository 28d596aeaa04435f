"""Test helper: evaluated MLflow runs as the grid's seeds leave them (a DVC experiment name,
the data fingerprint, validation metrics and the per-image scores as an artifact)."""

from __future__ import annotations

from pathlib import Path

from helpers.perimage import per_image
from pipeline.config import validate_params
from pipeline.io import write_csv
from pipeline.tracking.lifecycle import start_run
from pipeline.tracking.records import PER_IMAGE_ARTIFACT
from pipeline.tracking.tags import EVALUATED_TAG, EXP_NAME_TAG, FINGERPRINT_TAG

EXPERIMENT = "seeds"


def seed_run(
    root: Path, exp_name: str, arch: str, encoding: str, shift: float, seed: int, fingerprint: str
) -> str:
    """One evaluated run: validation SSIM vs gt 0.8 + ``shift``, per-image scores of 6 test and
    val people with the model ``shift`` above the identity (noise drawn from ``seed``)."""
    params = validate_params(
        {
            "model": {"arch": arch},
            "loss": {"encoding": encoding},
            "mlflow": {"experiment": EXPERIMENT},
        }
    )
    tags = {EXP_NAME_TAG: exp_name, FINGERPRINT_TAG: fingerprint, EVALUATED_TAG: "true"}
    handle = start_run(params, root, extra_tags=tags)
    handle.log_metrics(
        {
            "eval.val.full.model.ssim_gt": 0.8 + shift + 0.001 * seed,
            "eval.val.full.model.loss": 0.01,
        }
    )
    table = write_csv(root / f"{exp_name}.csv", per_image(shift, seed=seed))
    scores = table.with_name("per_image.csv")
    table.replace(scores)
    handle.log_artifact(scores, PER_IMAGE_ARTIFACT.rsplit("/", 1)[0])
    handle.end()
    return str(handle.run_id)
