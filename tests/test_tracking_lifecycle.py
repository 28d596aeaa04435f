"""Tests of pipeline/tracking/lifecycle.py: runs, names, tags, dataset input, resume and fork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.mlflowstore import repo_with_store

from pipeline.config import Params, flatten, validate_params
from pipeline.tracking.lifecycle import _param_value, continue_run, preflight, start_run
from pipeline.tracking.meta import data_fingerprint
from pipeline.tracking.store import client_for, enabled, read_run_file, search_runs, write_run_file
from pipeline.tracking.tags import EVALUATED_TAG, TRAIN_RUN_TAG


@pytest.fixture
def params() -> Params:
    return validate_params(
        {"model": {"arch": "hdrnet"}, "loss": {"encoding": "B"}, "mlflow": {"experiment": "t"}}
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sqlite store via DVC_ROOT (the way DVC tells stages the repo root)."""
    return repo_with_store(tmp_path, monkeypatch)


def test_disabled_is_noop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, params: Params) -> None:
    monkeypatch.setenv("DEEPFLASH_MLFLOW", "off")
    assert not enabled()
    preflight(params, tmp_path)
    handle = start_run(params, tmp_path)
    assert handle.run_id is None and not handle.active
    handle.log_metrics({"a": 1.0}, step=1)
    handle.log_artifact(tmp_path / "missing")
    handle.log_text("x", "a/b.txt")
    handle.end()
    write_run_file(tmp_path / "run.json", handle)
    assert read_run_file(tmp_path / "run.json")["run_id"] is None
    assert not (tmp_path / "mlflow.db").exists()


