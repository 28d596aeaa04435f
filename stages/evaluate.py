"""DVC stage `evaluate`: metrics of models/model.pt per split beside the identity baseline.

Outputs: metrics/eval.json, metrics/per_image.csv (every image's scores with its person, for
paired comparisons: pipeline/evaluation/stats.py), plots/samples/<split>_<k>.png (Fig. 5
grids) and reports/mlflow_run.json (the MLflow run the evaluation went into, read by `report`).
Logs into the training run (models/mlflow_run.json): train + evaluate = one MLflow run. With
mlflow.log_model the model file becomes an MLflow logged model, registered per arch with the
alias `champion-<dataset>` on the best version; the identity baseline and the paper's numbers
get runs of their own under the same metric names (pipeline/tracking/compare.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import tracking
from pipeline.config import SPLITS, load_params
from pipeline.evaluation.evaluate import evaluate_model
from pipeline.evaluation.results import format_table
from pipeline.io import write_json
from pipeline.tracking.evaluation import log_evaluation

MODEL = "models/model.pt"
TRAIN_RUN_FILE = "models/mlflow_run.json"
RUN_FILE = "reports/mlflow_run.json"
METRICS = "metrics/eval.json"
PER_IMAGE = "metrics/per_image.csv"
SAMPLES = "plots/samples"


def main() -> int:
    """Evaluate, write the outputs, log them to MLflow."""
    params = load_params(exit_on_error=True)
    try:
        handle = tracking.continue_run(TRAIN_RUN_FILE, params, Path.cwd())
    except tracking.TrackingStoreError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    with handle:
        results = evaluate_model(
            MODEL,
            "data/processed/index.csv",
            params.evaluate,
            root=".",
            splits=SPLITS,
            samples_dir=SAMPLES,
            per_image_csv=PER_IMAGE,
        )
        write_json(METRICS, results)
        print(format_table(results, "full"))
        print(format_table(results, "protocol"))
        artifacts = [
            ("params.yaml", None),
            (METRICS, "metrics"),
            (PER_IMAGE, "metrics"),
            (SAMPLES, "samples"),
        ]
        logged = log_evaluation(handle, params, results, MODEL, artifacts)
        if logged.model is not None:
            model = logged.model
            print(
                f"MLflow model {model.name} v{model.version} ({model.model_id}); "
                f"{model.alias} -> v{model.champion_version}"
            )
        if logged.runs_url is not None:
            print(f"MLflow runs (after `mlflow ui` at the repo root): {logged.runs_url}")
    tracking.write_run_file(RUN_FILE, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
