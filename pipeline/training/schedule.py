"""When to stop and how fast to learn: the per-epoch learning rate and the stop rules."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the Adam lr in ``epoch`` (1-based) of ``epochs``: 1 for ``constant`` (the
    paper, Sec. 5); ``cosine``: 1 in the first epoch down to 0.5 (1 + cos(pi (E-1)/E)) in the
    last."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs, 1)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def monitored_loss(entry: dict[str, Any]) -> float:
    """The loss the stop rules and the best-epoch choice watch: the validation loss, or the
    training loss when there is no validation split."""
    value = entry.get("val_loss")
    return float(entry["train_loss"] if value is None else value)


def stop_reason(
    history: list[dict[str, Any]], epochs: int, target_val_loss: float, patience: int
) -> str | None:
    """Why training stops after the last epoch of ``history``, or None to go on.

    ``target_val_loss``: the latest validation loss is at or below it (0 = off; the paper
    stopped at ~0.0042). ``patience``: no new best validation loss for that many epochs
    (0 = off). ``epochs``: the epoch budget is spent.
    """
    if not history:
        return None
    monitored = [monitored_loss(h) for h in history]
    if target_val_loss > 0 and monitored[-1] <= target_val_loss:
        return "target_val_loss"
    if patience > 0:
        best_at = int(np.argmin(monitored))
        if len(history) - 1 - best_at >= patience:
            return "patience"
    if history[-1]["epoch"] >= epochs:
        return "epochs"
    return None
