"""Tests of pipeline/training/sampler.py: the seeded, capped, rank-sharded epoch order."""

from __future__ import annotations

from pipeline.training.sampler import EpochSampler


def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch() -> None:
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(5)
    other_epoch = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == first  # same epoch, same order, whatever happened in between
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert other_epoch != first
    assert EpochSampler(10, seed=4).indices(2) != first


def test_epoch_sampler_caps_pads_and_shards() -> None:
    shards = [EpochSampler(10, 0, rank=r, world_size=3, max_items=7) for r in range(3)]
    parts = [s.indices(1) for s in shards]
    assert [len(p) for p in parts] == [3, 3, 3] == [len(s) for s in shards]
    capped = EpochSampler(10, 0, max_items=7).indices(1)
    # 7 distinct images, padded to 9 by wrapping round to the first two
    assert sorted(parts[0] + parts[1] + parts[2]) == sorted(capped + capped[:2])


def test_two_ranks_of_batch_b_see_what_one_process_of_batch_2b_sees() -> None:
    """Step k of 1 process with batch 2b covers the same images as step k of both ranks
    with batch b: the premise of the DDP equivalence test."""
    b = 2
    whole = EpochSampler(8, seed=1).indices(3)
    ranks = [EpochSampler(8, seed=1, rank=r, world_size=2).indices(3) for r in (0, 1)]
    for step in range(len(whole) // (2 * b)):
        together = ranks[0][step * b : (step + 1) * b] + ranks[1][step * b : (step + 1) * b]
        assert sorted(together) == sorted(whole[step * 2 * b : (step + 1) * 2 * b])
