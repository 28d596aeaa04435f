"""The model file (``models/model.pt``): one definition of what it holds, how it is written
and how every reader (enhance, export, evaluate, ``deepflash evaluate``) gets it back.

A sealed ``torch.save`` archive (:mod:`pipeline.models.integrity`) of plain values and tensors:
``{"format": "deepflash-model", "version": 2, "meta": ModelMeta as a dict, "state_dict",
"checksum"}``. :class:`ModelMeta` holds everything that using the model needs: the network
(arch, width, constructor options: rebuilt through the registry), the problem encoding and its
bilateral filter BL (Sec. 3, Fig. 3), the centred loss flag (eq. 5), the input size and the
crop settings the training crops were made with (Sec. 2.2), plus a record of the training.

Writing is deterministic: the archive is made in memory (its inner folder is always
``archive``, never a temporary file's name) and written with :func:`pipeline.io.write_bytes`
(atomic, 0644), so the same weights and meta give the same bytes. Reading checks the zip's
CRC-32s and the checksum, then requires every meta key (readers use no fallback defaults).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from pipeline.config import ENCODINGS, AugmentParams, BilateralParams, CropParams, Params
from pipeline.io import write_bytes
from pipeline.models.base import ImageModel
from pipeline.models.integrity import (
    DamagedFileError,
    ForeignFileError,
    SealedFileError,
    read_sealed,
    seal,
    verify,
)
from pipeline.models.registry import available_archs, build_skeleton, is_primitive, unwrap
from pipeline.runtime import resolve_device

FILE_FORMAT = "deepflash-model"
FILE_VERSION = 2
KIND = "model file"
#: Keys of the crop group that only say how fast the crop stage runs, not what it makes.
CROP_RUNTIME_KEYS = frozenset({"workers"})


class ModelFileError(SealedFileError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path, reason)


class _Meta(BaseModel):
    # Same rules as params.yaml: unknown keys refused, no type coercion, read-only.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


#: The crop group's settings that shape a crop (CropParams less CROP_RUNTIME_KEYS): derived,
#: so that a crop setting added to params.yaml travels in the model file without a second list.
CropSettings: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "CropSettings",
    __base__=_Meta,
    __doc__="The crop group's settings that decide what a face crop looks like.",
    **{
        name: (field.annotation, field)
        for name, field in CropParams.model_fields.items()
        if name not in CROP_RUNTIME_KEYS
    },
)


class TrainingRecord(_Meta):
    """How the weights were obtained (informative; readers do not need it). Nothing that
    varies between identical runs (times, paths): the file's bytes must not."""

    epochs: int = Field(ge=0)
    best_epoch: int = Field(ge=0)


