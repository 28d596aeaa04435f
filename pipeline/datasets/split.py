"""Subject-level train/val/test split: every subject's pairs land in exactly one split."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

SPLITS = ("train", "val", "test")


def split_sizes(n: int, train: float, val: float) -> tuple[int, int, int]:
    """Subjects per split for ``n`` subjects; test gets the rest (1 - train - val).

    Rounded half up. Train always gets at least one subject; with three or more subjects, val
    (when its ratio is above 0) and test get at least one each; two subjects go to train and test.
    """
    if n <= 0:
        return 0, 0, 0
    if n == 1:
        return 1, 0, 0
    if n == 2:
        return 1, 0, 1

    def half_up(x: float) -> int:
        return math.floor(x + 0.5)

    n_val = max(1 if val > 0 else 0, half_up(n * val))
    n_test = max(1, half_up(n * (1 - train - val)))
    while n - n_val - n_test < 1:  # train keeps at least one: shrink the larger of the others
        if n_val >= n_test and n_val > (1 if val > 0 else 0):
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def split_subjects(subjects: Iterable[str], train: float, val: float, seed: int) -> dict[str, str]:
    """Map each subject to "train" | "val" | "test": seeded shuffle of the sorted subjects."""
    unique = sorted(set(subjects))
    n_train, n_val, _ = split_sizes(len(unique), train, val)
    order = np.random.default_rng(seed).permutation(len(unique))
    assignment = {}
    for rank, index in enumerate(order):
        split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        assignment[unique[index]] = split
    return assignment
