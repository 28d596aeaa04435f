"""Resuming a run: the epoch checkpoints the loop writes and the state it reads back.

Two files per run (format: :mod:`pipeline.training.checkpoint`): ``last.pt`` with everything
the next epoch needs (weights, optimizers, scaler, every rank's RNG states, history, best
loss, MLflow run id) and ``best.pt`` with the best epoch's weights. Rank 0 reads them and
sends the decision to every rank, so all ranks resume alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch.distributed as dist

from pipeline.training.checkpoint import CHECKPOINT_VERSION, atomic_save, load_checkpoint
from pipeline.training.distributed import DistInfo

log = logging.getLogger(__name__)

State = dict[str, Any]


def read_resume_state(
    last_path: Path,
    best_path: Path,
    fingerprint: str,
    epochs: int,
    info: DistInfo,
    on_bad: str = "restart",
) -> tuple[State | None, State | None]:
    """(last checkpoint, best weights) to continue from, or (None, None) to start afresh.

    A checkpoint is used when its fingerprint matches and it has at most ``epochs`` epochs;
    the best weights only when ``best.pt`` is of the checkpoint's best epoch. A damaged file
    is never used: ``on_bad`` (train.on_bad_checkpoint) restart = go on without it, saying
    so; stop = raise CheckpointError. A collective when distributed: every rank must call it.
    """
    state: State | None = None
    best_state: State | None = None
    if info.is_main:
        state, why = load_checkpoint(last_path, fingerprint, on_bad)
        if state is not None and state["epoch"] > epochs:
            why = f"{last_path} has {state['epoch']} epochs, more than train.epochs={epochs}"
            state = None
        if state is not None:
            best, _ = load_checkpoint(best_path, fingerprint, on_bad)
            if best is not None and best.get("epoch") == state["best_epoch"]:
                best_state = best["model"]
            log.info("resuming from %s (%d epoch(s) done)", last_path, state["epoch"])
        elif why != "no checkpoint":
            log.warning("%s: training from scratch", why)
    if info.distributed:
        shared = [state, best_state]
        dist.broadcast_object_list(shared, src=0)
        state, best_state = shared
    return state, best_state


def write_checkpoints(
    last_path: Path,
    best_path: Path,
    fingerprint: str,
    epoch: int,
    state: State,
    best_weights: State | None,
) -> None:
    """Write ``best.pt`` (when ``best_weights`` is given: this epoch is the best), then
    ``last.pt`` (``state`` plus version, fingerprint and epoch), each atomically."""
    header = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": epoch}
    if best_weights is not None:
        # Before last.pt: a last.pt on disk always has its best epoch's weights beside it.
        atomic_save({**header, "model": best_weights}, best_path)
    atomic_save({**header, **state}, last_path)
