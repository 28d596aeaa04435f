"""The networks: the archs, the registry that builds them by name, their model file.

Archs: ``deepflash`` (the paper's VGG-16 + HDRCNN-style decoder, Sec. 4), ``hdrnet`` (Gharbi et
al. 2017), ``pix2pix`` (Isola et al. 2017), each an :class:`ImageModel`
(:mod:`pipeline.models.base`) registered by name for ``model.arch``
(:mod:`pipeline.models.registry`: :func:`build_model`, Adam defaults, :func:`check_params`).

The model file (:mod:`pipeline.models.format`): :class:`ModelMeta`, :func:`save_model_file`,
:func:`load_model_file`, :func:`load_for_inference`, :func:`read_model_meta`.
"""

from __future__ import annotations

# The archs register themselves when imported; the file format builds them through the registry.
from pipeline.models import deepflash, hdrnet, pix2pix  # noqa: F401
from pipeline.models.base import ImageModel
from pipeline.models.format import (
    ModelFileError,
    ModelMeta,
    load_for_inference,
    load_model_file,
    read_model_meta,
    save_model_file,
)
from pipeline.models.registry import (
    AdamConfig,
    adam_defaults,
    adam_settings,
    arch_options,
    available_archs,
    build_model,
    check_params,
    is_primitive,
    register_arch,
    unwrap,
)

__all__ = [
    "AdamConfig",
    "ImageModel",
    "ModelFileError",
    "ModelMeta",
    "adam_defaults",
    "adam_settings",
    "arch_options",
    "available_archs",
    "build_model",
    "check_params",
    "is_primitive",
    "load_for_inference",
    "load_model_file",
    "read_model_meta",
    "register_arch",
    "save_model_file",
    "unwrap",
]
