"""Tests of pipeline/tracking/models.py: logged model, registry per arch, champion alias."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.mlflowstore import repo_with_store
from helpers.trackingdata import results

from pipeline.config import validate_params
from pipeline.tracking import models as tracking_models
from pipeline.tracking.lifecycle import RunHandle, start_run
from pipeline.tracking.meta import data_fingerprint, dataset_info
from pipeline.tracking.store import artifact_repository


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = repo_with_store(tmp_path, monkeypatch)
    (root / "models").mkdir()
    return root


def _evaluated(root: Path, raw_dir: str, arch: str, encoding: str, ssim: float, monkeypatch):
    """One trained + evaluated run with a logged, registered model; returns its Registered."""
    monkeypatch.setenv("DVC_EXP_NAME", f"{arch}-{encoding}-{ssim}")
    params = validate_params(
        {
            "data": {"raw_dir": raw_dir},
            "model": {"arch": arch},
            "loss": {"encoding": encoding},
            "mlflow": {"experiment": "m"},
        }
    )
    model_file = root / "models" / "model.pt"
    model_file.write_bytes(f"{arch} {encoding} {ssim}".encode())
    handle = start_run(params, root)
    dataset = dataset_info(params, root)
    registered = tracking_models.log_model(handle, model_file, params, results(ssim), dataset)
    handle.end()
    return handle, registered


def test_names() -> None:
    assert tracking_models.registered_model_name("deepflash") == "deepflash"
    assert tracking_models.registered_model_name("hdrnet") == "deepflash-hdrnet"
    assert tracking_models.champion_alias("Yale B") == "champion-Yale-B"
    metrics = tracking_models.model_metrics(results(0.8))
    assert len(metrics) == 3 * 2 * 6  # splits x scopes x metrics, model only
    assert metrics["eval.val.full.model.ssim_gt"] == 0.8
    assert not any(".identity." in k for k in metrics)


def test_logged_models_registry_and_champion(repo: Path, monkeypatch) -> None:
    before = os.environ.get("MLFLOW_TRACKING_URI")
    first, reg1 = _evaluated(repo, "data/raw/demo", "deepflash", "C", 0.80, monkeypatch)
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # the global URI is put back
    assert (reg1.name, reg1.version, reg1.alias) == ("deepflash", "1", "champion-demo")
    assert reg1.champion_version == "1"
    second, reg2 = _evaluated(repo, "data/raw/demo", "deepflash", "A", 0.85, monkeypatch)
    worse, reg3 = _evaluated(repo, "data/raw/demo", "deepflash", "B", 0.75, monkeypatch)
    other, reg4 = _evaluated(repo, "data/raw/yaleb", "deepflash", "C", 0.60, monkeypatch)
    hdr, reg5 = _evaluated(repo, "data/raw/demo", "hdrnet", "C", 0.90, monkeypatch)
    client = first.client
    # The best run per dataset holds the alias: 0.85 on demo (not the newest, 0.75), the
    # only yaleb version on yaleb; hdrnet has a registered model of its own.
    assert client.get_model_version_by_alias("deepflash", "champion-demo").run_id == second.run_id
    assert client.get_model_version_by_alias("deepflash", "champion-yaleb").run_id == other.run_id
    assert reg3.champion_version == "2" and reg4.champion_version == "4"
    assert (reg5.name, reg5.version) == ("deepflash-hdrnet", "1")
    assert (
        client.get_model_version_by_alias("deepflash-hdrnet", "champion-demo").run_id == hdr.run_id
    )
    version = client.get_model_version("deepflash", "2")
    assert version.source == f"models:/{reg2.model_id}"
    assert version.tags["data.name"] == "demo" and version.tags["loss.encoding"] == "A"

    # search_logged_models lists the models with their metrics, linked to run and dataset.
    models = tracking_models.logged_models(client, first.experiment_id)
    assert [m.name for m in models] == [
        "hdrnet-C",
        "deepflash-A",
        "deepflash-C",
        "deepflash-B",
        "deepflash-C",
    ]
    top = models[1]
    assert top.source_run_id == second.run_id and top.model_type == "deepflash"
    linked = {m.key: m for m in top.metrics}
    assert linked["eval.val.full.model.ssim_gt"].value == pytest.approx(0.85)
    assert linked["eval.val.full.model.ssim_gt"].dataset_name == "demo"
    assert linked["eval.val.full.model.ssim_gt"].dataset_digest == data_fingerprint(repo)
    assert top.params["model.arch"] == "deepflash" and "train.epochs" not in top.params
    assert json.loads(top.tags["mlflow.modelVersions"]) == [{"name": "deepflash", "version": "2"}]
    # The logged model is an MLflow pyfunc model folder holding the model file, inside the
    # repository.
    files = {f.path for f in artifact_repository(top.artifact_location, repo).list_artifacts()}
    assert {"MLmodel", "artifacts", "code", "input_example.json"} <= files
    stored = repo / "mlartifacts" / "m" / "models" / top.model_id / "artifacts"
    assert (stored / "artifacts" / "model.pt").read_bytes() == b"deepflash A 0.85"
    assert (stored / "code" / "pipeline" / "tracking" / "pyfunc.py").is_file()
    # The run names its model as an output and holds the model's metrics too.
    run = client.get_run(second.run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [top.model_id]
    assert run.data.metrics["eval.val.full.model.ssim_gt"] == pytest.approx(0.85)


def test_no_model_when_tracking_is_off(tmp_path: Path) -> None:
    params = validate_params({})
    off = RunHandle()
    assert tracking_models.log_model(off, tmp_path / "m.pt", params, results(0.8), None) is None
