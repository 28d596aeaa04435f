"""Typed schema of params.yaml: the one way to load and validate the pipeline's parameters.

Stages call :func:`load_params`; library code in ``pipeline/`` receives plain values or the
group models defined here and never reads params.yaml itself.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENCODINGS = ("A", "B", "C")
SPLITS = ("train", "val", "test")
Device = Literal["auto", "cpu", "cuda"]


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key and the fix."""


class _Group(BaseModel):
    # Unknown keys are typos more often than not: refuse them. Strict types: YAML's `true` must
    # not become the integer 1 (`train.epochs: true`), nor "3" the number 3.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _distinct(values: list[Any]) -> list[Any]:
    """A list of choices where a repeat is a typo (two equal rotations, a split named twice)."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be distinct; repeated: {', '.join(repeated)}")
    return values


class DataParams(_Group):
    """Where the raw pairs are and what size the network sees."""

    raw_dir: str = "data/raw/demo"
    layout: Literal["pairs", "faid", "yaleb"] = "pairs"
    size: int = Field(512, ge=32, multiple_of=32)


class DemoParams(_Group):
    """Synthetic flash/studio generator (pipeline/datasets/demo/)."""

    seed: int = 0
    n_subjects: int = Field(6, ge=3)
    poses: int = Field(2, ge=1)
    width: int = Field(768, ge=128)
    height: int = Field(1024, ge=128)
    portraits_dir: str | None = None
    max_rotation_deg: float = Field(3.0, ge=0, le=20)
    max_scale: float = Field(0.03, ge=0, lt=0.3)
    max_shift_frac: float = Field(0.02, ge=0, lt=0.2)
    max_shear: float = Field(0.02, ge=0, lt=0.3)
    noise_sigma: float = Field(0.01, ge=0, le=0.2)


class IngestParams(_Group):
    """Raw-layout reading, validation and the subject-level split."""

    seed: int = 0
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    min_side: int = Field(64, ge=1)
    max_pixels: int = Field(100_000_000, ge=1)
    aspect_tolerance: float = Field(0.02, ge=0)
    max_reject_fraction: float = Field(0.5, ge=0, le=1)
    yaleb_studio_lights: list[str] = Field(default_factory=lambda: ["P00A+000E+20"], min_length=1)

    @model_validator(mode="after")
    def _ratios(self) -> IngestParams:
        if self.train + self.val >= 1:
            raise ValueError("ingest.train + ingest.val must be below 1 (test gets the rest)")
        return self


class RegisterParams(_Group):
    """Mutual-information affine registration and its plausibility checks (pipeline/align/)."""

    max_side: int = Field(512, ge=64)
    optimizer: Literal["regular_step", "one_plus_one"] = "regular_step"
    iterations: int = Field(200, ge=1)
    levels: int = Field(3, ge=1, le=6)
    histogram_bins: int = Field(50, ge=8)
    # Share of the finest level's pixels sampled by Mattes MI (at least 8192): 0.1 keeps a
    # 512 px pair under 0.5 s on one core at ~0.1 px error; 1.0 = every pixel (MATLAB).
    sampling_fraction: float = Field(0.1, gt=0, le=1)
    seed: int = 0
    on_failure: Literal["identity", "reject"] = "identity"
    # Shading normalisation before MI: log luminance minus its blur of this sigma (fraction of
    # the longer side); 0 = plain luminance (the paper's imregister set-up).
    shading_sigma: float = Field(0.05, ge=0, le=1)
    # Global capture search before the local optimisation: +- ranges of the similarity grid.
    capture_rotation_deg: float = Field(4.0, ge=0, le=45)
    capture_scale: float = Field(0.04, ge=0, le=0.3)
    capture_shift: float = Field(0.06, ge=0, le=0.3)
    starts: int = Field(1, ge=1, le=10)
    # Plausibility (faces after warping, MI and motion against the folder): suspect pairs are
    # rejected, or kept with the reason recorded.
    on_suspect: Literal["reject", "keep"] = "reject"
    face_check: bool = True
    min_folder_pairs: int = Field(8, ge=3)
    outlier_z: float = Field(5.0, gt=0)
    workers: int = Field(2, ge=1)
    preview_side: int = Field(256, ge=32)


class CropParams(_Group):
    """Face detection and the square face crop (pipeline/faces/)."""

    # auto: upright HOG, then HOG on turned copies (tilted faces), then the CNN as last resort.
    detector: Literal["auto", "hog", "cnn"] = "auto"
    detect_max_side: int = Field(800, ge=64)
    # face_recognition's number_of_times_to_upsample: 1 finds faces down to ~40 px of the
    # detection copy (5 % of 800) in ~0.12 s; 0 only ~80 px faces but 4x faster.
    upsample: int = Field(1, ge=0, le=3)
    cnn_max_side: int = Field(400, ge=64)  # the CNN's copy: faces >= ~20 % of it; seconds per photo
    margin: float = Field(0.4, ge=0, le=3)
    # A square leaving the photo is shifted inside, then shrunk down to this margin, before padding.
    min_margin: float = Field(0.0, ge=0, le=3)
    pad_mode: Literal["constant", "edge", "reflect"] = "constant"
    on_missing: Literal["center", "reject"] = "center"
    workers: int = Field(2, ge=1)  # pairs cropped in parallel processes

    @model_validator(mode="after")
    def _min_margin_within_margin(self) -> CropParams:
        if self.min_margin > self.margin:
            raise ValueError(
                f"min_margin ({self.min_margin}) must not exceed margin ({self.margin})"
            )
        return self


class AugmentParams(_Group):
    """The paper's 20x paired augmentation (pipeline/augment.py)."""

    rotations: list[float] = Field(
        default_factory=lambda: [-20.0, -10.0, 0.0, 10.0, 20.0], min_length=1
    )
    border_mode: Literal["constant", "reflect", "replicate"] = "constant"
    splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train", "val", "test"]
    )

    _distinct_lists = field_validator("rotations", "splits")(_distinct)
    workers: int = Field(2, ge=1)  # pairs augmented (PNG-encoded) in parallel processes
    # false: the crop once + each variant's matrix, the loader warps (the same pixels, ~20x
    # less disk and augment time: README "Scale"); true: every variant as PNGs to look at.
    materialise: bool = False


