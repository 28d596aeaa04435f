"""The training loop: one loop for every architecture, resumable, deterministic on CPU.

What one run does (see :func:`train`):

- builds ``params.model.arch`` with the registry and its optimizers with
  ``model.configure_optimizers(params.train.optimizer.<arch>)``; every step is the model's own
  ``training_step`` (a supervised step by default, pix2pix's GAN step), so this loop never
  branches on the architecture;
- per batch, on the device: the bilateral filter BL and the problem encoding (A, B, C) turn a
  (flash, studio) pair into (network input, target); mixed precision (bf16, or fp16 with a
  ``GradScaler``) and channels_last only on CUDA;
- validation after every epoch (loss eq. 5 and accuracy eq. 7), early stop when the
  validation loss reaches ``target_val_loss`` or has not improved for ``patience`` epochs;
- a checkpoint after every epoch (model, optimizers, scaler, RNG states of python, numpy and
  torch on every rank, best validation loss, history), written atomically; a later call with
  the same fingerprint (params that shape the result + the processed data) resumes from it and
  ends with the same weights as a run that never stopped. ``patience``, ``target_val_loss``,
  ``num_workers`` and (with a constant learning rate) ``train.epochs`` are not in the
  fingerprint: raising ``epochs`` continues a finished run;
- learning rate per epoch: constant (the paper) or cosine decay over ``train.epochs``;
- data parallel when launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set): every rank reads
  its shard of each epoch's shuffle, gradients are averaged across ranks during the backward
  pass, only rank 0 logs and writes files.

Why not wrap the model in ``torch.nn.parallel.DistributedDataParallel``: its reducer only
synchronises gradients of a forward pass made through the wrapper, but the step belongs to the
model (``training_step`` calls ``self(...)``, and pix2pix calls its generator and its
discriminator, three times, directly in two backward passes, which the reducer cannot follow). :class:`GradientAverager` does the reducer's job
(all-reduce every gradient as autograd produces it, divided by the world size) with
per-parameter hooks, so any ``training_step`` works unchanged, and it broadcasts rank 0's
buffers (BatchNorm statistics) before every step as DDP's ``broadcast_buffers`` does.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.config import Params
from pipeline.core.bilateral import bilateral_filter, sigma_s_for
from pipeline.core.encodings import make_target, network_input
from pipeline.core.losses import make_loss
from pipeline.core.metrics import accuracy
from pipeline.io import write_json
from pipeline.models import ModelMeta, adam_settings, arch_options, build_model, save_model_file
from pipeline.runtime import make_autocast, resolve_amp, resolve_device
from pipeline.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    atomic_save,
    fingerprint,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from pipeline.training.data import DataIndexError, PairDataset, read_index
from pipeline.training.distributed import (
    DistInfo,
    GradientAverager,
    all_reduce_sum,
    init_distributed,
)
from pipeline.training.sampler import EpochSampler

log = logging.getLogger(__name__)

PLOT_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy")

BatchCallback = Callable[[int, int, dict[str, float]], None]


# --------------------------------------------------------------------------------------------
# Paths, results, distributed set-up
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainPaths:
    """Where training reads and writes (the stage passes the dvc.yaml paths)."""

    index_csv: Path = Path("data/processed/index.csv")
    root: Path = Path(".")
    model_file: Path = Path("models/model.pt")
    checkpoint_dir: Path = Path("models/checkpoints")
    metrics_file: Path | None = Path("metrics/train.json")
    plots_file: Path | None = Path("plots/train.csv")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; files are written by rank 0 only)."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    stop_reason: str
    resumed_from_epoch: int
    run: Any = None
    dist: DistInfo = field(default_factory=DistInfo)


# --------------------------------------------------------------------------------------------
# Sampling, gradient averaging, stop rule
# --------------------------------------------------------------------------------------------


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the Adam lr in ``epoch`` (1-based) of ``epochs``: 1 for ``constant``;
    ``cosine``: 1 in the first epoch down to 0.5 (1 + cos(pi (E-1)/E)) in the last."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / max(epochs, 1)))
    raise ValueError(f"unknown lr schedule {schedule!r}")


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
    last = history[-1]
    monitored = [_monitored(h) for h in history]
    if target_val_loss > 0 and monitored[-1] <= target_val_loss:
        return "target_val_loss"
    if patience > 0:
        best_at = int(np.argmin(monitored))
        if len(history) - 1 - best_at >= patience:
            return "patience"
    if last["epoch"] >= epochs:
        return "epochs"
    return None


def _monitored(entry: dict[str, Any]) -> float:
    # The validation loss, or the training loss when there is no validation split.
    value = entry.get("val_loss")
    return float(entry["train_loss"] if value is None else value)


# --------------------------------------------------------------------------------------------
# Fingerprint and checkpoints
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Per-batch work
# --------------------------------------------------------------------------------------------


class MemoBlur:
    """BL with memory: encoding C asks for BL(x) for the input and again for the target (and
    validation for accuracy); the filter is the costly part, so each tensor is filtered once."""

    def __init__(self, sigma_s: float, sigma_r: float, mode: str) -> None:
        self.sigma_s, self.sigma_r, self.mode = sigma_s, sigma_r, mode
        self._memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        hit = self._memo.get(id(image))
        if hit is not None and hit[0] is image:
            return hit[1]
        out = bilateral_filter(image, self.sigma_s, self.sigma_r, mode=self.mode)
        # Keeping ``image`` alive keeps its id from being reused by another tensor.
        self._memo[id(image)] = (image, out)
        return out


def encode_batch(
    flash: torch.Tensor,
    studio: torch.Tensor,
    encoding: str,
    blur: MemoBlur,
    device: torch.device,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flash on the device, network input, target) of one batch; BL runs on the device."""
    non_blocking = device.type == "cuda"
    x = flash.to(device, non_blocking=non_blocking)
    o = studio.to(device, non_blocking=non_blocking)
    with torch.no_grad():
        inputs = network_input(x, encoding, blur)
        targets = make_target(x, o, encoding, blur)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = targets.contiguous(memory_format=torch.channels_last)
    return x, inputs, targets


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    encoding: str,
    blur_factory: Callable[[], MemoBlur],
    device: torch.device,
    autocast: Callable[[], Any],
    channels_last: bool,
    info: DistInfo,
) -> tuple[float | None, float | None]:
    """Mean loss (eq. 5) and accuracy (eq. 7) over the validation images of every rank."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, accuracy sum, images
    for flash, studio in loader:
        blur = blur_factory()
        x, inputs, targets = encode_batch(flash, studio, encoding, blur, device, channels_last)
        with autocast():
            outputs = model(inputs)
        outputs = outputs.float().contiguous()
        targets = targets.contiguous()
        n = outputs.shape[0]
        loss = loss_fn(outputs, targets)
        bl_x = blur(x)
        totals[0] += float(loss.mean()) * n
        totals[1] += float(accuracy(outputs, targets, bl_x).sum())
        totals[2] += n
    totals = all_reduce_sum(totals, device, info)
    model.train()
    if totals[2] == 0:
        return None, None
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """plots/train.csv: one row per epoch (epoch, train_loss, val_loss, val_accuracy, ...)."""
    extra = sorted({k for h in history for k in h} - set(PLOT_COLUMNS))
    columns = list(PLOT_COLUMNS) + extra
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for entry in history:
            writer.writerow({k: ("" if entry.get(k) is None else entry.get(k)) for k in columns})
    os.replace(tmp, path)


def model_meta(params: Params, extra: dict[str, Any] | None = None) -> ModelMeta:
    """Everything needed to use a trained model later (the model file's meta); ``extra``:
    the training record (epochs, best_epoch, fingerprint)."""
    return ModelMeta.from_params(params, training=extra)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(
    params: Params,
    paths: TrainPaths | None = None,
    *,
    start_tracking: Callable[[str | None], Any] | None = None,
    on_batch_end: BatchCallback | None = None,
    progress: bool = True,
    cache: bool | None = None,
) -> TrainResult:
    """Train ``params.model.arch`` on the processed pairs; resume from a matching checkpoint.

    Args:
        params: the validated params (groups data, model, loss, bilateral, train, mlflow).
        paths: inputs and outputs (default: the dvc.yaml paths relative to the cwd).
        start_tracking: called once on rank 0 with the MLflow run id stored in the checkpoint
            (None on a fresh start); returns a handle with ``run_id``, ``log_metrics``,
            ``log_artifact``, ``end`` (``pipeline.tracking.start_run``). None: no tracking.
        on_batch_end: called after every training step with (epoch, batch, step stats).
        progress: show tqdm progress bars (rank 0 only).
        cache: keep decoded images in memory; None: when they fit in ``train.cache_mb``.

    Returns the trained model (weights of the best validation epoch), its history and
    metrics; rank 0 has written the model file, checkpoints, metrics JSON and per-epoch CSV.
    """
    paths = paths or TrainPaths()
    info, owns_group = init_distributed()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        device = resolve_device(params.train.device, info.local_rank)
        if device.type == "cpu":
            # Same seed, same weights on CPU. (CUDA keeps its fast non-deterministic kernels.)
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
        trainer = _Trainer(params, paths, info, device, cache)
        trainer.resume()
        return trainer.fit(start_tracking, on_batch_end, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        if owns_group:
            dist.destroy_process_group()


class _Trainer:
    """State of one training run: data, model, optimizers, history, best weights."""

    def __init__(
        self,
        params: Params,
        paths: TrainPaths,
        info: DistInfo,
        device: torch.device,
        cache: bool | None,
    ) -> None:
        self.params, self.paths, self.info, self.device = params, paths, info, device
        tp = params.train
        self.amp_dtype = resolve_amp(tp.amp, device)
        self.autocast = make_autocast(device, self.amp_dtype)
        self.channels_last = tp.channels_last and device.type == "cuda"
        self.root = Path(paths.root)
        self.ckpt_path = Path(paths.checkpoint_dir) / CHECKPOINT_NAME
        self.best_path = Path(paths.checkpoint_dir) / BEST_NAME
        self._build_data(cache)
        self._build_model()
        sigma_s = sigma_s_for(params.data.size, params.bilateral.sigma_s_fraction)
        self.blur_factory = lambda: MemoBlur(
            sigma_s, params.bilateral.sigma_r, params.bilateral.mode
        )
        self.fingerprint = fingerprint(params, paths.index_csv, self.root, info.world_size)
        self.history: list[dict[str, Any]] = []
        self.best_val = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.start_epoch = 1
        self.run_id: str | None = None
        self.run: Any = None
        self.averager: GradientAverager | None = None

    def _build_data(self, cache: bool | None) -> None:
        tp, size, index = self.params.train, self.params.data.size, self.paths.index_csv
        if cache is None:
            # Cached as uint8: 6 bytes per pixel and pair.
            cache = len(read_index(index)) * size * size * 6 <= tp.cache_mb * 2**20
        self.train_set = PairDataset(index, "train", root=self.root, size=size, cache=cache)
        self.val_set = PairDataset(index, "val", root=self.root, size=size, cache=cache)
        if len(self.train_set) == 0:
            raise DataIndexError(f"{index}: no images of split 'train'")
        if len(self.val_set) == 0 and self.info.is_main:
            log.warning("%s: no validation images; early stopping watches the training loss", index)
        info = self.info
        self.sampler = EpochSampler(
            len(self.train_set), tp.seed, True, info.rank, info.world_size, tp.max_images_per_epoch
        )
        loader_kwargs: dict[str, Any] = {
            "num_workers": tp.num_workers,
            "pin_memory": self.device.type == "cuda",
            "persistent_workers": tp.num_workers > 0,
            # Worker seeds come from this generator, not from the global RNG, which then
            # advances the same way with or without workers and in a resumed run.
            "generator": torch.Generator().manual_seed(tp.seed),
        }
        self.train_loader = DataLoader(
            self.train_set,
            batch_size=tp.batch_size,
            sampler=self.sampler,
            # Full batches (BatchNorm, same step count on every rank) whenever possible.
            drop_last=len(self.sampler) >= tp.batch_size,
            **loader_kwargs,
        )
        shard = list(range(info.rank, len(self.val_set), info.world_size))
        self.val_loader = DataLoader(
            torch.utils.data.Subset(self.val_set, shard),
            batch_size=tp.batch_size,
            shuffle=False,
            **loader_kwargs,
        )

    def _build_model(self) -> None:
        params, tp, arch = self.params, self.params.train, self.params.model.arch
        random.seed(tp.seed)
        np.random.seed(tp.seed)
        torch.manual_seed(tp.seed)
        weights = params.model.encoder_weights
        kwargs = {"encoder_weights": weights} if weights else {}
        if "head_init" in arch_options(arch):
            kwargs["head_init"] = params.model.head_init
        self.model = build_model(arch, params.model.width, size=params.data.size, **kwargs)
        multiple = getattr(self.model, "size_multiple", 1)
        if params.data.size % multiple:
            raise ValueError(
                f"data.size {params.data.size} is not a multiple of {multiple}, which {arch} needs"
            )
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizers = self.model.configure_optimizers(adam_settings(arch, tp.optimizer))
        # The configured lr of every param group (a resumed optimizer state holds the last
        # epoch's scheduled lr, not this).
        self.base_lrs = {
            name: [group["lr"] for group in opt.param_groups]
            for name, opt in self.optimizers.items()
        }
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.loss_fn = make_loss(params.loss.centred)

    # --- resume -------------------------------------------------------------------------------

    def resume(self) -> None:
        """Load the checkpoint when its fingerprint matches (rank 0 reads, every rank loads)."""
        state: dict[str, Any] | None = None
        best_state: dict[str, Any] | None = None
        epochs = self.params.train.epochs
        if self.info.is_main:
            state, why = load_checkpoint(
                self.ckpt_path, self.fingerprint, self.params.train.on_bad_checkpoint
            )
            if state is not None and state["epoch"] > epochs:
                why = (
                    f"{self.ckpt_path} has {state['epoch']} epochs, more than train.epochs={epochs}"
                )
                state = None
            if state is not None:
                best, _ = load_checkpoint(
                    self.best_path, self.fingerprint, self.params.train.on_bad_checkpoint
                )
                if best is not None and best.get("epoch") == state["best_epoch"]:
                    best_state = best["model"]
                log.info("resuming from %s (%d epoch(s) done)", self.ckpt_path, state["epoch"])
            elif why != "no checkpoint":
                log.warning("%s: training from scratch", why)
        if self.info.distributed:
            # Rank 0 read the files; every rank gets the same decision and states.
            shared = [state, best_state]
            dist.broadcast_object_list(shared, src=0)
            state, best_state = shared
        if state is None:
            # Distinct dropout/noise streams per rank; the weights were initialised alike.
            torch.manual_seed(self.params.train.seed + self.info.rank)
        else:
            self.model.load_state_dict(state["model"])
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.history = list(state["history"])
            self.best_val = float(state["best_val"])
            self.best_epoch = int(state["best_epoch"])
            self.start_epoch = int(state["epoch"]) + 1
            self.run_id = state.get("run_id")
            rngs = state["rng"]
            set_rng_state(rngs[self.info.rank] if self.info.rank < len(rngs) else rngs[0])
            if best_state is None:
                # best.pt deleted or foreign: the latest weights become the best so far.
                if self.info.is_main:
                    log.warning(
                        "%s unusable: best weights restart from epoch %d",
                        self.best_path,
                        state["epoch"],
                    )
                self.best_epoch = int(state["epoch"])
                self.best_val = _monitored(self.history[-1])
        self.best_state = best_state if best_state is not None else _cpu_state(self.model)

    # --- the loop -----------------------------------------------------------------------------

    def fit(
        self,
        start_tracking: Callable[[str | None], Any] | None,
        on_batch_end: BatchCallback | None,
        progress: bool,
    ) -> TrainResult:
        """Train until a stop rule fires, then write the outputs (rank 0)."""
        info, tp = self.info, self.params.train
        if info.distributed:
            self.averager = GradientAverager(self.model, info.world_size)
            self.averager.broadcast_parameters()
        if start_tracking is not None and info.is_main:
            self.run = start_tracking(self.run_id)
        try:
            self._announce()
            reason = stop_reason(self.history, tp.epochs, tp.target_val_loss, tp.patience)
            epoch = self.start_epoch
            while reason is None:
                entry = self._epoch(epoch, on_batch_end, progress)
                self.history.append(entry)
                if _monitored(entry) < self.best_val:
                    self.best_val, self.best_epoch = _monitored(entry), epoch
                    self.best_state = _cpu_state(self.model)
                reason = stop_reason(self.history, tp.epochs, tp.target_val_loss, tp.patience)
                self._end_of_epoch(entry, reason)
                epoch += 1
            return self._finish(reason)
        except BaseException:
            # A Python-level failure closes the MLflow run as FAILED; a SIGKILL leaves it
            # RUNNING and the resumed training reopens it (its id is in the checkpoint).
            if self.run is not None:
                self.run.end("FAILED")
            raise
        finally:
            if self.averager is not None:
                self.averager.remove()

    def _announce(self) -> None:
        if not self.info.is_main:
            return
        p = self.params
        log.info(
            "training %s (width %g, encoding %s) on %s: %d train / %d val images of %d px, "
            "batch %d x %d process(es), amp %s",
            p.model.arch,
            p.model.width,
            p.loss.encoding,
            _device_name(self.device),
            len(self.train_set),
            len(self.val_set),
            p.data.size,
            p.train.batch_size,
            self.info.world_size,
            _amp_name(self.amp_dtype),
        )

    def _epoch(self, epoch: int, on_batch_end: BatchCallback | None, progress: bool) -> dict:
        """One pass over this epoch's shuffle, then validation; returns the history entry."""
        info, tp, encoding = self.info, self.params.train, self.params.loss.encoding
        self.sampler.set_epoch(epoch)
        self.model.train()
        factor = lr_factor(tp.lr_schedule, epoch, tp.epochs)
        for name, optimizer in self.optimizers.items():
            for group, base in zip(optimizer.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * factor
        sums: dict[str, float] = {}
        steps = seen = 0
        started = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{tp.epochs}",
            disable=not (progress and info.is_main),
            leave=False,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        for batch, (flash, studio) in enumerate(bar, start=1):
            _, inputs, targets = encode_batch(
                flash, studio, encoding, self.blur_factory(), self.device, self.channels_last
            )
            if self.averager is not None:
                self.averager.broadcast_buffers()
            stats = self.model.training_step(
                inputs, targets, self.loss_fn, self.optimizers, self.autocast, self.scaler
            )
            steps += 1
            seen += flash.shape[0]
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            bar.set_postfix(loss=f"{sums.get('loss', 0.0) / steps:.5f}", refresh=False)
            if on_batch_end is not None:
                on_batch_end(epoch, batch, stats)
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        images = seen * info.world_size  # every rank runs as many batches of the same sizes
        if self.averager is not None:
            self.averager.broadcast_buffers()
        keys = sorted(sums)
        means = torch.tensor([sums[k] / max(steps, 1) for k in keys], dtype=torch.float64)
        means = all_reduce_sum(means, self.device, info) / info.world_size
        train_stats = dict(zip(keys, means.tolist(), strict=True))
        val_loss, val_accuracy = validate(
            self.model,
            self.val_loader,
            self.loss_fn,
            encoding,
            self.blur_factory,
            self.device,
            self.autocast,
            self.channels_last,
            info,
        )
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_stats.get("loss"),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": next(iter(self.optimizers.values())).param_groups[0]["lr"],
            "epoch_seconds": round(seconds, 3),
            "images_per_s": images / seconds if seconds > 0 else None,
            "images": images,
        }
        entry.update({f"train_{k}": v for k, v in train_stats.items() if k != "loss"})
        return entry

    def _end_of_epoch(self, entry: dict[str, Any], reason: str | None) -> None:
        """Log the epoch, rewrite plots/train.csv and write the checkpoint (rank 0)."""
        rngs = _gather_rng(self.info)  # a collective: every rank takes part
        if not self.info.is_main:
            return
        epoch = entry["epoch"]
        log.info(
            "epoch %d/%d: train_loss %.5f val_loss %s val_accuracy %s (%.1f s, %.1f images/s)",
            epoch,
            self.params.train.epochs,
            entry["train_loss"],
            _fmt(entry["val_loss"], "%.5f"),
            _fmt(entry["val_accuracy"], "%.2f"),
            entry["epoch_seconds"],
            entry["images_per_s"] or 0.0,
        )
        if self.run is not None:
            logged = {k: v for k, v in entry.items() if k not in ("epoch", "images")}
            self.run.log_metrics(logged, step=epoch)
        if self.paths.plots_file is not None:
            write_history_csv(Path(self.paths.plots_file), self.history)
        header = {"version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint, "epoch": epoch}
        if self.best_epoch == epoch:
            # Before last.pt: a last.pt on disk always has its best epoch's weights beside it.
            atomic_save({**header, "model": self.best_state}, self.best_path)
        atomic_save(
            {
                **header,
                "model": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rngs,
                "best_val": self.best_val,
                "best_epoch": self.best_epoch,
                "history": self.history,
                "run_id": getattr(self.run, "run_id", None) or self.run_id,
                "stop_reason": reason,
            },
            self.ckpt_path,
        )

    def _finish(self, reason: str) -> TrainResult:
        """Best weights into the model; model file, metrics, CSV and MLflow (rank 0)."""
        info, paths, params = self.info, self.paths, self.params
        self.model.load_state_dict(self.best_state)
        metrics = _final_metrics(
            self.history,
            self.best_val,
            self.best_epoch,
            reason,
            self.device,
            self.amp_dtype,
            info,
            self.start_epoch - 1,
        )
        metrics["parameters"] = sum(p.numel() for p in self.model.parameters())
        if info.is_main:
            # No fingerprint (it hashes file times): the same training, the same file bytes.
            extra = {"epochs": len(self.history), "best_epoch": self.best_epoch}
            save_model_file(paths.model_file, self.model, model_meta(params, extra))
            if paths.metrics_file is not None:
                write_json(paths.metrics_file, metrics)
            if paths.plots_file is not None:
                write_history_csv(Path(paths.plots_file), self.history)
            log.info(
                "stopped (%s) after %d epoch(s); best val_loss %.5f at epoch %d; wrote %s",
                reason,
                len(self.history),
                self.best_val,
                self.best_epoch,
                paths.model_file,
            )
            if self.run is not None:
                final = {
                    f"final_{k}": metrics[k] for k in ("train_loss", "val_loss", "val_accuracy")
                }
                final.update(
                    {k: metrics[k] for k in ("epochs_run", "best_val_loss", "images_per_s")}
                )
                self.run.log_metrics(final)
                for path in (paths.metrics_file, paths.plots_file):
                    if path is not None:
                        self.run.log_artifact(path)
                if params.mlflow.log_model:
                    self.run.log_artifact(paths.model_file)
                self.run.end("FINISHED")
        if info.distributed:
            dist.barrier()  # nobody leaves before rank 0 has written the model
        return TrainResult(
            self.model, self.history, metrics, reason, self.start_epoch - 1, self.run, info
        )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _gather_rng(info: DistInfo) -> list[dict[str, Any]]:
    mine = rng_state()
    if not info.distributed:
        return [mine]
    everyone: list[Any] = [None] * info.world_size
    dist.all_gather_object(everyone, mine)
    return everyone


def _amp_name(dtype: torch.dtype | None) -> str:
    return "off" if dtype is None else str(dtype).removeprefix("torch.")


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern % value


def _final_metrics(
    history: list[dict[str, Any]],
    best_val: float,
    best_epoch: int,
    reason: str,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
    resumed_from: int,
) -> dict[str, Any]:
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
        "device": _device_name(device),
        "amp": _amp_name(amp_dtype),
        "world_size": info.world_size,
        "stop_reason": reason,
        "resumed_from_epoch": resumed_from,
    }


__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "DistInfo",
    "EpochSampler",
    "GradientAverager",
    "MemoBlur",
    "TrainPaths",
    "TrainResult",
    "all_reduce_sum",
    "atomic_save",
    "encode_batch",
    "fingerprint",
    "init_distributed",
    "load_checkpoint",
    "lr_factor",
    "make_autocast",
    "model_meta",
    "resolve_amp",
    "resolve_device",
    "rng_state",
    "set_rng_state",
    "stop_reason",
    "train",
    "validate",
    "write_history_csv",
]
