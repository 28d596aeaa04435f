"""Tests of pipeline/train.py and stages/train.py on a tiny generated processed set.

16 training and 4 validation pairs of 64 px, a deepflash of width 1/16: a whole run takes
about a second on one CPU core. The crash test kills a real training process with SIGKILL in
its second epoch and checks that re-running the stage resumes and ends with bit-identical
weights; the DDP test runs 2 processes with the gloo backend under torchrun.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import validate_params
from pipeline.io import write_image
from pipeline.models import adam_settings, load_model_file
from pipeline.runtime import make_autocast, resolve_amp
from pipeline.training.checkpoint import BEST_NAME, CHECKPOINT_NAME
from pipeline.training.loop import TrainPaths, lr_factor, stop_reason, train
from pipeline.training.sampler import EpochSampler

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
TINY: dict[str, Any] = {
    "data": {"size": SIZE},
    "model": {"arch": "deepflash", "width": 0.0625},
    "train": {"epochs": 2, "batch_size": 4, "seed": 0, "lr_schedule": "constant"},
    "loss": {"encoding": "C", "centred": True},
}


def _params(**groups: dict[str, Any]):
    raw = json.loads(json.dumps(TINY))
    for group, values in groups.items():
        raw.setdefault(group, {}).update(values)
    return validate_params(raw)


def make_processed(root: Path, n_train: int = 16, n_val: int = 4) -> Path:
    """A processed set like the augment stage's: smooth 'studio' faces and a flash version
    (brighter centre, cooler colour) with noise. Returns data/processed/index.csv."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    rows = []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            phase = rng.uniform(0, 6)
            studio = np.stack(
                [
                    0.55 + 0.25 * np.sin(5 * xx + phase),
                    0.45 + 0.2 * np.cos(4 * yy + phase),
                    0.35 + 0.2 * xx * yy,
                ],
                axis=-1,
            )
            falloff = 1.35 - 0.9 * ((xx - 0.5) ** 2 + (yy - 0.45) ** 2)
            flash = studio * falloff[..., None] * np.array([0.92, 1.0, 1.12])
            flash = np.clip(flash + rng.normal(0, 0.01, flash.shape), 0, 1)
            pair = f"s{split}{i}__p0"
            paths = [f"data/processed/{split}/{pair}__v0_{k}.png" for k in ("flash", "studio")]
            write_image(root / paths[0], flash)
            write_image(root / paths[1], studio)
            rows.append([split, pair, f"s{split}{i}", "v0", *paths])
    index = root / "data" / "processed" / "index.csv"
    with index.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "pair_id", "subject", "variant", "flash", "studio"])
        writer.writerows(rows)
    return index


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


def _paths(data_root: Path, out: Path) -> TrainPaths:
    return TrainPaths(
        index_csv=data_root / "data" / "processed" / "index.csv",
        root=data_root,
        model_file=out / "models" / "model.pt",
        checkpoint_dir=out / "models" / "checkpoints",
        metrics_file=out / "metrics" / "train.json",
        plots_file=out / "plots" / "train.csv",
    )


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _state_of(model_file: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model_file(model_file)
    return model.state_dict()


# --- units ----------------------------------------------------------------------------------


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch() -> None:
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(5)
    other_epoch = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == first  # same epoch, same order, whatever happened in between
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert other_epoch != first
    assert EpochSampler(10, seed=4).indices(2) != first


def test_epoch_sampler_caps_pads_and_shards() -> None:
    shards = [EpochSampler(10, 0, rank=r, world_size=3, max_items=7) for r in range(3)]
    parts = [s.indices(1) for s in shards]
    assert [len(p) for p in parts] == [3, 3, 3] == [len(s) for s in shards]
    capped = EpochSampler(10, 0, max_items=7).indices(1)
    # 7 distinct images, padded to 9 by wrapping round to the first two
    assert sorted(parts[0] + parts[1] + parts[2]) == sorted(capped + capped[:2])


def test_stop_reason() -> None:
    def hist(*losses: float) -> list[dict[str, Any]]:
        return [{"epoch": i + 1, "train_loss": 1.0, "val_loss": v} for i, v in enumerate(losses)]

    assert stop_reason([], 5, 0.0, 0) is None
    assert stop_reason(hist(0.5, 0.4), 5, 0.0, 0) is None
    assert stop_reason(hist(0.5, 0.4), 2, 0.0, 0) == "epochs"
    assert stop_reason(hist(0.5, 0.0041), 5, 0.0042, 0) == "target_val_loss"
    assert stop_reason(hist(0.3, 0.4, 0.5), 9, 0.0, 2) == "patience"
    assert stop_reason(hist(0.3, 0.4, 0.2), 9, 0.0, 2) is None
    no_val = [{"epoch": 1, "train_loss": 0.001, "val_loss": None}]
    assert stop_reason(no_val, 9, 0.01, 0) == "target_val_loss"  # falls back to train loss


def test_lr_factor() -> None:
    assert [lr_factor("constant", e, 4) for e in (1, 4)] == [1.0, 1.0]
    cosine = [lr_factor("cosine", e, 4) for e in (1, 2, 3, 4)]
    assert cosine == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)


