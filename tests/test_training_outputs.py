"""Tests of pipeline/training/outputs.py: history CSV and final metrics (the model file's
meta is pipeline.models.format's and tested with it)."""

from __future__ import annotations

from pathlib import Path

from pipeline.training.outputs import final_metrics, write_history_csv


def test_history_csv_columns_and_empty_cells(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "train_loss": 0.5, "val_loss": None, "val_accuracy": None, "lr": 0.1},
        {"epoch": 2, "train_loss": 0.25, "val_loss": 0.3, "val_accuracy": 90.0, "lr": 0.05},
    ]
    path = tmp_path / "plots" / "train.csv"
    write_history_csv(path, history)
    assert path.read_bytes() == (
        b"epoch,train_loss,val_loss,val_accuracy,lr\r\n1,0.5,,,0.1\r\n2,0.25,0.3,90.0,0.05\r\n"
    )
    assert [p.name for p in path.parent.iterdir()] == ["train.csv"]  # no temporary left


def test_final_metrics_sum_the_epochs() -> None:
    history = [
        {"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 80.0,
         "images": 16, "epoch_seconds": 2.0},
        {"epoch": 2, "train_loss": 0.3, "val_loss": 0.35, "val_accuracy": 85.0,
         "images": 16, "epoch_seconds": 6.0},
    ]  # fmt: skip
    metrics = final_metrics(history, 0.35, 2, "epochs", 0, {"threads": 2})
    assert metrics["images_per_s"] == 4.0  # 32 images in 8 s
    assert metrics["train_seconds"] == 8.0 and metrics["epochs_run"] == 2
    assert (metrics["val_loss"], metrics["best_epoch"], metrics["threads"]) == (0.35, 2, 2)
