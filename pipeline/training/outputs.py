"""What a training run leaves behind besides checkpoints: the per-epoch CSV, the final metrics
and the meta of the model file."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import torch

from pipeline.config import Params
from pipeline.io import write_text
from pipeline.models.format import ModelMeta
from pipeline.training.paths import TrainPaths

log = logging.getLogger(__name__)

PLOT_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy")


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """plots/train.csv: one row per epoch (epoch, train_loss, val_loss, val_accuracy, ...)."""
    extra = sorted({k for h in history for k in h} - set(PLOT_COLUMNS))
    columns = list(PLOT_COLUMNS) + extra
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for entry in history:
        writer.writerow({k: ("" if entry.get(k) is None else entry.get(k)) for k in columns})
    write_text(path, buffer.getvalue())


def model_meta(params: Params, extra: dict[str, Any] | None = None) -> ModelMeta:
    """Everything needed to use a trained model later (the model file's meta); ``extra``:
    the training record (epochs, best_epoch, fingerprint)."""
    return ModelMeta.from_params(params, training=extra)


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda (<GPU name>)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def amp_name(dtype: torch.dtype | None) -> str:
    """``off``, ``bfloat16`` or ``float16``."""
    return "off" if dtype is None else str(dtype).removeprefix("torch.")


def final_metrics(
    history: list[dict[str, Any]],
    best_val: float,
    best_epoch: int,
    reason: str,
    resumed_from: int,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """metrics/train.json: the last epoch's losses, the best epoch, throughput over the epochs
    run, why training stopped; ``run_info`` adds device, amp, world size, threads."""
    last = history[-1]
    images = sum(h["images"] for h in history)
    seconds = sum(h["epoch_seconds"] for h in history)
    return {
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "best_val_loss": best_val,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "images_per_s": images / seconds if seconds > 0 else None,
        "train_seconds": round(seconds, 2),
        "stop_reason": reason,
        "resumed_from_epoch": resumed_from,
        **run_info,
    }


def log_start(
    params: Params,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    images: tuple[int, int],
    world_size: int,
    threads: int,
) -> None:
    """The log line a run starts with: arch, device, (train, val) image counts, batch,
    processes, amp, CPU threads."""
    log.info(
        "training %s (width %g, encoding %s) on %s: %d train / %d val images of %d px, "
        "batch %d x %d process(es), amp %s, %d thread(s)",
        params.model.arch,
        params.model.width,
        params.loss.encoding,
        device_name(device),
        *images,
        params.data.size,
        params.train.batch_size,
        world_size,
        amp_name(amp_dtype),
        threads,
    )


def log_epoch(entry: dict[str, Any], epochs: int, run: Any = None) -> None:
    """One log line per epoch; the epoch's metrics into the MLflow ``run`` (step = epoch)."""
    log.info(
        "epoch %d/%d: train_loss %.5f val_loss %s val_accuracy %s (%.1f s, %.1f images/s)",
        entry["epoch"],
        epochs,
        entry["train_loss"],
        _fmt(entry["val_loss"], "%.5f"),
        _fmt(entry["val_accuracy"], "%.2f"),
        entry["epoch_seconds"],
        entry["images_per_s"] or 0.0,
    )
    if run is not None:
        logged = {k: v for k, v in entry.items() if k not in ("epoch", "images")}
        run.log_metrics(logged, step=entry["epoch"])


def log_final(run: Any, metrics: dict[str, Any], paths: TrainPaths) -> None:
    """Final metrics and the output files into the MLflow ``run``, which then ends FINISHED.

    The model file is not copied here: evaluate logs it as an MLflow logged model
    (pipeline/tracking/models.py)."""
    final = {f"final_{k}": metrics[k] for k in ("train_loss", "val_loss", "val_accuracy")}
    final.update({k: metrics[k] for k in ("epochs_run", "best_val_loss", "images_per_s")})
    run.log_metrics(final)
    for path in (paths.metrics_file, paths.plots_file):
        if path is not None:
            run.log_artifact(path)
    run.end("FINISHED")


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern % value