class ModelMeta(_Meta):
    """Everything needed to use a trained model (the model file's ``meta``).

    Writers may leave out ``options`` (taken from the model), ``centred``, ``bilateral`` and
    ``crop`` (the params defaults) and ``training``; a file's meta must hold every key.
    """

    arch: str = Field(min_length=1)
    width: float = Field(gt=0)
    #: Constructor options besides width that rebuild the network (e.g. pix2pix num_downs).
    options: dict[str, Any] = Field(default_factory=dict)
    encoding: str
    size: int = Field(ge=1)
    centred: bool = True
    bilateral: BilateralParams = BilateralParams()
    crop: CropSettings = Field(default_factory=CropSettings)  # type: ignore[valid-type]
    #: The training augmentation's rotations (augment.rotations): enhance, like the crop
    #: stage, turns a face crop upright when the face's roll is outside their range.
    rotations: list[float] = Field(
        default_factory=lambda: list(AugmentParams().rotations), min_length=1
    )
    training: TrainingRecord | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value not in ENCODINGS:
            raise ValueError(f"unknown encoding {value!r}; expected one of {', '.join(ENCODINGS)}")
        return value

    @field_validator("options")
    @classmethod
    def _plain_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not is_primitive(value):
            raise ValueError("options must hold only str/int/float/bool/None, lists and dicts")
        return value

    @classmethod
    def from_params(
        cls, params: Params, training: TrainingRecord | Mapping[str, Any] | None = None
    ) -> ModelMeta:
        """The meta of a model trained with ``params`` (options are set when it is saved)."""
        crop = params.crop.model_dump(exclude=set(CROP_RUNTIME_KEYS))
        return cls.parse(
            {
                "arch": params.model.arch,
                "width": params.model.width,
                "encoding": params.loss.encoding,
                "size": params.data.size,
                "centred": params.loss.centred,
                "bilateral": params.bilateral.model_dump(),
                "crop": crop,
                "rotations": list(params.augment.rotations),
                "training": dict(training) if isinstance(training, Mapping) else training,
            },
            "model meta",
        )

    @classmethod
    def from_stored(cls, stored: Any, source: str | os.PathLike) -> ModelMeta:
        """Validate a meta read from a file: every key present, every value valid.

        Raises :class:`ModelFileError` naming ``source`` and each missing or bad key.
        """
        if not isinstance(stored, Mapping):
            raise ModelFileError(source, "model file has no meta dictionary")
        missing = _missing_keys(cls, stored)
        if missing:
            raise ModelFileError(source, f"model meta lacks {', '.join(missing)}")
        return cls.parse(stored, source)

    @classmethod
    def parse(cls, meta: Any, source: str | os.PathLike = "model meta") -> ModelMeta:
        """A :class:`ModelMeta` from a mapping (or itself); :class:`ModelFileError` on bad values."""
        if isinstance(meta, ModelMeta):
            return meta
        try:
            return cls.model_validate(dict(meta))
        except (ValidationError, TypeError) as error:
            raise ModelFileError(source, f"model meta: {_describe(error)}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-like dict (the form stored in the file and embedded in exports)."""
        return self.model_dump()

    def crop_settings(self) -> dict[str, Any]:
        """The crop settings as a dict (keyword arguments of the crop functions)."""
        return self.crop.model_dump()


def _missing_keys(model: type[BaseModel], stored: Mapping[str, Any], prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if name not in stored:
            missing.append(prefix + name)
            continue
        sub = field.annotation
        if (
            isinstance(sub, type)
            and issubclass(sub, BaseModel)
            and isinstance(stored[name], Mapping)
        ):
            missing += _missing_keys(sub, stored[name], f"{prefix}{name}.")
    return missing


def _describe(error: ValidationError | TypeError) -> str:
    if isinstance(error, TypeError):
        return str(error)
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- write


def model_file_bytes(model: torch.nn.Module, meta: ModelMeta | Mapping[str, Any]) -> bytes:
    """The bytes of the model file of ``model`` and ``meta`` (see :func:`save_model_file`)."""
    model = unwrap(model)
    if not isinstance(model, ImageModel) or not model.arch:
        raise TypeError(f"can only save registry models (got {type(model).__name__})")
    build = dict(model.build_kwargs) or {"width": 1.0}
    width = float(build.pop("width", 1.0))
    given = meta.to_dict() if isinstance(meta, ModelMeta) else dict(meta)
    if given.get("arch", model.arch) != model.arch:
        raise ValueError(f"meta arch {given['arch']!r} differs from the model's {model.arch!r}")
    if "width" in given and given["width"] != width:
        raise ValueError(f"meta width {given['width']!r} differs from the model's {width!r}")
    given.update(arch=model.arch, width=width, options=build)
    checked = ModelMeta.parse(given, "model meta")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    payload = seal(
        {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "meta": checked.to_dict(),
            "state_dict": state,
        }
    )
    buffer = io.BytesIO()  # in memory: the zip's inner folder is "archive", not a temp name
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_model_file(
    path: str | os.PathLike, model: torch.nn.Module, meta: ModelMeta | Mapping[str, Any]
) -> Path:
    """Write ``model`` (weights on CPU) and ``meta`` to ``path``: atomic, fsynced, mode 0644,
    the same bytes for the same weights and meta. Returns the path.

    ``meta``: a :class:`ModelMeta` or a mapping of its fields; arch, width and options come
    from the model (a meta that names another arch or width is refused).
    """
    try:
        data = model_file_bytes(model, meta)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    return write_bytes(path, data, durable=True)


# --------------------------------------------------------------------------- read


def _read_payload(path: str | os.PathLike) -> tuple[dict[str, Any], ModelMeta]:
    """The verified payload and meta of a model file (see :func:`load_model_file`)."""
    path = Path(path)
    try:
        payload = read_sealed(path, KIND)
    except (DamagedFileError, FileNotFoundError):
        raise
    except ForeignFileError as error:
        raise ModelFileError(path, f"not a model file ({error.reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ModelFileError(path, f"not a DeepFlash model file (no '{FILE_FORMAT}' header)")
    version = payload.get("version")
    if not isinstance(version, int) or version > FILE_VERSION:
        raise ModelFileError(
            path,
            f"model file version {version!r} is newer than this code ({FILE_VERSION}); "
            "update the pipeline",
        )
    if version < FILE_VERSION:
        raise ModelFileError(
            path,
            f"model file version {version} has no checksum and cannot be verified; "
            "train again (dvc repro) to write a version 2 file",
        )
    verify(payload, path, KIND)
    meta = ModelMeta.from_stored(payload.get("meta"), path)
    if meta.arch not in available_archs():
        raise ModelFileError(
            path, f"unknown arch {meta.arch!r}; available: {', '.join(available_archs())}"
        )
    return payload, meta


def read_model_meta(path: str | os.PathLike) -> ModelMeta:
    """The meta of a model file, after the same checks as :func:`load_model_file`."""
    return _read_payload(path)[1]


def load_model_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[ImageModel, ModelMeta]:
    """Read a model file: (model built through the registry, in eval mode on ``map_location``,
    its meta).

    Raises FileNotFoundError; :class:`pipeline.models.integrity.DamagedFileError` ("model file
    damaged: <path> (checksum mismatch)", "(zip CRC error)", ...) for a file whose bytes
    changed; :class:`ModelFileError` for files that are not model files, come from another
    format version, lack meta keys, name an unknown arch, or whose weights do not fit.
    """
    payload, meta = _read_payload(path)
    # Built on the meta device without initialisation, then given the file's tensors.
    model = build_skeleton(meta.arch, meta.width, **meta.options)
    try:
        model.load_state_dict(payload["state_dict"], assign=True)
    except (RuntimeError, KeyError, TypeError) as error:
        raise ModelFileError(
            path, f"weights do not fit a {meta.arch} of width {meta.width}: {error}"
        ) from None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ModelFileError(path, f"weights do not fit a {meta.arch}: tensors missing")
    return model.to(map_location).eval(), meta


def load_for_inference(
    path: str | os.PathLike, device: str | torch.device = "auto"
) -> tuple[ImageModel, ModelMeta, torch.device]:
    """A model file ready to run: (model in eval mode on ``device``, meta, the device).

    ``device`` as :func:`pipeline.runtime.resolve_device` takes it (auto, cpu, cuda, cuda:N);
    raises its DeviceError, or the errors of :func:`load_model_file`.
    """
    target = resolve_device(device)
    model, meta = load_model_file(path, map_location="cpu")
    return model.to(target).eval(), meta, target


__all__ = [
    "CROP_RUNTIME_KEYS",
    "FILE_FORMAT",
    "FILE_VERSION",
    "CropSettings",
    "ModelFileError",
    "ModelMeta",
    "TrainingRecord",
    "load_for_inference",
    "load_model_file",
    "model_file_bytes",
    "read_model_meta",
    "save_model_file",
]
