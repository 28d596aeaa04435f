"""Tests of pipeline/tracking/evaluation.py: what evaluate records in its run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.mlflowstore import repo_with_store
from helpers.trackingdata import results

from pipeline.config import validate_params
from pipeline.tracking.evaluation import LoggedEvaluation, log_evaluation
from pipeline.tracking.lifecycle import RunHandle, start_run


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return repo_with_store(tmp_path, monkeypatch)


@pytest.mark.parametrize("log_model", [True, False])
def test_evaluation_lands_in_its_run(repo: Path, log_model: bool) -> None:
    params = validate_params({"mlflow": {"experiment": "e", "log_model": log_model}})
    (repo / "model.pt").write_bytes(b"weights")
    (repo / "eval.json").write_text("{}")
    handle = start_run(params, repo)
    logged = log_evaluation(
        handle, params, results(0.8), repo / "model.pt", [(str(repo / "eval.json"), "metrics")]
    )
    handle.end()
    run = handle.client.get_run(handle.run_id)
    assert run.data.tags["deepflash.evaluated"] == "true"
    assert "Result: val, protocol sample" in run.data.tags["mlflow.note.content"]
    assert logged.runs_url and logged.runs_url.endswith("viewStateShareKey=deepflash-compare")
    assert [a.path for a in handle.artifacts().list_artifacts("metrics")] == ["metrics/eval.json"]
    model_metric = "eval.val.full.model.ssim_gt"
    if log_model:
        # The model's metrics are logged once, linked to the logged model.
        assert logged.model is not None and logged.model.name == "deepflash"
        history = handle.client.get_metric_history(handle.run_id, model_metric)
        assert [m.value for m in history] == [0.8]
        model = handle.client.get_logged_model(logged.model.model_id)
        assert [m.value for m in model.metrics if m.key == model_metric] == [0.8]
    else:
        assert logged.model is None and run.data.metrics[model_metric] == 0.8
    assert run.data.metrics["eval.val.full.identity.ssim_gt"] == 0.7


def test_no_tracking_records_nothing(tmp_path: Path) -> None:
    params = validate_params({})
    assert log_evaluation(RunHandle(), params, results(0.8), tmp_path / "m.pt") == (
        LoggedEvaluation()
    )
