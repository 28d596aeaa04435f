"""Training checkpoints (pipeline/training/checkpoint.py): fingerprint, RNG states, and files
that are sealed, atomic and never resumed when damaged.

A checkpoint with a byte flipped at the start, the middle or the end of its weights, or with a
weight changed inside a well-formed zip, is refused with "checkpoint damaged: <path>
(<reason>)"; ``train.on_bad_checkpoint`` decides between training from scratch (saying so) and
stopping. A real (tiny) training run shows both, and that an intact checkpoint is resumed.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.damage import flip_byte, weight_offsets

from pipeline.config import Params, validate_params
from pipeline.io import write_image
from pipeline.training.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    atomic_save,
    fingerprint,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from pipeline.training.loop import train
from pipeline.training.paths import TrainPaths

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state(epoch: int = 3) -> dict[str, Any]:
    torch.manual_seed(0)
    return {
        "version": CHECKPOINT_VERSION,
        "fingerprint": "fp",
        "epoch": epoch,
        "model": {"a.weight": torch.randn(64, 8), "b.bias": torch.randn(32)},
        "history": [{"epoch": 1, "train_loss": 0.5}],
    }


def test_atomic_save_writes_a_sealed_0644_file_and_loads_it_back(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    assert load_checkpoint(path, "fp") == (None, "no checkpoint")
    atomic_save(_state(), path)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with zipfile.ZipFile(path) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"archive"}
    stale = tmp_path / f".{CHECKPOINT_NAME}.x1y2.tmp"
    stale.write_bytes(b"half a checkpoint from a killed process")
    state, why = load_checkpoint(path, "fp")
    assert why == "ok" and state is not None and state["epoch"] == 3 and not stale.exists()
    torch.testing.assert_close(state["model"]["b.bias"], _state()["model"]["b.bias"])
    assert load_checkpoint(path, "other") == (
        None,
        f"checkpoint {path} is from other params or data",
    )


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_flipped_weight_bytes_are_never_resumed(tmp_path: Path, where: str) -> None:
    good = tmp_path / "good.pt"
    atomic_save(_state(), good)
    path = flip_byte(good, weight_offsets(good)[where], tmp_path / CHECKPOINT_NAME)
    expected = f"checkpoint damaged: {path} (zip CRC error)"
    assert load_checkpoint(path, "fp", on_bad="restart") == (None, expected)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, "fp", on_bad="stop")
    assert str(caught.value).startswith(expected + "; not resumed (train.on_bad_checkpoint: stop)")


def test_a_changed_weight_in_a_well_formed_zip_fails_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    atomic_save(_state(), path)
    state = torch.load(path, weights_only=True)
    state["model"]["a.weight"][10, 3] += 1.0
    torch.save(state, path)  # valid zip CRCs, stale checksum
    assert load_checkpoint(path, "fp") == (None, f"checkpoint damaged: {path} (checksum mismatch)")
    with pytest.raises(CheckpointError, match=r"\(checksum mismatch\); not resumed"):
        load_checkpoint(path, "fp", on_bad="stop")


def test_foreign_and_older_files_start_afresh_whatever_the_policy(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"garbage")
    assert load_checkpoint(path, "fp", on_bad="stop") == (
        None,
        f"{path}: not a checkpoint (not a PyTorch zip archive)",
    )
    torch.save({"version": 1, "fingerprint": "fp", "epoch": 2}, path)  # before checksums
    assert load_checkpoint(path, "fp", on_bad="stop") == (
        None,
        f"checkpoint {path} has another format",
    )


# --- what a checkpoint records -------------------------------------------------------------------


def tiny_params(**groups: dict[str, Any]) -> Params:
    """A deepflash of width 1/16 on 32 px images, 2 epochs, one thread (the given keys win)."""
    raw: dict[str, dict[str, Any]] = {
        "data": {"size": SIZE},
        "model": {"arch": "deepflash", "width": 1 / 16},
        "loss": {"encoding": "C"},
        "train": {"epochs": 2, "batch_size": 4, "seed": 0, "lr_schedule": "constant",
                  "device": "cpu", "amp": "off", "threads": 1},
    }  # fmt: skip
    for group, values in groups.items():
        raw.setdefault(group, {}).update(values)
    return validate_params(raw)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train + 2 val pairs of 32 px smooth images (flash: brighter centre, cooler), as the
    augment stage writes them (data/processed/index.csv)."""
    root = tmp_path_factory.mktemp("processed")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    rows = []
    for split, n in (("train", 8), ("val", 2)):
        for i in range(n):
            studio = np.stack([0.5 + 0.2 * np.sin(4 * xx + i), 0.4 + 0.2 * yy, 0.3 + 0.1 * xx], -1)
            falloff = 1.3 - 0.8 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
            flash = np.clip(studio * falloff[..., None] + rng.normal(0, 0.01, studio.shape), 0, 1)
            names = [f"data/processed/{split}/p{i}_{kind}.png" for kind in ("flash", "studio")]
            write_image(root / names[0], flash)
            write_image(root / names[1], studio)
            rows.append(f"{split},{split}{i},{split}{i},v0,{names[0]},{names[1]}\n")
    header = "split,pair_id,subject,variant,flash,studio\n"
    (root / "data" / "processed" / "index.csv").write_text(header + "".join(rows))
    return root