class BilateralParams(_Group):
    """The bilateral filter BL of the encodings (pipeline/core/bilateral.py)."""

    sigma_s_fraction: float = Field(0.03, gt=0, le=0.5)
    sigma_r: float = Field(0.4, gt=0)
    mode: Literal["per_channel", "joint"] = "per_channel"


class ModelParams(_Group):
    """Network choice (pipeline/models registry)."""

    # A name of the model registry (pipeline/models), which is the one list of archs: it is
    # checked there (the check_params stage), so this module needs no torch import.
    arch: str = Field("deepflash", min_length=1)
    width: float = Field(1.0, gt=0, le=4)
    encoder_weights: str | None = None
    # deepflash's last layer: xavier (the paper) or zero (the untrained net is the identity).
    head_init: Literal["xavier", "zero"] = "xavier"


class LossParams(_Group):
    """Problem encoding and loss (pipeline/core/encodings.py, pipeline/core/losses.py)."""

    encoding: Literal["A", "B", "C"] = "C"
    centred: bool = True
    # + weight x (1 - SSIM) of the reconstruction (eq. 2) vs the preconditioned ground truth
    # (eq. 8) in training (pipeline/core/losses.py: with_ssim); 0 = off (the paper).
    ssim_weight: float = Field(0.0, ge=0, le=1)


class AdamParams(_Group):
    """Adam settings of one architecture; a key left out (None) keeps the arch's own default,
    which the arch declares in the model registry (its paper's values)."""

    lr: float | None = Field(None, gt=0)
    beta1: float | None = Field(None, ge=0, lt=1)
    beta2: float | None = Field(None, ge=0, lt=1)
    eps: float | None = Field(None, gt=0)


