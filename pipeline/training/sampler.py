"""The per-epoch, seeded, rank-sharded order of training images."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Seeded per-epoch shuffle, optionally capped, sharded across ranks.

    The order of epoch ``e`` depends only on ``(seed, e)``: a run resumed at epoch ``e`` sees
    exactly the batches an uninterrupted run sees, whatever the global RNG did before. The
    capped, shuffled list is padded by wrapping (as ``DistributedSampler`` does) so that every
    rank gets the same number of items, and rank ``r`` takes items ``r, r + world, ...``.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        max_items: int = 0,
    ) -> None:
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.total = min(n, max_items) if max_items > 0 else n
        self.per_rank = math.ceil(self.total / world_size) if self.total else 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (1-based in this module)."""
        self.epoch = epoch

    def indices(self, epoch: int) -> list[int]:
        """This rank's indices for ``epoch``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        order = order[: self.total]
        padded = self.per_rank * self.world_size
        while order and len(order) < padded:
            order += order[: padded - len(order)]
        return order[self.rank : padded : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(self.epoch))

    def __len__(self) -> int:
        return self.per_rank
