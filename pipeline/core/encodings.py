"""The paper's three problem encodings (Capece et al. 2019, Fig. 3, eqs. 2 and 8).

x is the flash image, o the (aligned) studio image, both RGB in [0, 1]; BL is the bilateral
filter (a callable, e.g. ``lambda im: bilateral_filter(im, sigma_s, sigma_r)``).

==========  =============  =================================  =========================
encoding    network input  target t                           reconstruction (eq. 2)
==========  =============  =================================  =========================
A           x              o                                  y
B           x              (x - o + 1) / 2                    x - 2y + 1
C (paper)   BL(x)          (BL(x) - BL(o) + 1) / 2            x - 2y + 1
==========  =============  =================================  =========================

The preconditioned ground truth (eq. 8) is what the reconstruction would be if the network
predicted its target exactly: o_bar = x - 2t + 1 (A: t itself). For A and B it equals o; for
C it is x - BL(x) + BL(o): the studio image's smooth lighting with the flash image's details.

Every function works on numpy arrays and torch tensors alike (any shape, element-wise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

ENCODINGS: tuple[str, ...] = ("A", "B", "C")

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Blur = Callable[[Array], Array]


def _check(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return encoding


def network_input(x: Array, encoding: str, blur: Blur) -> Array:
    """What the network sees: x for A and B, BL(x) for C."""
    return blur(x) if _check(encoding) == "C" else x


def make_target(x: Array, o: Array, encoding: str, blur: Blur) -> Array:
    """Training target t: o (A), (x - o + 1)/2 (B), (BL(x) - BL(o) + 1)/2 (C)."""
    encoding = _check(encoding)
    if encoding == "A":
        return o
    if encoding == "B":
        return (x - o + 1.0) / 2.0
    return (blur(x) - blur(o) + 1.0) / 2.0


def reconstruct(x: Array, y: Array, encoding: str) -> Array:
    """Eq. 2: the studio-lit estimate from the network output y (A: y; B, C: x - 2y + 1)."""
    return y if _check(encoding) == "A" else x - 2.0 * y + 1.0


def preconditioned_ground_truth(x: Array, t: Array, encoding: str) -> Array:
    """Eq. 8: o_bar = x - 2t + 1, the reconstruction of a perfect prediction (A: t)."""
    return t if _check(encoding) == "A" else x - 2.0 * t + 1.0
