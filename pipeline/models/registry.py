"""Network registry: ``model.arch`` picks one by name; the one source of the arch vocabulary.

``build_model(arch, width, **kwargs)`` builds one; ``width`` scales every channel count (1.0 =
the published network). Each arch declares, where it registers (:func:`register_arch`), its
constructor options (its ``__init__`` arguments besides ``width``) and its Adam defaults (its
paper's); params.yaml's ``model.arch`` and ``train.optimizer.<arch>`` are checked against this
registry (:func:`check_params`, run by the ``check_params`` stage), so ``pipeline/config.py``
(imported by every stage, and kept free of torch) repeats no arch name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from pipeline.config import ParamsError
from pipeline.models.base import ImageModel


@dataclass(frozen=True)
class AdamConfig:
    """Resolved Adam settings of one arch (fits :class:`pipeline.models.base.AdamSettings`)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


_REGISTRY: dict[str, type[ImageModel]] = {}
_ADAM: dict[str, AdamConfig] = {}


def register_arch(name: str, *, adam: AdamConfig) -> Callable[[type[ImageModel]], type[ImageModel]]:
    """Class decorator: make an :class:`ImageModel` subclass buildable as ``name``.

    ``adam``: the arch's Adam defaults (its paper's), used for every setting that params.yaml's
    ``train.optimizer.<name>`` leaves out.
    """

    def decorate(cls: type[ImageModel]) -> type[ImageModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"arch {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.arch = name
        _REGISTRY[name] = cls
        _ADAM[name] = adam
        return cls

    return decorate


def available_archs() -> tuple[str, ...]:
    """Names accepted by :func:`build_model`, sorted."""
    return tuple(sorted(_REGISTRY))


def _check_arch(arch: str) -> type[ImageModel]:
    if arch not in _REGISTRY:
        raise ValueError(f"unknown model arch {arch!r}; available: {', '.join(available_archs())}")
    return _REGISTRY[arch]


def arch_options(arch: str) -> list[str]:
    """Constructor options (besides ``width``) that the arch ``arch`` accepts."""
    params = inspect.signature(_check_arch(arch).__init__).parameters
    return [name for name in params if name not in ("self", "width")]


def adam_defaults(arch: str) -> AdamConfig:
    """The Adam settings ``arch`` declared when it registered (its paper's)."""
    _check_arch(arch)
    return _ADAM[arch]


def adam_settings(arch: str, overrides: Mapping[str, Any] | None = None) -> AdamConfig:
    """The Adam settings of ``arch``: its defaults, with what ``overrides[arch]`` sets.

    ``overrides`` is params.yaml's ``train.optimizer`` (arch name -> AdamParams, whose unset
    keys are None). Every name in it must be a registered arch: a typo would otherwise leave
    the arch it meant on its defaults without a word.
    """
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(_REGISTRY))
    if unknown:
        raise ValueError(
            f"train.optimizer.{unknown[0]}: unknown arch; available: {', '.join(available_archs())}"
        )
    chosen = overrides.get(arch)
    given = {} if chosen is None else _as_dict(chosen)
    base = adam_defaults(arch)
    values = {key: getattr(base, key) for key in ("lr", "beta1", "beta2", "eps")}
    values.update({k: float(v) for k, v in given.items() if v is not None and k in values})
    return AdamConfig(**values)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return dict(value.model_dump()) if hasattr(value, "model_dump") else dict(vars(value))


def check_params(params: Any, source: str = "params.yaml") -> None:
    """Check the params that name archs against the registry (what config.py cannot know).

    ``model.arch`` must be a registered arch and every key of ``train.optimizer`` too; raises
    :class:`pipeline.config.ParamsError` with one line naming the file and the key.
    """
    names = ", ".join(available_archs())
    if params.model.arch not in _REGISTRY:
        raise ParamsError(
            f"{source}: model.arch: unknown arch {params.model.arch!r}; available: {names}"
        )
    for arch in params.train.optimizer:
        if arch not in _REGISTRY:
            raise ParamsError(f"{source}: train.optimizer.{arch}: unknown arch; available: {names}")


def build_model(
    arch: str, width: float = 1.0, size: int | None = None, **kwargs: Any
) -> ImageModel:
    """Build the network ``arch`` at channel multiplier ``width`` (extra kwargs go to its class).

    ``size`` (the square training side) lets an arch adapt its depth to small images, e.g.
    pix2pix's U-Net uses fewer downsamplings below 256 px; explicit kwargs win.
    """
    cls = _check_arch(arch)
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
        {k: v for k, v in kwargs.items() if k != "encoder_weights" and is_primitive(v)}
    )
    return model


# In-place random fills: on the meta device torch runs them through its Python references,
# whose first call imports torch._dynamo (seconds); their values would be replaced anyway.
_RANDOM_FILLS = frozenset(
    getattr(torch.Tensor, name)
    for name in ("normal_", "uniform_", "random_", "exponential_", "log_normal_", "cauchy_")
)


class _NoInit(TorchFunctionMode):
    """Skips weight initialisation: ``torch.nn.init``'s functions and random fills return
    their tensor untouched (everything else runs as usual)."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if func in _RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs.get("tensor")
        return func(*args, **(kwargs or {}))


def build_skeleton(arch: str, width: float = 1.0, **kwargs: Any) -> ImageModel:
    """:func:`build_model` on the meta device, without weight initialisation: the network's
    structure, for a state dict to be loaded with ``load_state_dict(..., assign=True)``.

    Inference never pays for initialising weights the model file replaces a moment later (at
    width 1.0 most of a load, and the import of torch._dynamo it drags in).
    """
    with torch.device("meta"), _NoInit():
        return build_model(arch, width, **kwargs)


def is_primitive(value: Any) -> bool:
    """True for JSON-like values: str/int/float/bool/None, and lists/dicts of them."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(is_primitive(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_primitive(v) for k, v in value.items())
    return False


def unwrap(model: nn.Module) -> nn.Module:
    """The registry model inside torch.compile (``_orig_mod``) and DataParallel/DDP wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model
