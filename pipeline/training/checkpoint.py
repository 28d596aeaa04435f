"""Checkpoints of a training run: what decides the weights (fingerprint), what is saved
(:class:`TrainingState`), save, load, RNG states.

A run killed at any moment resumes from its last checkpoint and ends with the same weights as
a run that never stopped (see :mod:`pipeline.training.loop`). Two files per run: ``last.pt``
(a header of version, fingerprint and epoch, then the :class:`TrainingState`) and ``best.pt``
(the header and the best epoch's weights). Checkpoints are sealed like model files
(:mod:`pipeline.models.integrity`): a damaged one is never resumed. Which checkpoint a run
continues from, alike on every rank: :mod:`pipeline.training.resume`; every rank's RNG states
are gathered by :func:`pipeline.training.distributed.gather_rng`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import Params
from pipeline.io import atomic_output
from pipeline.models.integrity import DamagedFileError, ForeignFileError, read_sealed, seal, verify
from pipeline.training.data import read_index, resolve_path

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
# 2: sealed with a sha256 of the contents (version 1 files are not resumed: no checksum).
CHECKPOINT_VERSION = 2
KIND = "checkpoint"


# Params of the train group that do not change the weights a run ends with (so a checkpoint
# stays valid when they change): the number of epochs and the stop rules only decide where to
# stop, workers only how the same batches are loaded, on_bad_checkpoint only what happens to a
# damaged checkpoint, threads only the float summation order (a resumed run on a busier machine
# should go on, not start over).
_NOT_FINGERPRINTED = (
    "epochs",
    "target_val_loss",
    "patience",
    "num_workers",
    "on_bad_checkpoint",
    "threads",
)


def fingerprint(params: Params, index_csv: Path, root: Path, world_size: int = 1) -> str:
    """Hash of what decides the trained weights: the params groups data, model, loss,
    bilateral and train (less the stop rules and workers), the world size, the processed
    index and the size and modification time of every image it lists.
    """
    dumped = params.model_dump(include={"data", "model", "loss", "bilateral", "train"})
    for key in _NOT_FINGERPRINTED:
        if key == "epochs" and params.train.lr_schedule != "constant":
            continue  # the schedule, hence every epoch's weights, depends on the budget
        dumped["train"].pop(key, None)
    digest = hashlib.sha256()
    digest.update(json.dumps({"params": dumped, "world_size": world_size}, sort_keys=True).encode())
    digest.update(Path(index_csv).read_bytes())
    for row in read_index(index_csv):
        for column in ("flash", "studio"):
            path = resolve_path(row[column], root, Path(index_csv).parent)
            try:
                stat = path.stat()
                digest.update(f"{row[column]}:{stat.st_size}:{stat.st_mtime_ns};".encode())
            except OSError:
                digest.update(f"{row[column]}:absent;".encode())
    return digest.hexdigest()[:20]


@dataclass
class TrainingState:
    """Everything the next epoch needs, as ``last.pt`` holds it after its header."""

    epoch: int  # epochs done
    model: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]  # state dicts by the model's optimizer names
    scaler: dict[str, Any] | None  # the GradScaler's state dict (fp16 only)
    rng: list[dict[str, Any]]  # every rank's rng_state(), in rank order
    best_val: float
    best_epoch: int
    history: list[dict[str, Any]]  # one entry per epoch done
    run_id: str | None = None  # the MLflow run, reopened by the resumed training
    stop_reason: str | None = None

    def payload(self, fingerprint: str) -> dict[str, Any]:
        """What ``last.pt`` stores: the header (version, fingerprint, epoch), then the fields."""
        header = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint}
        return {**header, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TrainingState:
        """The state of a ``last.pt`` that :func:`load_checkpoint` accepted."""
        state = cls(**{f.name: payload[f.name] for f in fields(cls) if f.name in payload})
        state.epoch, state.best_epoch = int(state.epoch), int(state.best_epoch)
        state.best_val = float(state.best_val)
        return state

    def restore(
        self,
        model: torch.nn.Module,
        optimizers: dict[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler | None,
        rank: int,
    ) -> None:
        """Weights, optimizer and scaler states back into the run's objects, and the RNG states
        ``rank`` saved (rank 0's for a rank the checkpoint does not have)."""
        model.load_state_dict(self.model)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(self.optimizers[name])
        if scaler is not None and self.scaler:
            scaler.load_state_dict(self.scaler)
        set_rng_state(self.rng[rank] if rank < len(self.rng) else self.rng[0])


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict on the CPU (the best weights a run keeps)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class CheckpointError(RuntimeError):
    """A damaged checkpoint met ``train.on_bad_checkpoint: stop``; the message says what to do."""


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` of ``obj`` sealed with its checksum (:mod:`pipeline.models.integrity`),
    atomically and fsynced (:func:`pipeline.io.atomic_output`): a process killed at any moment
    leaves either the old file or the new one, never half, and damage later is detected."""
    with atomic_output(path, durable=True) as tmp, tmp.open("wb") as handle:
        # A file object, not a path: the zip's inner folder is "archive", not the temp name.
        torch.save(seal(obj), handle)


def load_checkpoint(
    path: Path, expected_fingerprint: str, on_bad: str = "restart"
) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint at ``path`` when usable, else None; the second value says why.

    A checkpoint that is absent, of another format or of other params/data is not used
    (training starts afresh). A damaged one (zip CRC, checksum, unreadable: "checkpoint
    damaged: <path> (<reason>)") is never resumed: ``on_bad`` = ``restart`` returns None with
    that reason, ``stop`` raises :class:`CheckpointError`.
    """
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        # Left by a process killed while writing; the previous checkpoint is intact.
        stale.unlink(missing_ok=True)
    if not path.is_file():
        return None, "no checkpoint"
    try:
        state = read_sealed(path, KIND)
        if isinstance(state, dict) and state.get("version") == CHECKPOINT_VERSION:
            verify(state, path, KIND)
    except DamagedFileError as error:
        if on_bad == "stop":
            raise CheckpointError(
                f"{error}; not resumed (train.on_bad_checkpoint: stop): delete it to train "
                "from scratch, or set train.on_bad_checkpoint: restart"
            ) from None
        return None, str(error)
    except ForeignFileError as error:
        return None, str(error)
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        return None, f"checkpoint {path} has another format"
    if state.get("fingerprint") != expected_fingerprint:
        return None, f"checkpoint {path} is from other params or data"
    return state, "ok"


def write_checkpoints(
    last_path: Path,
    best_path: Path,
    fingerprint: str,
    state: TrainingState,
    best_weights: dict[str, torch.Tensor] | None,
) -> None:
    """Write ``best.pt`` (when ``best_weights`` is given: this epoch is the best), then
    ``last.pt``, each atomically."""
    if best_weights is not None:
        # Before last.pt: a last.pt on disk always has its best epoch's weights beside it.
        header = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": state.epoch}
        atomic_save({**header, "model": best_weights}, best_path)
    atomic_save(state.payload(fingerprint), last_path)


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and CUDA) in weights_only-loadable types."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        # This process's GPU only: touching every GPU would create a context on each of them
        # from every rank.
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy["bit_generator"],
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
