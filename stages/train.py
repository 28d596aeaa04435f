"""DVC stage `train`: train params.model.arch on data/processed (pipeline/training/).

Outputs: models/model.pt (weights + everything needed to use them), models/checkpoints/
(persist: a re-run after a crash resumes from the last epoch), models/mlflow_run.json (the
MLflow run, continued by `evaluate`), metrics/train.json and plots/train.csv.

Single process: `python -m stages.train`. Several GPUs, nodes or CPU processes:
`torchrun --nproc_per_node=N -m stages.train` (DistributedDataParallel; only rank 0 logs and
writes). CPU threads per process: `train.threads` (auto: a share of the cores among the
trainings running at once, found under `$DVC_ROOT/.deepflash/trainings/`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline import tracking
from pipeline.config import load_params
from pipeline.training.checkpoint import CheckpointError
from pipeline.training.data import DataIndexError
from pipeline.training.loop import train
from pipeline.training.paths import TrainPaths

RUN_FILE = Path("models/mlflow_run.json")


def main() -> int:
    """Train from the repository root, then record the MLflow run (rank 0)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = load_params(exit_on_error=True)
    root = Path.cwd()
    try:  # a store of another folder stops here, before any training
        tracking.preflight(params, root)
    except tracking.TrackingStoreError as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    try:
        result = train(
            params,
            TrainPaths(root=root),
            start_tracking=lambda run_id: tracking.start_run(params, root, run_id=run_id),
        )
    except (CheckpointError, DataIndexError) as error:  # the message says what to do
        print(f"train: {error}", file=sys.stderr)
        return 1
    if result.dist.is_main:
        tracking.write_run_file(RUN_FILE, result.run or tracking.RunHandle())
    return 0


if __name__ == "__main__":
    sys.exit(main())
