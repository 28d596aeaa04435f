"""The training loop: one loop for every architecture, resumable, deterministic on CPU.

What one run does (see :func:`train`):

- builds ``params.model.arch`` with the registry and its optimizers with
  ``model.configure_optimizers(adam_settings(arch, params.train.optimizer))`` (the arch's
  registered Adam defaults, with what params sets); every step is the model's own
  ``training_step`` (a supervised step by default, pix2pix's GAN step), so this loop never
  branches on the architecture (per-batch work: :mod:`pipeline.training.steps`);
- per batch, on the device: the bilateral filter BL and the problem encoding (A, B, C) turn a
  (flash, studio) pair into (network input, target); mixed precision (bf16, or fp16 with a
  ``GradScaler``) and channels_last only on CUDA;
- validation after every epoch (loss eq. 5 and accuracy eq. 7), early stop when the
  validation loss reaches ``target_val_loss`` or has not improved for ``patience`` epochs;
- a checkpoint after every epoch (:class:`pipeline.training.checkpoint.TrainingState`, with
  every rank's RNG states), written atomically; a later call with the same fingerprint (params
  that shape the result + the processed data; not the stop rules, nor ``train.epochs`` with a
  constant learning rate: raising it continues a finished run) resumes from it and ends with
  the same weights as a run that never stopped;
- learning rate per epoch: constant (the paper) or cosine decay over ``train.epochs``;
- CPU threads per ``train.threads`` (``auto``: this process's share of the cores among the
  training processes running at once, re-checked every epoch; :mod:`pipeline.runtime`);
- data parallel when launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set): every rank reads
  its shard of each epoch's shuffle, the networks of the step run inside
  ``DistributedDataParallel`` with BatchNorm over the global batch
  (:mod:`pipeline.training.distributed`), only rank 0 logs and writes files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pipeline.config import Params
from pipeline.core.bilateral import make_blur
from pipeline.core.losses import make_loss
from pipeline.io import write_json
from pipeline.models import adam_settings, save_model_file
from pipeline.runtime import (
    PROCESSES_DIR,
    TrainingProcesses,
    apply_threads,
    cap_interop_threads,
    make_autocast,
    resolve_amp,
    resolve_device,
)
from pipeline.tracking import repo_root
from pipeline.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_NAME,
    TrainingState,
    cpu_weights,
    fingerprint,
    write_checkpoints,
)
from pipeline.training.distributed import (
    DistInfo,
    gather_rng,
    init_distributed,
    plain_batchnorm,
    sync_batchnorm,
    wrap_networks,
)
from pipeline.training.outputs import (
    amp_name,
    device_name,
    final_metrics,
    log_epoch,
    log_final,
    log_start,
    model_meta,
    write_history_csv,
)
from pipeline.training.paths import TrainPaths
from pipeline.training.resume import read_resume_state
from pipeline.training.schedule import lr_factor, monitored_loss, stop_reason
from pipeline.training.setup import build_data, build_seeded_model
from pipeline.training.steps import (
    BatchCallback,
    MemoBlur,
    RunContext,
    train_epoch,
    validate,
)

log = logging.getLogger(__name__)


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
    threads = torch.get_num_threads()
    processes = TrainingProcesses(repo_root(paths.root) / PROCESSES_DIR)
    try:
        with processes:
            cap_interop_threads(apply_threads(params.train.threads, processes))
            device = resolve_device(params.train.device, info.local_rank)
            if device.type == "cpu":
                # Same seed, same weights on CPU. (CUDA keeps its fast non-deterministic kernels.)
                torch.use_deterministic_algorithms(True, warn_only=True)
            else:
                torch.backends.cudnn.benchmark = True
            trainer = _Trainer(params, paths, info, device, cache, processes)
            trainer.resume()
            return trainer.fit(start_tracking, on_batch_end, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
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
        processes: TrainingProcesses,
    ) -> None:
        self.params, self.paths, self.info, self.device = params, paths, info, device
        self.processes = processes
        tp = params.train
        self.amp_dtype = resolve_amp(tp.amp, device)
        self.channels_last = tp.channels_last and device.type == "cuda"
        self.ckpt_path = Path(paths.checkpoint_dir) / CHECKPOINT_NAME
        self.best_path = Path(paths.checkpoint_dir) / BEST_NAME
        self.data = build_data(params, paths.index_csv, Path(paths.root), info, device, cache)
        self.model = build_seeded_model(params, device, self.channels_last)
        if info.distributed:
            sync_batchnorm(self.model, device)  # shares parameters: build optimizers after
        adam = adam_settings(params.model.arch, tp.optimizer)  # the arch's defaults + params
        self.optimizers = self.model.configure_optimizers(adam)
        # The configured lr of every param group (a resumed optimizer state holds the last
        # epoch's scheduled lr, not this).
        self.base_lrs = {
            name: [group["lr"] for group in opt.param_groups]
            for name, opt in self.optimizers.items()
        }
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        blur = make_blur(params.bilateral, params.data.size)
        self.ctx = RunContext(
            model=self.model,
            nets=self.model.ddp_parts(),  # wrapped for DDP in fit(), after resume()
            optimizers=self.optimizers,
            loss_fn=make_loss(params.loss.centred),
            encoding=params.loss.encoding,
            blur_factory=lambda: MemoBlur(blur),
            device=device,
            autocast=make_autocast(device, self.amp_dtype),
            scaler=scaler,
            channels_last=self.channels_last,
            info=info,
            jitter=params.train.jitter,
            ssim_weight=params.loss.ssim_weight,
        )
        self.fingerprint = fingerprint(params, paths.index_csv, Path(paths.root), info.world_size)
        self.history: list[dict[str, Any]] = []
        self.best_val, self.best_epoch = math.inf, 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.start_epoch = 1
        self.run_id: str | None = None
        self.run: Any = None
        self.threads = torch.get_num_threads()

    # --- resume -------------------------------------------------------------------------------

    def resume(self) -> None:
        """Continue from the checkpoint when its fingerprint matches (every rank alike)."""
        state, best_state = read_resume_state(
            self.ckpt_path,
            self.best_path,
            self.fingerprint,
            self.params.train.epochs,
            self.info,
            on_bad=self.params.train.on_bad_checkpoint,
        )
        if state is None:
            # Distinct dropout/noise streams per rank; the weights were initialised alike.
            torch.manual_seed(self.params.train.seed + self.info.rank)
        else:
            state.restore(self.model, self.optimizers, self.ctx.scaler, self.info.rank)
            self.history = list(state.history)
            self.best_val, self.best_epoch = state.best_val, state.best_epoch
            self.start_epoch = state.epoch + 1
            self.run_id = state.run_id
            if best_state is None:
                # best.pt deleted or foreign: the latest weights become the best so far.
                if self.info.is_main:
                    log.warning(
                        "%s unusable: best weights restart from epoch %d",
                        self.best_path,
                        state.epoch,
                    )
                self.best_epoch = state.epoch
                self.best_val = monitored_loss(self.history[-1])
        self.best_state = best_state if best_state is not None else cpu_weights(self.model)

    # --- the loop -----------------------------------------------------------------------------

    def fit(
        self,
        start_tracking: Callable[[str | None], Any] | None,
        on_batch_end: BatchCallback | None,
        progress: bool,
    ) -> TrainResult:
        """Train until a stop rule fires, then write the outputs (rank 0)."""
        info, tp = self.info, self.params.train
        # After resume(): DDP's constructor copies rank 0's (resumed) weights to every rank.
        self.ctx.nets = wrap_networks(self.model.ddp_parts(), self.device, info)
        if start_tracking is not None and info.is_main:
            self.run = start_tracking(self.run_id)
        try:
            if info.is_main:
                images = (len(self.data.train_set), len(self.data.val_set))
                world, threads = info.world_size, self.threads
                log_start(self.params, self.device, self.amp_dtype, images, world, threads)
            reason = stop_reason(self.history, tp.epochs, tp.target_val_loss, tp.patience)
            epoch = self.start_epoch
            while reason is None:
                entry = self._epoch(epoch, on_batch_end, progress)
                self.history.append(entry)
                if monitored_loss(entry) < self.best_val:
                    self.best_val, self.best_epoch = monitored_loss(entry), epoch
                    self.best_state = cpu_weights(self.model)
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
            self.ctx.nets = self.model.ddp_parts()
            plain_batchnorm(self.model)

    def _epoch(self, epoch: int, on_batch_end: BatchCallback | None, progress: bool) -> dict:
        """Threads, learning rate, one pass over this epoch's shuffle, then validation."""
        tp = self.params.train
        threads = apply_threads(tp.threads, self.processes)  # trainings come and go
        if threads != self.threads and self.info.is_main:
            log.info("epoch %d: %d CPU thread(s) (was %d)", epoch, threads, self.threads)
        self.threads = threads
        self.data.sampler.set_epoch(epoch)
        factor = lr_factor(tp.lr_schedule, epoch, tp.epochs)
        for name, optimizer in self.optimizers.items():
            for group, base in zip(optimizer.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * factor
        stats = train_epoch(
            self.ctx, self.data.train_loader, epoch, tp.epochs, on_batch_end, progress
        )
        images = stats.images * self.info.world_size  # every rank ran batches of the same sizes
        val_loss, val_accuracy = validate(self.ctx, self.data.val_loader)
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": stats.means.get("loss"),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": next(iter(self.optimizers.values())).param_groups[0]["lr"],
            "epoch_seconds": round(stats.seconds, 3),
            "images_per_s": images / stats.seconds if stats.seconds > 0 else None,
            "images": images,
        }
        entry.update({f"train_{k}": v for k, v in stats.means.items() if k != "loss"})
        return entry

    def _end_of_epoch(self, entry: dict[str, Any], reason: str | None) -> None:
        """Log the epoch, rewrite plots/train.csv and write the checkpoint (rank 0)."""
        rngs = gather_rng(self.info)  # a collective: every rank takes part
        if not self.info.is_main:
            return
        epoch = entry["epoch"]
        log_epoch(entry, self.params.train.epochs, self.run)
        if self.paths.plots_file is not None:
            write_history_csv(Path(self.paths.plots_file), self.history)
        state = TrainingState(
            epoch=epoch,
            model=self.model.state_dict(),
            optimizers={k: o.state_dict() for k, o in self.optimizers.items()},
            scaler=self.ctx.scaler.state_dict() if self.ctx.scaler is not None else None,
            rng=rngs,
            best_val=self.best_val,
            best_epoch=self.best_epoch,
            history=self.history,
            run_id=getattr(self.run, "run_id", None) or self.run_id,
            stop_reason=reason,
        )
        best = self.best_state if self.best_epoch == epoch else None
        write_checkpoints(self.ckpt_path, self.best_path, self.fingerprint, state, best)

    def _finish(self, reason: str) -> TrainResult:
        """Best weights into the model; model file, metrics, CSV and MLflow (rank 0)."""
        info, paths, params = self.info, self.paths, self.params
        self.model.load_state_dict(self.best_state)
        metrics = final_metrics(
            self.history,
            self.best_val,
            self.best_epoch,
            reason,
            self.start_epoch - 1,
            {
                "device": device_name(self.device),
                "amp": amp_name(self.amp_dtype),
                "world_size": info.world_size,
                "threads": self.threads,
            },
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
                log_final(self.run, metrics, paths)
        if info.distributed:
            dist.barrier()  # nobody leaves before rank 0 has written the model
        return TrainResult(
            self.model, self.history, metrics, reason, self.start_epoch - 1, self.run, info
        )


__all__ = ["TrainPaths", "TrainResult", "train"]
