"""Resuming a run: which checkpoint it continues from, decided alike on every rank.

Rank 0 reads ``last.pt`` and ``best.pt`` (format: :mod:`pipeline.training.checkpoint`) and
sends the decision to every rank, so all ranks resume alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.training.checkpoint import TrainingState, load_checkpoint
from pipeline.training.distributed import DistInfo

log = logging.getLogger(__name__)


def read_resume_state(
    last_path: Path,
    best_path: Path,
    fingerprint: str,
    epochs: int,
    info: DistInfo,
    on_bad: str = "restart",
) -> tuple[TrainingState | None, dict[str, torch.Tensor] | None]:
    """(last checkpoint, best weights) to continue from, or (None, None) to start afresh.

    A checkpoint is used when its fingerprint matches and it has at most ``epochs`` epochs;
    the best weights only when ``best.pt`` is of the checkpoint's best epoch. A damaged file
    is never used: ``on_bad`` (train.on_bad_checkpoint) restart = go on without it, saying
    so; stop = raise CheckpointError. A collective when distributed: every rank must call it.
    """
    state: TrainingState | None = None
    best_state: dict[str, torch.Tensor] | None = None
    if info.is_main:
        payload, why = load_checkpoint(last_path, fingerprint, on_bad)
        if payload is not None:
            state = TrainingState.from_payload(payload)
        if state is not None and state.epoch > epochs:
            why = f"{last_path} has {state.epoch} epochs, more than train.epochs={epochs}"
            state = None
        if state is not None:
            best, _ = load_checkpoint(best_path, fingerprint, on_bad)
            if best is not None and best.get("epoch") == state.best_epoch:
                best_state = best["model"]
            log.info("resuming from %s (%d epoch(s) done)", last_path, state.epoch)
        elif why != "no checkpoint":
            log.warning("%s: training from scratch", why)
    if info.distributed:
        shared = [state, best_state]
        dist.broadcast_object_list(shared, src=0)
        state, best_state = shared
    return state, best_state