class TrainParams(_Group):
    """Training loop (pipeline/training/)."""

    seed: int = 0
    epochs: int = Field(62, ge=1)
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(0, ge=0)
    device: Device = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    target_val_loss: float = Field(0.0, ge=0)
    patience: int = Field(0, ge=0)
    max_images_per_epoch: int = Field(0, ge=0)
    # Decoded images are kept in memory (pipeline/training/data.py) when they fit in this many MiB.
    cache_mb: int = Field(2048, ge=0)
    # Learning rate per epoch: constant (the paper) or cosine decay from the Adam lr to ~0 at
    # the last epoch (less noisy final weights on small data sets).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # Random similarity transform + mirror per training image and batch (pipeline/training/
    # jitter.py), on top of the augment stage's fixed variants; 0 = off (the paper).
    jitter: float = Field(0.0, ge=0, le=3)
    # CPU threads of a training process: auto = the machine's cores divided by the training
    # processes running at once (pipeline/runtime.py, re-checked every epoch), or a number.
    threads: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    # Adam per arch name (train.optimizer.<arch>.lr ...); names checked against the registry.
    optimizer: dict[str, AdamParams] = Field(default_factory=dict)
    # A checkpoint whose checksum or zip CRCs fail is never resumed: restart = train from
    # scratch (saying so), stop = end with an error and leave the file for inspection.
    on_bad_checkpoint: Literal["restart", "stop"] = "restart"


class EvaluateParams(_Group):
    """Evaluation protocol (pipeline/evaluation/evaluate.py)."""

    seed: int = 0
    protocol_images: int = Field(30, ge=1)
    samples: int = Field(4, ge=0)
    batch_size: int = Field(8, ge=1)
    # Evaluation runs in float32 (no autocast) so the metrics do not depend on the device.
    device: Device = "auto"


class MlflowParams(_Group):
    """MLflow conventions (pipeline/tracking/)."""

    experiment: str = Field("deepflash", min_length=1)
    # The model file as an MLflow logged model, registered per arch (pipeline/tracking/models.py).
    log_model: bool = True
    role: Literal["candidate", "baseline"] = "candidate"


# `register` shadows ABCMeta.register on the class only; instances return the group.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Params(_Group):
    """The whole params.yaml."""

    data: DataParams = DataParams()
    demo: DemoParams = DemoParams()
    ingest: IngestParams = IngestParams()
    register: RegisterParams = RegisterParams()
    crop: CropParams = CropParams()
    augment: AugmentParams = AugmentParams()
    bilateral: BilateralParams = BilateralParams()
    model: ModelParams = ModelParams()
    loss: LossParams = LossParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        # An empty group in YAML (`demo:`) loads as None: treat it as "all defaults".
        return {} if value is None else value


def _format_error(error: ValidationError, source: str) -> str:
    # One line per bad key, each naming the file and the key: a stage prints it and exits.
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if part != "__root__") or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            message = "unknown key" + (f" in group '{parent}'" if parent else " (unknown group)")
            allowed = _allowed_keys(parent)
            if allowed:
                message += f"; allowed keys: {', '.join(allowed)}"
        elif "input" in item and item["type"] != "missing":
            message += f" (got {item['input']!r})"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def _allowed_keys(dotted_group: str) -> list[str]:
    model: type[BaseModel] = Params
    for part in [p for p in dotted_group.split(".") if p]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        if not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def validate_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` naming every bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise ParamsError(_format_error(error, source)) from None


def load_params(path: str | Path = "params.yaml", *, exit_on_error: bool = False) -> Params:
    """Read and validate params.yaml (the one params loader of the project).

    ``exit_on_error`` (stage scripts): print the error lines, no traceback, and exit 2.
    """
    if exit_on_error:
        try:
            return load_params(path)
        except ParamsError as error:
            print(error, file=sys.stderr)
            raise SystemExit(2) from None
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the repository root)") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of groups")
    return validate_params(raw, str(path))


def flatten(params: Params | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys (MLflow params, `dvc exp run -S` overrides)."""
    data = params.model_dump() if isinstance(params, BaseModel) else params
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def override_args(path: str | Path) -> list[str]:
    """`-S key=value` arguments for `dvc exp run` from a partial params file (params-paper.yaml)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    validate_params(raw, str(path))
    args: list[str] = []
    for key, value in flatten(raw).items():
        args += [
            "-S",
            f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}",
        ]
    return args
