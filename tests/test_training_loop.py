"""Tests of pipeline/training/loop.py and stages/train.py on the tiny generated processed set.

The crash test kills a real training process with SIGKILL in its second epoch and checks that
re-running the stage resumes and ends with bit-identical weights.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.trainingdata import (
    SIZE,
    losses,
    make_processed,
    mini_repo,
    out_paths,
    run_train_stage,
    same_state,
    state_of,
    subprocess_env,
    tiny_params,
)

from pipeline.models import adam_settings, load_model_file
from pipeline.runtime import PROCESSES_DIR
from pipeline.training.checkpoint import BEST_NAME, CHECKPOINT_NAME
from pipeline.training.loop import train


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One intra-op thread, as in the subprocesses: tiny convolutions gain nothing from more,
    and the test suite shares the cores with other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("processed")
    make_processed(root)
    return root


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One 2-epoch run of the tiny config (seed 0) and its output folder."""
    out = tmp_path_factory.mktemp("reference")
    return train(tiny_params(), out_paths(data_root, out), progress=False), out


def test_outputs(reference: tuple[Any, Path], data_root: Path) -> None:
    result, out = reference
    model, meta = load_model_file(out / "models" / "model.pt")
    assert same_state(model.state_dict(), result.model.state_dict())
    assert (meta.arch, meta.width, meta.size, meta.encoding) == ("deepflash", 0.0625, SIZE, "C")
    assert meta.centred is True and meta.training.epochs == 2
    metrics = json.loads((out / "metrics" / "train.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stop_reason"] == "epochs"
    assert metrics["device"] == "cpu" and metrics["amp"] == "off" and metrics["world_size"] == 1
    assert metrics["threads"] == 1  # train.threads: 1
    assert metrics["resumed_from_epoch"] == 0 and metrics["images_per_s"] > 0
    assert metrics["val_loss"] == result.history[-1]["val_loss"]
    assert metrics["best_val_loss"] == min(h["val_loss"] for h in result.history)
    assert 0 < metrics["val_accuracy"] <= 100
    assert [h["images"] for h in result.history] == [16, 16]
    rows = list(csv.DictReader((out / "plots" / "train.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= rows[0].keys()
    assert float(rows[1]["val_loss"]) == pytest.approx(result.history[1]["val_loss"])
    assert (out / "models" / "checkpoints" / CHECKPOINT_NAME).is_file()
    assert (out / "models" / "checkpoints" / BEST_NAME).is_file()
    # the process registered itself for train.threads: auto, and left no pid file behind
    assert (data_root / PROCESSES_DIR).is_dir()
    assert list((data_root / PROCESSES_DIR).iterdir()) == []


def test_same_seed_same_weights(
    reference: tuple[Any, Path], data_root: Path, tmp_path: Path
) -> None:
    again = train(tiny_params(), out_paths(data_root, tmp_path), progress=False)
    assert same_state(again.model.state_dict(), reference[0].model.state_dict())
    assert losses(again.history) == losses(reference[0].history)


def test_cosine_schedule_sets_each_epochs_lr(data_root: Path, tmp_path: Path) -> None:
    params = tiny_params(train={"lr_schedule": "cosine", "epochs": 3, "max_images_per_epoch": 4})
    result = train(params, out_paths(data_root, tmp_path), progress=False)
    base = adam_settings("deepflash", params.train.optimizer).lr
    assert [h["lr"] for h in result.history] == pytest.approx([base, 0.75 * base, 0.25 * base])
    assert [h["images"] for h in result.history] == [4, 4, 4]  # the per-epoch cap


def test_threads_auto_shares_the_cores_with_live_trainings_each_epoch(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto on a 2-core machine: 1 thread while another training process is registered, both
    cores from the next epoch once it has gone; the caller's thread count comes back."""
    import pipeline.runtime

    monkeypatch.setattr(pipeline.runtime, "available_cores", lambda: 2)
    folder = data_root / PROCESSES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (folder / f"{other.pid}.pid").write_text(f"{other.pid}\n")
    seen: list[int] = []

    def watch(epoch: int, batch: int, stats: dict[str, float]) -> None:
        seen.append(torch.get_num_threads())
        if epoch == 1:
            other.kill()
            other.wait()

    try:
        params = tiny_params(train={"threads": "auto", "max_images_per_epoch": 4})
        result = train(params, out_paths(data_root, tmp_path), on_batch_end=watch, progress=False)
    finally:
        other.kill()
        other.wait()
    assert seen == [1, 2]  # one batch per epoch
    assert result.metrics["threads"] == 2
    assert torch.get_num_threads() == 1  # the module fixture's setting
    assert list(folder.iterdir()) == []  # the dead process's file swept, ours removed


def test_early_stop_on_target_val_loss(data_root: Path, tmp_path: Path) -> None:
    result = train(
        tiny_params(train={"epochs": 5, "target_val_loss": 10.0}),
        out_paths(data_root, tmp_path),
        progress=False,
    )
    assert result.stop_reason == "target_val_loss"
    assert len(result.history) == 1
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["stop_reason"] == "target_val_loss" and metrics["epochs_run"] == 1


def test_more_epochs_continue_a_finished_run_exactly(
    reference: tuple[Any, Path], data_root: Path, tmp_path: Path
) -> None:
    """train.epochs 2 -> 3 resumes after epoch 2 and equals a straight 3-epoch run; other
    params (a new seed) do not match the checkpoint: from scratch, and other weights."""
    out = tmp_path / "continued"
    shutil.copytree(reference[1], out)
    continued = train(tiny_params(train={"epochs": 3}), out_paths(data_root, out), progress=False)
    straight = train(
        tiny_params(train={"epochs": 3}), out_paths(data_root, tmp_path / "s"), progress=False
    )
    assert continued.resumed_from_epoch == 2 and len(continued.history) == 3
    assert same_state(continued.model.state_dict(), straight.model.state_dict())
    assert losses(continued.history) == losses(straight.history)
    fresh = train(tiny_params(train={"seed": 5}), out_paths(data_root, out), progress=False)
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 2
    assert not same_state(fresh.model.state_dict(), reference[0].model.state_dict())


HOLD_IN_EPOCH_2 = textwrap.dedent(
    """
    import time
    from pathlib import Path

    from pipeline.config import load_params
    from pipeline.training.loop import train
    from pipeline.training.paths import TrainPaths

    def hold(epoch, batch, stats):
        if epoch == 2 and batch == 2:
            Path("in_epoch_2").write_text("epoch 2, batch 2 done")
            time.sleep(600)  # the test kills us here

    train(load_params(), TrainPaths(root=Path.cwd()), on_batch_end=hold, progress=False)
    """
)


def test_sigkill_mid_epoch_then_rerun_resumes_with_identical_weights(
    reference: tuple[Any, Path], tmp_path: Path
) -> None:
    """The uninterrupted run is ``reference`` (same params, same pixels, one thread)."""
    crashed = mini_repo(tmp_path)
    (crashed / "hold.py").write_text(HOLD_IN_EPOCH_2)
    proc = subprocess.Popen(
        [sys.executable, "hold.py"], cwd=crashed, env=subprocess_env(), stderr=subprocess.PIPE
    )
    marker = crashed / "in_epoch_2"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.05)
    checkpoint = crashed / "models" / "checkpoints" / CHECKPOINT_NAME
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # epoch 1's checkpoint
    # the killed process's pid file stays behind: a stale entry the next run ignores
    pid_file = crashed / PROCESSES_DIR / f"{proc.pid}.pid"
    assert pid_file.is_file()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stderr.close()
    assert not (crashed / "models" / "model.pt").exists()

    log = run_train_stage(crashed).stderr
    assert "resuming from models/checkpoints/last.pt (1 epoch(s) done)" in log
    assert not pid_file.exists()
    metrics = json.loads((crashed / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_run"] == 2
    result, straight = reference
    assert same_state(state_of(crashed / "models" / "model.pt"), result.model.state_dict())
    last = [
        torch.load(repo / "models" / "checkpoints" / CHECKPOINT_NAME, weights_only=True)
        for repo in (straight, crashed)
    ]
    assert same_state(last[0]["model"], last[1]["model"])
    assert last[0]["optimizers"].keys() == last[1]["optimizers"].keys()
    for name in last[0]["optimizers"]:
        a, b = (ck["optimizers"][name]["state"] for ck in last)
        assert a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    assert losses(last[0]["history"]) == losses(last[1]["history"])
    run_file = json.loads((crashed / "models" / "mlflow_run.json").read_text())
    assert run_file == {"run_id": None, "experiment_id": None, "tracking_uri": None}


def test_mlflow_run_gets_epochs_and_a_resumed_training_reopens_it(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.tracking.lifecycle import start_run
    from pipeline.tracking.store import ENV_SWITCH, client_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(ENV_SWITCH, "1")
    paths = out_paths(data_root, tmp_path)
    runs: list[str] = []

    def start(run_id: str | None) -> Any:
        handle = start_run(params, tmp_path, run_id=run_id)
        runs.append(handle.run_id)
        return handle

    params = tiny_params(train={"epochs": 1})
    first = train(params, paths, start_tracking=start, progress=False)
    params = tiny_params(train={"epochs": 2})  # same fingerprint: continues, same MLflow run
    second = train(params, paths, start_tracking=start, progress=False)
    assert second.resumed_from_epoch == 1 and runs[0] == runs[1] == second.run.run_id
    assert first.run.run_id == runs[0]

    client = client_for(uri)
    run = client.get_run(runs[0])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(runs[0], "val_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([h["val_loss"] for h in second.history])
    assert run.data.metrics["final_val_loss"] == pytest.approx(second.metrics["val_loss"])
    assert run.data.metrics["epochs_run"] == 2
    assert run.data.params["train.epochs"] == "1"  # params of the run that started it
    assert run.data.tags["model.arch"] == "deepflash"
    names = {a.path for a in second.run.artifacts().list_artifacts()}
    assert {"train.json", "train.csv"} <= names
