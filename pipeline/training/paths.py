"""Where a training run reads and writes (:class:`TrainPaths`): what the train stage passes to
:func:`pipeline.training.loop.train` and what :mod:`pipeline.training.outputs` logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainPaths:
    """Where training reads and writes (the stage passes the dvc.yaml paths)."""

    index_csv: Path = Path("data/processed/index.csv")
    root: Path = Path(".")
    model_file: Path = Path("models/model.pt")
    checkpoint_dir: Path = Path("models/checkpoints")
    metrics_file: Path | None = Path("metrics/train.json")
    plots_file: Path | None = Path("plots/train.csv")