def test_cosine_schedule_sets_each_epochs_lr(data_root: Path, tmp_path: Path) -> None:
    params = _params(train={"lr_schedule": "cosine", "epochs": 3, "max_images_per_epoch": 4})
    result = train(params, _paths(data_root, tmp_path), progress=False)
    base = adam_settings("deepflash", params.train.optimizer).lr
    assert [h["lr"] for h in result.history] == pytest.approx([base, 0.75 * base, 0.25 * base])
    assert [h["images"] for h in result.history] == [4, 4, 4]  # the per-epoch cap


def test_autocast_is_off_on_cpu() -> None:
    cpu = torch.device("cpu")
    for choice in ("auto", "bf16", "fp16", "off"):
        assert resolve_amp(choice, cpu) is None
    assert make_autocast(cpu, None)().__class__.__name__ == "nullcontext"
    cuda = torch.device("cuda", 0)  # a device object needs no GPU
    assert resolve_amp("fp16", cuda) is torch.float16
    assert resolve_amp("bf16", cuda) is torch.bfloat16
    assert resolve_amp("off", cuda) is None


# Checkpoint files, RNG states and the fingerprint: tests/test_checkpoint.py.


# --- training runs in this process -----------------------------------------------------------


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One 2-epoch run of the tiny config (seed 0) and its output folder."""
    out = tmp_path_factory.mktemp("reference")
    return train(_params(), _paths(data_root, out), progress=False), out


def test_outputs(reference: tuple[Any, Path]) -> None:
    result, out = reference
    model, meta = load_model_file(out / "models" / "model.pt")
    assert _same_state(model.state_dict(), result.model.state_dict())
    assert meta.arch == "deepflash" and meta.width == 0.0625 and meta.size == SIZE
    assert meta.encoding == "C" and meta.centred is True
    assert meta.bilateral.model_dump() == {
        "sigma_s_fraction": 0.03,
        "sigma_r": 0.4,
        "mode": "per_channel",
    }
    assert meta.training is not None and meta.training.epochs == 2
    metrics = json.loads((out / "metrics" / "train.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["stop_reason"] == "epochs"
    assert metrics["device"] == "cpu" and metrics["amp"] == "off" and metrics["world_size"] == 1
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


def test_same_seed_same_weights(
    reference: tuple[Any, Path], data_root: Path, tmp_path: Path
) -> None:
    again = train(_params(), _paths(data_root, tmp_path), progress=False)
    assert _same_state(again.model.state_dict(), reference[0].model.state_dict())
    assert _losses(again.history) == _losses(reference[0].history)


def test_early_stop_on_target_val_loss(data_root: Path, tmp_path: Path) -> None:
    result = train(
        _params(train={"epochs": 5, "target_val_loss": 10.0}),
        _paths(data_root, tmp_path),
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
    continued = train(_params(train={"epochs": 3}), _paths(data_root, out), progress=False)
    straight = train(
        _params(train={"epochs": 3}), _paths(data_root, tmp_path / "s"), progress=False
    )
    assert continued.resumed_from_epoch == 2 and len(continued.history) == 3
    assert _same_state(continued.model.state_dict(), straight.model.state_dict())
    assert _losses(continued.history) == _losses(straight.history)
    fresh = train(_params(train={"seed": 5}), _paths(data_root, out), progress=False)
    assert fresh.resumed_from_epoch == 0 and len(fresh.history) == 2
    assert not _same_state(fresh.model.state_dict(), reference[0].model.state_dict())


def _losses(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    # Everything but the timings.
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in history]


# --- crash and resume, DDP: real processes ---------------------------------------------------


def _mini_repo(root: Path, **groups: dict[str, Any]) -> Path:
    make_processed(root)
    raw = json.loads(json.dumps(TINY))
    for group, values in groups.items():
        raw.setdefault(group, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DEEPFLASH_MLFLOW": "0",
            "PYTHONPATH": str(REPO),
            # The same thread count in every process: identical float reduction order.
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def _run_stage(cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


HOLD_IN_EPOCH_2 = textwrap.dedent(
    """
    import time
    from pathlib import Path

    from pipeline.config import load_params
    from pipeline.training.loop import TrainPaths, train

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
    crashed = _mini_repo(tmp_path)
    (crashed / "hold.py").write_text(HOLD_IN_EPOCH_2)
    proc = subprocess.Popen(
        [sys.executable, "hold.py"], cwd=crashed, env=_env(), stderr=subprocess.PIPE
    )
    marker = crashed / "in_epoch_2"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.05)
    checkpoint = crashed / "models" / "checkpoints" / CHECKPOINT_NAME
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1  # epoch 1's checkpoint
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stderr.close()
    assert not (crashed / "models" / "model.pt").exists()

    log = _run_stage(crashed).stderr
    assert "resuming from models/checkpoints/last.pt (1 epoch(s) done)" in log
    metrics = json.loads((crashed / "metrics" / "train.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_run"] == 2
    result, straight = reference
    assert _same_state(_state_of(crashed / "models" / "model.pt"), result.model.state_dict())
    last = [
        torch.load(repo / "models" / "checkpoints" / CHECKPOINT_NAME, weights_only=True)
        for repo in (straight, crashed)
    ]
    assert _same_state(last[0]["model"], last[1]["model"])
    assert last[0]["optimizers"].keys() == last[1]["optimizers"].keys()
    for name in last[0]["optimizers"]:
        a, b = (ck["optimizers"][name]["state"] for ck in last)
        assert a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    assert _losses(last[0]["history"]) == _losses(last[1]["history"])
    run_file = json.loads((crashed / "models" / "mlflow_run.json").read_text())
    assert run_file == {"run_id": None, "experiment_id": None, "tracking_uri": None}


DDP_WORKER = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import torch

    from pipeline.config import load_params
    from pipeline.training.loop import TrainPaths, train

    rank = int(os.environ["RANK"])
    out = Path(f"out_rank{rank}")  # only rank 0 may create its folder
    result = train(
        load_params(),
        TrainPaths(
            root=Path.cwd(),
            model_file=out / "model.pt",
            checkpoint_dir=out / "checkpoints",
            metrics_file=out / "train.json",
            plots_file=out / "train.csv",
        ),
        progress=False,
    )
    torch.save(
        {"state": result.model.state_dict(), "history": result.history},
        f"weights_rank{result.dist.rank}_of_{result.dist.world_size}.pt",
    )
    """
)


def test_ddp_gloo_two_processes_end_identical_and_rank0_writes(tmp_path: Path) -> None:
    repo = _mini_repo(tmp_path, train={"batch_size": 2})
    (repo / "worker.py").write_text(DDP_WORKER)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "worker.py",
        ],
        cwd=repo,
        env=_env() | {"MASTER_ADDR": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(repo / f"weights_rank{r}_of_2.pt", weights_only=True) for r in (0, 1)]
    assert _same_state(ranks[0]["state"], ranks[1]["state"])
    assert _losses(ranks[0]["history"]) == _losses(ranks[1]["history"])
    # each rank trained on its half: 8 steps of 2 images per epoch per rank = 16 images
    assert [h["images"] for h in ranks[0]["history"]] == [16, 16]
    assert _same_state(_state_of(repo / "out_rank0" / "model.pt"), ranks[0]["state"])
    metrics = json.loads((repo / "out_rank0" / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_run"] == 2
    assert (repo / "out_rank0" / "checkpoints" / CHECKPOINT_NAME).is_file()
    assert not (repo / "out_rank1").exists()


def test_mlflow_run_gets_epochs_and_a_resumed_training_reopens_it(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from pipeline import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.ENV_SWITCH, "1")
    paths = _paths(data_root, tmp_path)
    runs: list[str] = []

    def start(run_id: str | None) -> Any:
        handle = tracking.start_run(params, tmp_path, run_id=run_id)
        runs.append(handle.run_id)
        return handle

    params = _params(train={"epochs": 1})
    first = train(params, paths, start_tracking=start, progress=False)
    params = _params(train={"epochs": 2})  # same fingerprint: continues, same MLflow run
    second = train(params, paths, start_tracking=start, progress=False)
    assert second.resumed_from_epoch == 1 and runs[0] == runs[1] == second.run.run_id
    assert first.run.run_id == runs[0]

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(runs[0])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(runs[0], "val_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([h["val_loss"] for h in second.history])
    assert run.data.metrics["final_val_loss"] == pytest.approx(second.metrics["val_loss"])
    assert run.data.metrics["epochs_run"] == 2
    assert run.data.params["train.epochs"] == "1"  # params of the run that started it
    assert run.data.tags["model.arch"] == "deepflash"
    names = {a.path for a in client.list_artifacts(runs[0])}
    assert {"train.json", "train.csv"} <= names


def test_model_meta_carries_what_enhance_needs():
    """The model file's meta holds arch, width, encoding, size, bilateral and crop settings."""
    from pipeline.config import validate_params
    from pipeline.enhance.apply import crop_settings
    from pipeline.training.loop import model_meta

    params = validate_params(
        {
            "model": {"arch": "hdrnet", "width": 0.5},
            "loss": {"encoding": "B"},
            "data": {"size": 256},
            "crop": {"margin": 0.25, "pad_mode": "edge"},
        }
    )
    meta = model_meta(params).to_dict()  # pipeline.models.ModelMeta
    assert (meta["arch"], meta["width"], meta["encoding"], meta["size"]) == (
        "hdrnet",
        0.5,
        "B",
        256,
    )
    assert meta["bilateral"] == {"sigma_s_fraction": 0.03, "sigma_r": 0.4, "mode": "per_channel"}
    assert crop_settings(meta)["margin"] == 0.25
    assert crop_settings(meta)["pad_mode"] == "edge"
