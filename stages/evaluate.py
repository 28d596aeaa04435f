"""DVC stage `evaluate`: metrics of models/model.pt per split beside the identity baseline.

Outputs: metrics/eval.json, plots/samples/<split>_<k>.png (Fig. 5 grids) and
reports/mlflow_run.json (the MLflow run the evaluation went into, read by `report`).
Logs into the training run (models/mlflow_run.json): train + evaluate = one MLflow run. With
mlflow.log_model the model file becomes an MLflow logged model, registered per arch with the
alias `champion-<dataset>` on the best version; the identity baseline and the paper's numbers
get runs of their own under the same metric names (pipeline/tracking_compare.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import tracking, tracking_compare, tracking_models  # noqa: E402
from pipeline.config import SPLITS, load_params  # noqa: E402
from pipeline.evaluation.evaluate import evaluate_model  # noqa: E402
from pipeline.evaluation.results import flat_metrics, format_table  # noqa: E402
from pipeline.io import write_json  # noqa: E402
from pipeline.tracking_meta import NOTE_TAG, dataset_info, describe  # noqa: E402


def main() -> None:
    """Evaluate, write the outputs, log them to MLflow."""
    params = load_params(exit_on_error=True)
    cfg = params.evaluate
    try:
        handle = tracking.continue_run("models/mlflow_run.json", params, Path.cwd())
    except tracking.TrackingStoreError as error:
        sys.exit(f"error: {error}")
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
        if handle.active:
            dataset = dataset_info(params, ".")
            handle.set_tags({NOTE_TAG: describe(params, dataset, results)})
            linked = tracking_models.model_metrics(results) if params.mlflow.log_model else {}
            handle.log_metrics({k: v for k, v in flat_metrics(results).items() if k not in linked})
            if params.mlflow.log_model:
                # Logs the model's metrics linked to the logged model, then registers it.
                model = tracking_models.log_model(
                    handle, "models/model.pt", params, results, dataset
                )
                print(
                    f"MLflow model {model.name} v{model.version} ({model.model_id}); "
                    f"{model.alias} -> v{model.champion_version}"
                )
            comparison = tracking_compare.log_comparison(handle, params, results, dataset)
            print(f"MLflow runs (after `mlflow ui` at the repo root): {comparison['runs_url']}")
        handle.log_artifact("params.yaml")
        handle.log_artifact("metrics/eval.json", "metrics")
        handle.log_artifact("plots/samples", "samples")
        handle.set_tags({tracking.EVALUATED_TAG: "true"})
    tracking.write_run_file("reports/mlflow_run.json", handle)


if __name__ == "__main__":
    main()
