"""Tests of pipeline/tracking.py: URI rules, tags, params, resume/fork, lock retries."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from pipeline import tracking
from pipeline.config import Params, flatten, validate_params


@pytest.fixture
def params() -> Params:
    return validate_params(
        {"model": {"arch": "hdrnet"}, "loss": {"encoding": "B"}, "mlflow": {"experiment": "t"}}
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh sqlite store via DVC_ROOT (the way DVC tells stages the repo root)."""
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DEEPFLASH_MLFLOW"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("DVC_ROOT", str(root))
    return root


def test_uri_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", "/main/repo")
    # A queued experiment runs in a temp copy; DVC_ROOT names the main repo.
    assert tracking.tracking_uri(tmp_path) == "sqlite:////main/repo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert not tracking.is_local_store("http://127.0.0.1:5000")
    assert tracking.is_local_store("sqlite:////x/mlflow.db")


def test_disabled_is_noop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, params: Params) -> None:
    monkeypatch.setenv("DEEPFLASH_MLFLOW", "off")
    assert not tracking.enabled()
    handle = tracking.start_run(params, tmp_path)
    assert handle.run_id is None and not handle.active
    handle.log_metrics({"a": 1.0}, step=1)
    handle.log_artifact(tmp_path / "missing")
    handle.end()
    tracking.write_run_file(tmp_path / "run.json", handle)
    assert tracking.read_run_file(tmp_path / "run.json")["run_id"] is None
    assert not (tmp_path / "mlflow.db").exists()


def test_retry_on_lock_only() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert tracking.call_with_retry(flaky, base_delay=0.001) == "ok"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad value")

    calls.clear()
    with pytest.raises(ValueError):
        tracking.call_with_retry(broken, base_delay=0.001)
    assert len(calls) == 1
    with pytest.raises(sqlite3.OperationalError):
        tracking.call_with_retry(
            lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")),
            attempts=2,
            base_delay=0.001,
        )


def test_fingerprint(tmp_path: Path) -> None:
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    (processed / "index.csv").write_text("split,pair_id\ntrain,a\n")
    first = tracking.data_fingerprint(tmp_path)
    assert first == tracking.data_fingerprint(tmp_path) and len(first) == 16
    (processed / "index.csv").write_text("split,pair_id\ntrain,b\n")
    assert tracking.data_fingerprint(tmp_path) != first


def test_run_lifecycle(store: Path, tmp_path: Path, params: Params, monkeypatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-oryx")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    work = tmp_path / "work"  # the working copy (a temp dir for queued experiments)
    work.mkdir()
    (work / "metrics.json").write_text('{"a": 1}')
    handle = tracking.start_run(params, work)
    assert handle.tracking_uri == f"sqlite:///{store.resolve()}/mlflow.db"
    for epoch in (1, 2):
        handle.log_metrics({"train_loss": 1.0 / epoch, "skipped": None}, step=epoch)
    handle.log_artifact(work / "metrics.json", "metrics")
    (work / "train.csv").write_text("epoch,train_loss\n1,1.0\n")
    handle.log_artifact(work / "train.csv")
    handle.end()
    tracking.write_run_file(work / "models" / "mlflow_run.json", handle)

    client = tracking.client_for(handle.tracking_uri)
    run = client.get_run(handle.run_id)
    assert run.info.run_name == "bushy-oryx" and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["model.arch"] == "hdrnet" and tags["loss.encoding"] == "B"
    assert tags["dvc.exp_name"] == "bushy-oryx" and tags["dvc.baseline_rev"] == "abc123"
    assert tags["role"] == "candidate" and len(tags["data.fingerprint"]) == 16
    assert run.data.params == {k: tracking._param_value(v) for k, v in flatten(params).items()}
    assert [m.value for m in client.get_metric_history(handle.run_id, "train_loss")] == [1.0, 0.5]
    assert "skipped" not in run.data.metrics
    # Artifacts of a local store live under <repo root>/mlartifacts, not in the working copy.
    assert [a.path for a in client.list_artifacts(handle.run_id, "metrics")] == [
        "metrics/metrics.json"
    ]
    assert list((store / "mlartifacts").rglob("metrics.json"))

    # Evaluate continues the training run: train + evaluate = one run.
    resumed = tracking.continue_run(work / "models" / "mlflow_run.json", params, work)
    assert resumed.run_id == handle.run_id
    assert client.get_run(handle.run_id).info.status == "RUNNING"
    resumed.log_metrics({"eval.val.ssim": 0.8})
    resumed.set_tags({tracking.EVALUATED_TAG: "true"})
    resumed.end()

    # Evaluating the same trained model again forks: history copied, the old run untouched.
    forked = tracking.continue_run(work / "models" / "mlflow_run.json", params, work)
    assert forked.run_id != handle.run_id
    forked.end()
    fork = client.get_run(forked.run_id)
    assert fork.data.tags[tracking.TRAIN_RUN_TAG] == handle.run_id
    assert fork.data.tags["model.arch"] == "hdrnet"
    assert [m.value for m in client.get_metric_history(forked.run_id, "train_loss")] == [1.0, 0.5]
    assert tracking.EVALUATED_TAG not in fork.data.tags
    # The training run's own artifacts come along; evaluate's are written again.
    assert {a.path for a in client.list_artifacts(forked.run_id)} == {"train.csv"}

    # A crashed training reopens its run instead of creating another one.
    again = tracking.start_run(params, work, run_id=handle.run_id)
    assert again.run_id == handle.run_id
    again.end("FAILED")
    runs = tracking.search_runs("t", "tags.`model.arch` = 'hdrnet'")
    assert sorted(r.info.run_id for r in runs) == sorted([handle.run_id, forked.run_id])


def _start_in_process(root: str, name: str, queue: mp.Queue) -> None:
    import os

    os.environ["DVC_ROOT"] = root
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    params = validate_params({"mlflow": {"experiment": "concurrent"}})
    try:
        handle = tracking.start_run(params, root, run_name=name)
        for step in range(20):
            handle.log_metrics({"loss": float(step)}, step=step)
        handle.end()
        queue.put(handle.run_id)
    except Exception as error:  # reported to the parent test
        queue.put(f"error: {error}")


def test_two_processes_share_a_fresh_database(store: Path) -> None:
    """`dvc queue start -j 2`: two experiments create and write the same SQLite store."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_start_in_process, args=(str(store), f"exp{i}", queue)) for i in (0, 1)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(not str(r).startswith("error") for r in results), results
    runs = tracking.search_runs("concurrent", root=store)
    assert sorted(r.info.run_id for r in runs) == sorted(results)
    assert all(len(r.data.metrics) == 1 and r.data.metrics["loss"] == 19.0 for r in runs)