def test_rng_state_round_trip_survives_weights_only_load(tmp_path: Path) -> None:
    state = rng_state()
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    set_rng_state(loaded)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_fingerprint_tracks_what_changes_the_weights(data_root: Path) -> None:
    index = data_root / "data" / "processed" / "index.csv"
    base = fingerprint(tiny_params(), index, data_root)
    assert fingerprint(tiny_params(), index, data_root) == base
    # epochs, stop rules, workers and the damaged-file policy do not change the weights of
    # the epochs already run
    same = tiny_params(
        train={"epochs": 9, "patience": 3, "target_val_loss": 0.1, "num_workers": 2,
               "on_bad_checkpoint": "stop"}
    )  # fmt: skip
    assert fingerprint(same, index, data_root) == base
    assert fingerprint(tiny_params(train={"seed": 1}), index, data_root) != base
    assert fingerprint(tiny_params(loss={"encoding": "B"}), index, data_root) != base
    assert fingerprint(tiny_params(), index, data_root, world_size=2) != base
    # with a schedule, the budget changes every epoch's learning rate
    cosine = fingerprint(tiny_params(train={"lr_schedule": "cosine"}), index, data_root)
    longer = tiny_params(train={"lr_schedule": "cosine", "epochs": 9})
    assert fingerprint(longer, index, data_root) not in (cosine, base)
    image = data_root / "data" / "processed" / "val" / "p0_studio.png"
    before = image.stat()
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        assert fingerprint(tiny_params(), index, data_root) != base
    finally:
        os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))


# --- a real training run ------------------------------------------------------------------------


def _run(data_root: Path, out: Path, epochs: int, on_bad: str = "restart") -> Any:
    params = tiny_params(train={"epochs": epochs, "on_bad_checkpoint": on_bad})
    paths = TrainPaths(
        index_csv=data_root / "data" / "processed" / "index.csv",
        root=data_root,
        model_file=out / "models" / "model.pt",
        checkpoint_dir=out / "models" / "checkpoints",
        metrics_file=None,
        plots_file=None,
    )
    return train(params, paths, progress=False)


def test_training_never_resumes_from_a_damaged_checkpoint(
    data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = tmp_path / "models" / "checkpoints" / CHECKPOINT_NAME
    assert _run(data_root, tmp_path, epochs=1).resumed_from_epoch == 0
    assert last.is_file()
    intact = tmp_path / "intact.pt"
    intact.write_bytes(last.read_bytes())
    assert _run(data_root, tmp_path, epochs=2).resumed_from_epoch == 1  # intact: resumed

    flip_byte(intact, weight_offsets(intact)["middle"], last)
    damaged_bytes = last.read_bytes()
    with pytest.raises(CheckpointError, match=r"checkpoint damaged: .*last\.pt \(zip CRC error\)"):
        _run(data_root, tmp_path, epochs=2, on_bad="stop")
    assert last.read_bytes() == damaged_bytes  # left for inspection

    with caplog.at_level(logging.WARNING):
        result = _run(data_root, tmp_path, epochs=2, on_bad="restart")
    assert result.resumed_from_epoch == 0 and len(result.history) == 2
    assert f"checkpoint damaged: {last} (zip CRC error): training from scratch" in caplog.text
    assert load_checkpoint(last, "x")[1].endswith("is from other params or data")  # rewritten
