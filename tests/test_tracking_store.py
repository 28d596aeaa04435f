"""Tests of pipeline/tracking/store.py: URI rules, lock retries, the model-training experiment,
artifact locations that survive moving the repository, the store of another folder."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers.mlflowstore import empty_store

from pipeline.config import validate_params
from pipeline.tracking import store
from pipeline.tracking.lifecycle import RunHandle, start_run
from pipeline.tracking.tags import KIND_TAG


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_ROOT", "DEEPFLASH_MLFLOW"):
        monkeypatch.delenv(name, raising=False)


def test_uri_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert store.portable_uri(store.tracking_uri(tmp_path)) == "sqlite:///mlflow.db"
    assert store.portable_uri(None) is None
    monkeypatch.setenv("DVC_ROOT", "/main/repo")
    # A queued experiment runs in a temp copy; DVC_ROOT names the main repo.
    assert store.tracking_uri(tmp_path) == "sqlite:////main/repo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert store.portable_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert not store.is_local_store("http://127.0.0.1:5000")
    assert store.is_local_store("sqlite:////x/mlflow.db")


def test_repo_root_follows_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.repo_root(tmp_path) == tmp_path.resolve()
    # DVC points queued experiments (run in a temporary copy) at the main repository
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "main"))
    assert store.repo_root(tmp_path / "copy") == (tmp_path / "main").resolve()


def test_retry_on_lock_only() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert store.call_with_retry(flaky, base_delay=0.001) == "ok"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad value")

    calls.clear()
    with pytest.raises(ValueError):
        store.call_with_retry(broken, base_delay=0.001)
    assert len(calls) == 1
    with pytest.raises(sqlite3.OperationalError):
        store.call_with_retry(
            lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")),
            attempts=2,
            base_delay=0.001,
        )


def test_run_file_round_trip_and_errors(tmp_path: Path) -> None:
    assert store.read_run_file(tmp_path / "none.json") == {
        "run_id": None,
        "experiment_id": None,
        "tracking_uri": None,
    }
    store.write_run_file(tmp_path / "run.json", RunHandle("r1", "7", "http://h:5000"))
    assert store.read_run_file(tmp_path / "run.json") == {
        "run_id": "r1",
        "experiment_id": "7",
        "tracking_uri": "http://h:5000",
    }
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: not a run file"):
        store.read_run_file(tmp_path / "bad.json")


def test_experiment_is_model_training_with_a_folder_free_location(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    uri = f"sqlite:///{empty_store(root)}"
    client = store.client_for(uri)
    experiment_id = store.get_experiment_id(client, uri, "my exp", root)
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags[KIND_TAG] == "custom_model_development"
    assert experiment.artifact_location == "mlflow-artifacts:/my%20exp"
    # An experiment made elsewhere (say, by `mlflow ui`) gets the kind tag on first use.
    other = client.create_experiment("plain", artifact_location="mlflow-artifacts:/plain")
    assert store.get_experiment_id(client, uri, "plain", root) == other
    assert client.get_experiment(other).tags[KIND_TAG] == "custom_model_development"
    repo = store.artifact_repository("mlflow-artifacts:/my%20exp/r/artifacts", root)
    assert Path(repo.artifact_dir) == root.resolve() / "mlartifacts" / "my exp" / "r" / "artifacts"


def test_moved_repository_keeps_its_artifacts(tmp_path: Path, monkeypatch) -> None:
    params = validate_params({"mlflow": {"experiment": "moving"}})
    first = tmp_path / "first"
    empty_store(first)
    monkeypatch.chdir(first)
    handle = start_run(params, first)
    handle.log_text("before the move", "notes/a.txt")
    handle.end()
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    monkeypatch.chdir(moved)
    again = start_run(params, moved, run_id=handle.run_id)
    assert again.run_id == handle.run_id
    assert again.artifacts().download_artifacts("notes/a.txt", str(tmp_path))
    assert (tmp_path / "notes" / "a.txt").read_text() == "before the move"
    again.log_text("after the move", "notes/b.txt")
    again.end()
    assert (
        moved / "mlartifacts" / "moving" / handle.run_id / "artifacts" / "notes" / "b.txt"
    ).is_file()
    assert not first.exists()


def test_store_of_another_folder_is_refused(tmp_path: Path) -> None:
    # An mlflow.db of an older version: its experiment keeps artifacts at an absolute path.
    old, copy = tmp_path / "old", tmp_path / "copy"
    uri = f"sqlite:///{empty_store(old)}"
    client = store.client_for(uri)
    client.create_experiment("deepflash", artifact_location=(old / "mlartifacts").as_uri())
    # In its own folder it still works.
    assert store.get_experiment_id(client, uri, "deepflash", old)
    shutil.copytree(old, copy)
    copy_uri = f"sqlite:///{copy / 'mlflow.db'}"
    with pytest.raises(store.TrackingStoreError) as error:
        store.get_experiment_id(store.client_for(copy_uri), copy_uri, "deepflash", copy)
    message = str(error.value)
    assert message.startswith(f"{copy / 'mlflow.db'}: this MLflow store belongs to another folder")
    assert f"keeps artifacts in {old / 'mlartifacts'}" in message
    assert "Move mlflow.db (and mlartifacts/) out of this repository" in message


def _start_in_process(root: str, name: str, queue: mp.Queue) -> None:
    import os

    os.environ["DVC_ROOT"] = root
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    params = validate_params({"mlflow": {"experiment": "concurrent"}})
    try:
        handle = start_run(params, root, name=name)
        for step in range(20):
            handle.log_metrics({"loss": float(step)}, step=step)
        handle.end()
        queue.put(handle.run_id)
    except Exception as error:  # reported to the parent test
        queue.put(f"error: {error}")


def test_two_processes_share_a_fresh_database(tmp_path: Path) -> None:
    """`dvc queue start -j 2`: two experiments create and write the same SQLite store."""
    root = tmp_path / "repo"
    root.mkdir()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_start_in_process, args=(str(root), f"exp{i}", queue)) for i in (0, 1)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(not str(r).startswith("error") for r in results), results
    runs = store.search_runs("concurrent", root=root)
    assert sorted(r.info.run_id for r in runs) == sorted(results)
    assert {r.info.run_name for r in runs} == {"exp0", "exp1"}
    assert all(len(r.data.metrics) == 1 and r.data.metrics["loss"] == 19.0 for r in runs)


def test_a_server_that_is_down_is_reported_at_once() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(store.TrackingStoreError, match=f"{uri} unreachable"):
        store.client_for(uri)
    with socket.socket() as server:  # a listening one passes
        server.bind(("127.0.0.1", 0))
        server.listen()
        store.check_reachable(f"http://127.0.0.1:{server.getsockname()[1]}/")
    store.check_reachable("sqlite:///nowhere/mlflow.db")
