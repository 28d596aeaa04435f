"""DVC stage `evaluate`: metrics of models/model.pt per split beside the identity baseline.

Outputs: metrics/eval.json, plots/samples/<split>_<k>.png (Fig. 5 grids) and
reports/mlflow_run.json (the MLflow run the evaluation went into, read by `report`).
Logs into the training run (models/mlflow_run.json): train + evaluate = one MLflow run (the
model file itself is logged by train when mlflow.log_model is set).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import tracking  # noqa: E402
from pipeline.config import SPLITS, load_params  # noqa: E402
from pipeline.evaluation.evaluate import evaluate_model  # noqa: E402
from pipeline.evaluation.results import flat_metrics, format_table  # noqa: E402
from pipeline.io import write_json  # noqa: E402


def main() -> None:
    """Evaluate, write the outputs, log them to MLflow."""
    params = load_params(exit_on_error=True)
    cfg = params.evaluate
    handle = tracking.continue_run("models/mlflow_run.json", params, Path.cwd())
    with handle:
        results = evaluate_model(
            "models/model.pt",
            "data/processed/index.csv",
            root=".",
            splits=SPLITS,
            protocol_images=cfg.protocol_images,
            seed=cfg.seed,
            samples=cfg.samples,
            batch_size=cfg.batch_size,
            device=cfg.device,
            samples_dir="plots/samples",
        )
        write_json("metrics/eval.json", results)
        print(format_table(results, "full"))
        print(format_table(results, "protocol"))
        handle.log_metrics(flat_metrics(results))
        handle.log_artifact("params.yaml")
        handle.log_artifact("metrics/eval.json", "metrics")
        handle.log_artifact("plots/samples", "samples")
        handle.set_tags({tracking.EVALUATED_TAG: "true"})
    tracking.write_run_file("reports/mlflow_run.json", handle)


if __name__ == "__main__":
    main()
