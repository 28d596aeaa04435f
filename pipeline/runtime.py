"""Where and how tensors run: device, mixed precision (one place for every stage and the CLI)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch


class DeviceError(RuntimeError):
    """The device asked for does not exist on this machine; the message says what to use."""


def resolve_device(choice: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present (GPU ``local_rank`` of this node), else the CPU.

    ``cpu``, ``cuda`` and ``cuda:N`` as given; CUDA asked for on a machine without it, or an
    unknown name, raises :class:`DeviceError`.
    """
    if isinstance(choice, torch.device):
        return choice
    if choice == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if choice in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {choice!r}: CUDA is not available here (use cpu or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {choice!r}: CUDA is not available here (use cpu or auto)")
        return torch.device(choice)
    if choice == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {choice!r} (auto, cpu, cuda or cuda:N)")


def resolve_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: None on CPU (full precision) and for ``off``; bf16 when supported."""
    if device.type != "cuda" or choice == "off":
        return None
    if choice == "fp16":
        return torch.float16
    if choice == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def make_autocast(device: torch.device, dtype: torch.dtype | None) -> Callable[[], Any]:
    """Zero-argument factory of the autocast context the steps run under."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)
