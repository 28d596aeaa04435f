"""An evaluation recorded in its MLflow run: the description with the headline result, the
metrics, the logged and registered model, the reference runs, the files; then the mark that
the run is evaluated (a later evaluation of the same model forks a run of its own,
:func:`pipeline.tracking.lifecycle.continue_run`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.config import Params
from pipeline.evaluation.results import flat_metrics
from pipeline.tracking.compare import log_comparison
from pipeline.tracking.lifecycle import RunHandle
from pipeline.tracking.meta import dataset_info, describe
from pipeline.tracking.models import Registered, log_model, model_metrics
from pipeline.tracking.tags import EVALUATED_TAG, NOTE_TAG


@dataclass(frozen=True)
class LoggedEvaluation:
    """What :func:`log_evaluation` recorded: the registered model (with mlflow.log_model) and
    the link to the runs table; both None when tracking is off."""

    model: Registered | None = None
    runs_url: str | None = None


def log_evaluation(
    handle: RunHandle,
    params: Params,
    results: Mapping[str, Any],
    model_file: str | os.PathLike,
    artifacts: Sequence[tuple[str, str | None]] = (),
    root: str | os.PathLike = ".",
) -> LoggedEvaluation:
    """Log the evaluation ``results`` of ``model_file`` into ``handle``'s run, the files
    ``artifacts`` (path, artifact folder) and, last, the evaluated mark."""
    logged = LoggedEvaluation()
    if handle.active:
        dataset = dataset_info(params, root)
        handle.set_tags({NOTE_TAG: describe(params, dataset, results)})
        # With a logged model its metrics are logged linked to it (log_model), not twice.
        linked = model_metrics(results) if params.mlflow.log_model else {}
        handle.log_metrics({k: v for k, v in flat_metrics(results).items() if k not in linked})
        model = None
        if params.mlflow.log_model:
            model = log_model(handle, model_file, params, results, dataset)
        comparison = log_comparison(handle, params, results, dataset)
        logged = LoggedEvaluation(model, comparison["runs_url"])
    for path, artifact_path in artifacts:
        handle.log_artifact(path, artifact_path)
    handle.set_tags({EVALUATED_TAG: "true"})
    return logged


__all__ = ["LoggedEvaluation", "log_evaluation"]
