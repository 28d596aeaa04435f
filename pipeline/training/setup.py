"""What a run trains on and what it trains: the data loaders and the seeded model."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from pipeline.config import Params
from pipeline.models import arch_options, build_model
from pipeline.models.base import ImageModel
from pipeline.training.data import DataIndexError, PairDataset, read_index
from pipeline.training.distributed import DistInfo
from pipeline.training.sampler import EpochSampler

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """The training and validation sets of a run and this rank's loaders over them."""

    train_set: PairDataset
    val_set: PairDataset
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader


def build_data(
    params: Params,
    index_csv: Path,
    root: Path,
    info: DistInfo,
    device: torch.device,
    cache: bool | None,
) -> TrainData:
    """Datasets of the splits ``train`` and ``val`` of ``index_csv`` and this rank's loaders:
    training batches from the seeded per-epoch shuffle (:class:`EpochSampler`, sharded by
    rank), validation over this rank's share of the validation images."""
    tp, size = params.train, params.data.size
    if cache is None:
        # Cached as uint8: 6 bytes per pixel and pair; on-the-fly variants of a pair share
        # its crop (pipeline/training/data.py), so the distinct images count.
        images = {row["flash"] for row in read_index(index_csv)}
        cache = len(images) * size * size * 6 <= tp.cache_mb * 2**20
    train_set = PairDataset(index_csv, "train", root=root, size=size, cache=cache)
    val_set = PairDataset(index_csv, "val", root=root, size=size, cache=cache)
    if len(train_set) == 0:
        raise DataIndexError(f"{index_csv}: no images of split 'train'")
    if len(val_set) == 0 and info.is_main:
        log.warning("%s: no validation images; early stopping watches the training loss", index_csv)
    sampler = EpochSampler(
        len(train_set), tp.seed, True, info.rank, info.world_size, tp.max_images_per_epoch
    )
    loader_kwargs: dict[str, Any] = {
        "num_workers": tp.num_workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": tp.num_workers > 0,
        # Worker seeds come from this generator, not from the global RNG, which then advances
        # the same way with or without workers and in a resumed run.
        "generator": torch.Generator().manual_seed(tp.seed),
    }
    train_loader = DataLoader(
        train_set,
        batch_size=tp.batch_size,
        sampler=sampler,
        # Full batches (BatchNorm, same step count on every rank) whenever possible.
        drop_last=len(sampler) >= tp.batch_size,
        **loader_kwargs,
    )
    shard = list(range(info.rank, len(val_set), info.world_size))
    val_loader = DataLoader(
        Subset(val_set, shard), batch_size=tp.batch_size, shuffle=False, **loader_kwargs
    )
    return TrainData(train_set, val_set, sampler, train_loader, val_loader)


def build_seeded_model(params: Params, device: torch.device, channels_last: bool) -> ImageModel:
    """``params.model.arch`` initialised from ``train.seed`` (python, numpy and torch RNGs are
    seeded, so every rank builds the same weights), on ``device``."""
    tp, arch, size = params.train, params.model.arch, params.data.size
    random.seed(tp.seed)
    np.random.seed(tp.seed)
    torch.manual_seed(tp.seed)
    weights = params.model.encoder_weights
    kwargs: dict[str, Any] = {"encoder_weights": weights} if weights else {}
    if "head_init" in arch_options(arch):
        kwargs["head_init"] = params.model.head_init
    model = build_model(arch, params.model.width, size=size, **kwargs)
    multiple = getattr(model, "size_multiple", 1)
    if size % multiple:
        raise ValueError(f"data.size {size} is not a multiple of {multiple}, which {arch} needs")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
