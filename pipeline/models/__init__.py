"""Network registry (``model.arch`` picks one by name) and the model file.

Archs: ``deepflash`` (the paper's VGG-16 + HDRCNN-style decoder), ``hdrnet`` (Gharbi et al.
2017), ``pix2pix`` (Isola et al. 2017). ``build_model(arch, width, **kwargs)`` builds one;
``width`` scales every channel count (1.0 = the published network).

Model file (``models/model.pt``): ``torch.save`` of a dict of primitives and tensors, read back
with ``torch.load(weights_only=True)`` (no pickled code):
``{"format": "deepflash-model", "version": 1, "arch", "build_kwargs", "meta", "state_dict"}``.
``meta`` carries what using the model needs: arch, width, encoding, size, bilateral
{sigma_s_fraction, sigma_r, mode}, centred (see pipeline/train.py ``model_meta``).
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.models.base import ImageModel

FILE_FORMAT = "deepflash-model"
FILE_VERSION = 1

_REGISTRY: dict[str, type[ImageModel]] = {}


def register_arch(name: str) -> Callable[[type[ImageModel]], type[ImageModel]]:
    """Class decorator: make an :class:`ImageModel` subclass buildable as ``name``."""

    def decorate(cls: type[ImageModel]) -> type[ImageModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"arch {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.arch = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_archs() -> tuple[str, ...]:
    """Names accepted by :func:`build_model`, sorted."""
    return tuple(sorted(_REGISTRY))


def arch_options(arch: str) -> list[str]:
    """Constructor options (besides ``width``) that the arch ``arch`` accepts."""
    if arch not in _REGISTRY:
        raise ValueError(f"unknown model arch {arch!r}; available: {', '.join(available_archs())}")
    params = inspect.signature(_REGISTRY[arch].__init__).parameters
    return [name for name in params if name not in ("self", "width")]


def build_model(
    arch: str, width: float = 1.0, size: int | None = None, **kwargs: Any
) -> ImageModel:
    """Build the network ``arch`` at channel multiplier ``width`` (extra kwargs go to its class).

    ``size`` (the square training side) lets an arch adapt its depth to small images, e.g.
    pix2pix's U-Net uses fewer downsamplings below 256 px; explicit kwargs win.
    """
    if arch not in _REGISTRY:
        raise ValueError(f"unknown model arch {arch!r}; available: {', '.join(available_archs())}")
    cls = _REGISTRY[arch]
    if size is not None:
        kwargs = {**cls.kwargs_for_size(size), **kwargs}
    accepted = arch_options(arch)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model arch {arch!r} does not take {', '.join(unknown)} "
            f"(it takes: {', '.join(accepted) or 'width only'})"
        )
    model = cls(width=width, **kwargs)
    # What rebuilds the same network from a model file: the weights file of the encoder is
    # not needed (the state dict holds the weights) and may not exist where the file is used.
    model.build_kwargs = {"width": float(width)}
    model.build_kwargs.update(
        {k: v for k, v in kwargs.items() if k != "encoder_weights" and _is_primitive(v)}
    )
    return model


def _is_primitive(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_primitive(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_primitive(v) for k, v in value.items())
    return False


def _unwrap(model: nn.Module) -> nn.Module:
    # torch.compile wraps in ``_orig_mod``; DataParallel/DDP in ``module``.
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def save_model_file(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` (weights on CPU) and ``meta`` to ``path`` atomically; returns the path.

    ``meta`` must be JSON-like (str/int/float/bool/None, lists, dicts); its arch and width
    default to the model's and must agree with it.
    """
    model = _unwrap(model)
    if not isinstance(model, ImageModel) or not model.arch:
        raise TypeError(f"{path}: can only save registry models (got {type(model).__name__})")
    build_kwargs = dict(model.build_kwargs) or {"width": 1.0}
    meta = {"arch": model.arch, "width": build_kwargs.get("width", 1.0), **dict(meta)}
    if meta["arch"] != model.arch:
        raise ValueError(
            f"{path}: meta arch {meta['arch']!r} differs from the model's {model.arch!r}"
        )
    if not _is_primitive(meta):
        raise ValueError(f"{path}: meta must hold only str/int/float/bool/None, lists and dicts")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "arch": model.arch,
        "build_kwargs": build_kwargs,
        "meta": meta,
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_model_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[ImageModel, dict[str, Any]]:
    """Read a model file: (model in eval mode on ``map_location``, meta).

    Raises ``ValueError`` naming the file and the reason for files that are not model files,
    come from a newer format, name an unknown arch, or whose weights do not fit.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # unpickling / zip errors: not a torch file at all
        raise ValueError(
            f"{path}: not a model file ({error.__class__.__name__}: {error})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a DeepFlash model file (no '{FILE_FORMAT}' header)")
    if int(payload.get("version", 0)) > FILE_VERSION:
        raise ValueError(
            f"{path}: model file version {payload['version']} is newer than this code "
            f"({FILE_VERSION}); update the pipeline"
        )
    arch = payload["arch"]
    if arch not in _REGISTRY:
        raise ValueError(
            f"{path}: unknown arch {arch!r}; available: {', '.join(available_archs())}"
        )
    kwargs = dict(payload.get("build_kwargs") or {})
    width = kwargs.pop("width", 1.0)
    model = build_model(arch, width, **kwargs)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit a {arch} of width {width}: {error}") from None
    return model.to(map_location).eval(), dict(payload.get("meta") or {})


# Register the archs (imports at the bottom: the modules use register_arch above).
from pipeline.models import deepflash, hdrnet, pix2pix  # noqa: E402, F401

__all__ = [
    "ImageModel",
    "available_archs",
    "arch_options",
    "build_model",
    "load_model_file",
    "register_arch",
    "save_model_file",
]
