"""Helpers of the training tests: a tiny generated processed set, tiny params, runners.

16 training and 4 validation pairs of 64 px and a deepflash of width 1/16: a whole 2-epoch
run takes about a second on one CPU core.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipeline.config import Params, validate_params
from pipeline.io import write_image
from pipeline.models import load_model_file
from pipeline.training.loop import TrainPaths

REPO = Path(__file__).resolve().parents[2]
SIZE = 64
# threads: 1, as OMP_NUM_THREADS=1 in the subprocesses: identical float reduction order, so
# runs in this process and in subprocesses give bit-identical weights.
TINY: dict[str, Any] = {
    "data": {"size": SIZE},
    "model": {"arch": "deepflash", "width": 0.0625},
    "train": {"epochs": 2, "batch_size": 4, "seed": 0, "lr_schedule": "constant", "threads": 1},
    "loss": {"encoding": "C", "centred": True},
}


def raw_params(**groups: dict[str, Any]) -> dict[str, Any]:
    """TINY with the given groups' keys replaced."""
    raw = json.loads(json.dumps(TINY))
    for group, values in groups.items():
        raw.setdefault(group, {}).update(values)
    return raw


def tiny_params(**groups: dict[str, Any]) -> Params:
    """Validated :func:`raw_params`."""
    return validate_params(raw_params(**groups))


def make_processed(root: Path, n_train: int = 16, n_val: int = 4, size: int = SIZE) -> Path:
    """A processed set like the augment stage's: smooth 'studio' faces and a flash version
    (brighter centre, cooler colour) with noise. Returns data/processed/index.csv."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size] / size
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


def mini_repo(root: Path, size: int = SIZE, **groups: dict[str, Any]) -> Path:
    """``root`` with a processed set and a params.yaml of TINY (+ ``groups``)."""
    make_processed(root, size=size)
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params(**groups)))
    return root


def out_paths(data_root: Path, out: Path) -> TrainPaths:
    """Read the processed set under ``data_root``, write everything under ``out``."""
    return TrainPaths(
        index_csv=data_root / "data" / "processed" / "index.csv",
        root=data_root,
        model_file=out / "models" / "model.pt",
        checkpoint_dir=out / "models" / "checkpoints",
        metrics_file=out / "metrics" / "train.json",
        plots_file=out / "plots" / "train.csv",
    )


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def state_of(model_file: Path) -> dict[str, torch.Tensor]:
    """Weights of a model file."""
    model, _ = load_model_file(model_file)
    return model.state_dict()


def losses(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Everything of a history but the timings."""
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in history]


def subprocess_env() -> dict[str, str]:
    """No MLflow, the repo importable, one thread (the same float reduction order)."""
    env = {k: v for k, v in os.environ.items() if k != "DVC_ROOT"}
    env.update({"DEEPFLASH_MLFLOW": "0", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    return env


def run_train_stage(cwd: Path) -> subprocess.CompletedProcess:
    """``python stages/train.py`` in ``cwd``; asserts it succeeded."""
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def torchrun(cwd: Path, script: str, nproc: int = 2, timeout: int = 300) -> None:
    """Run ``script`` (in ``cwd``) in ``nproc`` gloo processes under torchrun."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            script,
        ],
        cwd=cwd,
        env=subprocess_env() | {"MASTER_ADDR": "127.0.0.1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def augmented_set(root: Path, materialise: bool, n_train: int = 2, n_val: int = 1) -> Path:
    """Crops like the crop stage's (64 px, a face box, the first one padded on the left), run
    through the augment stage's code with ``materialise``; returns the processed index.csv
    (under ``root``/data/processed, absolute paths)."""
    from pipeline.augment import augment_dataset
    from pipeline.config import AugmentParams
    from pipeline.io import write_csv, write_mask

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    faces, rows = root / "faces", []
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            pair = f"s{split}{i}__p0"
            studio = np.stack([0.5 + 0.3 * np.sin(6 * xx + i), 0.4 + 0.2 * yy, 0.3 + xx * yy], -1)
            flash = np.clip(studio * 1.3 + rng.normal(0, 0.02, studio.shape), 0, 1)
            paths = [
                str(write_image(faces / f"{pair}_{k}.png", im))
                for k, im in (("flash", flash), ("studio", studio))
            ]
            mask = ""
            if not rows:
                valid = np.ones((SIZE, SIZE), bool)
                valid[:, :6] = False
                mask = str(write_mask(faces / f"{pair}_mask.png", valid))
            rows.append([pair, f"s{split}{i}", split, *paths, 16, 44, 48, 20, mask])
    import pandas as pd

    columns = ["pair_id", "subject", "split", "flash", "studio"]
    columns += ["face_top", "face_right", "face_bottom", "face_left", "mask"]
    processed = root / "data" / "processed"
    run = augment_dataset(
        pd.DataFrame(rows, columns=columns),
        processed,
        AugmentParams(workers=1, materialise=materialise),
    )
    return write_csv(processed / "index.csv", run.index)