def test_run_lifecycle(store: Path, tmp_path: Path, params: Params, monkeypatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-oryx")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    work = tmp_path / "work"  # the working copy (a temp dir for queued experiments)
    (work / "data" / "processed").mkdir(parents=True)
    (work / "data" / "processed" / "index.csv").write_text(
        "split,pair_id,subject,variant,flash,studio\ntrain,a,s1,v0,f,s\nval,b,s2,v0,f,s\n"
    )
    (work / "metrics.json").write_text('{"a": 1}')
    handle = start_run(params, work)
    assert handle.tracking_uri == f"sqlite:///{store.resolve()}/mlflow.db"
    for epoch in (1, 2):
        handle.log_metrics({"train_loss": 1.0 / epoch, "skipped": None}, step=epoch)
    handle.log_artifact(work / "metrics.json", "metrics")
    (work / "train.csv").write_text("epoch,train_loss\n1,1.0\n")
    handle.log_artifact(work / "train.csv")
    handle.log_text("hello", "notes/hello.txt")
    handle.end()
    write_run_file(work / "models" / "mlflow_run.json", handle)
    # No machine path in the run file (it is a DVC output committed to git).
    assert json.loads((work / "models" / "mlflow_run.json").read_text()) == {
        "run_id": handle.run_id,
        "experiment_id": handle.experiment_id,
        "tracking_uri": "sqlite:///mlflow.db",
    }

    client = client_for(handle.tracking_uri)
    run = client.get_run(handle.run_id)
    assert run.info.run_name == "hdrnet-B on demo (bushy-oryx)"
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["model.arch"] == "hdrnet" and tags["loss.encoding"] == "B"
    assert tags["dvc.exp_name"] == "bushy-oryx" and tags["dvc.baseline_rev"] == "abc123"
    assert tags["role"] == "candidate" and tags["data.name"] == "demo"
    assert tags["data.fingerprint"] == data_fingerprint(work)
    assert tags["mlflow.source.name"] == "stages/train.py"
    assert "1 train, 1 val images" in tags["mlflow.note.content"]
    assert run.data.params == {k: _param_value(v) for k, v in flatten(params).items()}
    [dataset] = run.inputs.dataset_inputs
    assert (dataset.dataset.name, dataset.dataset.digest) == ("demo", tags["data.fingerprint"])
    assert json.loads(dataset.dataset.profile)["train_images"] == 1
    assert [m.value for m in client.get_metric_history(handle.run_id, "train_loss")] == [1.0, 0.5]
    assert "skipped" not in run.data.metrics
    # Artifacts: MLflow's proxied location, stored under <repo root>/mlartifacts.
    assert run.info.artifact_uri == f"mlflow-artifacts:/t/{handle.run_id}/artifacts"
    assert [a.path for a in handle.artifacts().list_artifacts("metrics")] == [
        "metrics/metrics.json"
    ]
    saved = store / "mlartifacts" / "t" / handle.run_id / "artifacts"
    assert (saved / "notes" / "hello.txt").read_text() == "hello"
    assert not (work / "mlartifacts").exists()

    # Evaluate continues the training run: train + evaluate = one run.
    resumed = continue_run(work / "models" / "mlflow_run.json", params, work)
    assert resumed.run_id == handle.run_id
    assert client.get_run(handle.run_id).info.status == "RUNNING"
    resumed.log_metrics({"eval.val.ssim": 0.8})
    resumed.set_tags({EVALUATED_TAG: "true"})
    resumed.end()

    # Evaluating the same trained model again forks: history copied, the old run untouched.
    monkeypatch.setenv("DVC_EXP_NAME", "again")
    forked = continue_run(work / "models" / "mlflow_run.json", params, work)
    assert forked.run_id != handle.run_id
    forked.end()
    fork = client.get_run(forked.run_id)
    assert fork.info.run_name == "hdrnet-B on demo (again) re-evaluated"
    assert fork.data.tags[TRAIN_RUN_TAG] == handle.run_id
    assert fork.data.tags["dvc.exp_name"] == "again"  # fresh tags win over copied ones
    assert fork.data.tags["data.fingerprint"] == tags["data.fingerprint"]
    assert [m.value for m in client.get_metric_history(forked.run_id, "train_loss")] == [1.0, 0.5]
    assert EVALUATED_TAG not in fork.data.tags
    assert [i.tags[0].value for i in fork.inputs.dataset_inputs] == ["evaluation"]
    # The training run's own artifacts come along; evaluate's are written again.
    assert {a.path for a in forked.artifacts().list_artifacts()} == {"train.csv", "notes"}

    # A crashed training reopens its run instead of creating another one.
    again = start_run(params, work, run_id=handle.run_id)
    assert again.run_id == handle.run_id
    again.end("FAILED")
    runs = search_runs("t", "tags.`model.arch` = 'hdrnet'")
    assert sorted(r.info.run_id for r in runs) == sorted([handle.run_id, forked.run_id])


def test_reopening_a_missing_run_starts_a_new_one(store: Path, params: Params) -> None:
    handle = start_run(params, store, run_id="0" * 32, name="explicit")
    handle.end()
    run = client_for(handle.tracking_uri).get_run(handle.run_id)
    assert handle.run_id != "0" * 32 and run.info.run_name == "explicit"


def _closed_port() -> int:
    """A loopback port where nothing listens (bound once by the OS, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_train_stage_fails_fast_when_the_server_is_down(tmp_path: Path) -> None:
    import subprocess
    import sys

    from helpers.trainingdata import REPO, mini_repo, subprocess_env

    root = mini_repo(tmp_path / "repo")
    model = root / "models" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"the previous model")
    uri = f"http://127.0.0.1:{_closed_port()}"
    env = subprocess_env() | {"MLFLOW_TRACKING_URI": uri}
    env.pop("DEEPFLASH_MLFLOW")
    # MLflow's own retries took 247 s here: the timeout catches a return of those (it is a
    # hang guard; the stage takes ~3 s, mostly imports).
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and uri in lines[0] and "unreachable" in lines[0], done.stderr
    assert model.read_bytes() == b"the previous model"
    assert not (root / "models" / "checkpoints").exists()
