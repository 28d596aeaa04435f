"""Tests of pipeline/training/schedule.py: learning-rate factors and stop rules."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.training.schedule import lr_factor, monitored_loss, stop_reason


def _history(*losses: float) -> list[dict[str, Any]]:
    return [{"epoch": i + 1, "train_loss": 1.0, "val_loss": v} for i, v in enumerate(losses)]


def test_stop_reason() -> None:
    assert stop_reason([], 5, 0.0, 0) is None
    assert stop_reason(_history(0.5, 0.4), 5, 0.0, 0) is None
    assert stop_reason(_history(0.5, 0.4), 2, 0.0, 0) == "epochs"
    assert stop_reason(_history(0.5, 0.0041), 5, 0.0042, 0) == "target_val_loss"
    assert stop_reason(_history(0.3, 0.4, 0.5), 9, 0.0, 2) == "patience"
    assert stop_reason(_history(0.3, 0.4, 0.2), 9, 0.0, 2) is None
    no_val = [{"epoch": 1, "train_loss": 0.001, "val_loss": None}]
    assert stop_reason(no_val, 9, 0.01, 0) == "target_val_loss"  # falls back to train loss


def test_monitored_loss_prefers_validation() -> None:
    assert monitored_loss({"train_loss": 0.5, "val_loss": 0.25}) == 0.25
    assert monitored_loss({"train_loss": 0.5, "val_loss": None}) == 0.5


def test_lr_factor() -> None:
    assert [lr_factor("constant", e, 4) for e in (1, 4)] == [1.0, 1.0]
    cosine = [lr_factor("cosine", e, 4) for e in (1, 2, 3, 4)]
    assert cosine == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)
    with pytest.raises(ValueError, match="unknown lr schedule 'step'"):
        lr_factor("step", 1, 4)
