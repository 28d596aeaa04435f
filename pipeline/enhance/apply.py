"""Full-resolution inference on a real photo: every face relit, blended back without a seam.

The paper applied its network to 512x512 face crops and pasted the results into the original
photos by hand (segmentation in Photoshop). Here it is automatic, for every face of a photo:

1. read the photo upright (EXIF orientation) with :func:`pipeline.io.read_image`;
2. find every face (:func:`pipeline.faces.detect.detect_faces`);
3. per face, the training crop: the crop stage's own square box and crop/resize functions, at the
   model's input size (the model file's meta says which size, encoding and bilateral filter);
4. run the network on all crops;
5. reconstruct at the photo's own resolution. For encodings B and C the network predicts a
   *difference* image, ``x - pred = 2y - 1``, which is smooth (C: the difference of two
   bilateral-filtered images), so ``y`` is upsampled to the crop's size in the photo and eq. 2
   (``pred = x - 2y + 1``) is applied there, to the photo's own pixels: the result keeps every
   fine detail of the photo (pores, hair, noise) that a 512 px crop cannot hold. For encoding A
   the network predicts the image itself, which can only be resized up;
6. blend each face back with a feathered elliptical mask (smooth falloff to exactly 0 inside the
   crop), so pixels away from faces are bit-identical to the input and there is no seam;
7. write the result with the input's EXIF (orientation reset to 1: the pixels are upright now)
   and ICC profile.

Every geometric step maps photo pixels to crop pixels with one affine (half-pixel centres, the
convention of ``cv2.resize``), and only the region under a mask is ever resampled, so a 12 MP
photo costs about as much as its faces.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pipeline.core.bilateral import bilateral_filter, sigma_s_for
from pipeline.core.encodings import network_input, reconstruct
from pipeline.faces import detect as face_lib
from pipeline.io import ImageReadError, read_image, write_image
from pipeline.models.format import ModelMeta
from pipeline.runtime import DeviceError, resolve_device

log = logging.getLogger(__name__)

#: Extensions taken from folders and globs, and accepted as outputs.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Default width of the mask's soft edge, as a fraction of the ellipse radius.
DEFAULT_FEATHER = 0.35
#: Half-axes of the blend ellipse as fractions of half the crop side (x, y): the face and hair
#: are taller than wide; both stay inside the crop so the mask is exactly 0 at its border.
MASK_AXES = (0.86, 0.98)
#: Network precisions: float32, or bfloat16 autocast (opt-in speed on CPUs with native bf16).
PRECISIONS = ("fp32", "bf16")
#: Crops sent through the network at once (bounds memory for group photos at width 1.0).
MAX_BATCH = 4
_EXIF_ORIENTATION = 0x0112
_JPEG_QUALITY = 95
#: The stages timed per photo (EnhanceResult.timings keys).
STAGES = ("read", "detect", "crop", "model", "reconstruct", "blend", "write")


class EnhanceError(RuntimeError):
    """A user-facing problem (missing or wrong model file, bad arguments); message says why."""


@dataclass(frozen=True)
class Face:
    """One processed face: ``box`` (top, right, bottom, left) and square ``crop`` (x0, y0, side)
    in photo pixels, and ``region`` (x0, y0, x1, y1): the photo pixels its mask may change."""

    box: tuple[int, int, int, int]
    crop: tuple[int, int, int]
    region: tuple[int, int, int, int]


@dataclass
class EnhanceResult:
    """What happened to one input file (``status``: enhanced | copied_no_face |
    skipped_no_face | failed), with per-stage seconds in ``timings``."""

    source: Path
    output: Path | None
    status: str
    faces: list[Face] = field(default_factory=list)
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- model loading


def load_enhancer(
    model_path: str | os.PathLike, device: str | torch.device = "auto"
) -> tuple[torch.nn.Module, dict[str, Any], torch.device]:
    """Load a model file for inference: (model in eval mode on ``device``, meta, device).

    Raises :class:`EnhanceError` naming the file when it is missing, damaged ("model file
    damaged: <path> (checksum mismatch)"), not a model file written by
    :func:`pipeline.models.save_model_file`, or lacks a meta key. ``meta`` is
    :class:`pipeline.models.ModelMeta` as a dict (every key present).
    """
    from pipeline.models import load_for_inference

    path = Path(model_path)
    if not path.exists():
        raise EnhanceError(
            f"{path}: model file not found (train one with `dvc repro` or pass --model)"
        )
    if not path.is_file():
        raise EnhanceError(f"{path}: model path is not a file")
    try:
        model, meta, target = load_for_inference(path, device)
    except (DeviceError, ValueError) as error:  # our messages name the file and the reason
        raise EnhanceError(str(error)) from None
    if target.type == "cpu":
        # oneDNN convolutions are ~1.5x faster in NHWC on CPU; results equal to float rounding.
        model = model.to(memory_format=torch.channels_last)
    return model, meta.to_dict(), target


def parse_meta(meta: Any, source: str | os.PathLike = "model") -> ModelMeta:
    """``meta`` (a dict of :class:`pipeline.models.ModelMeta` fields) validated by that one
    schema; :class:`EnhanceError` naming the bad key otherwise."""
    if not isinstance(meta, (dict, ModelMeta)):
        raise EnhanceError(f"{source}: model file has no meta dictionary")
    try:
        return ModelMeta.parse(meta, source)
    except ValueError as error:
        raise EnhanceError(str(error)) from None


def check_meta(meta: Any, source: str | os.PathLike = "model") -> None:
    """Raise :class:`EnhanceError` when ``meta`` is not a valid model meta."""
    parse_meta(meta, source)


def crop_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The crop settings the model's training crops were made with (meta ``crop``)."""
    return parse_meta(meta).crop_settings()


# --------------------------------------------------------------------------- the per-photo core


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def face_mask(
    shape: tuple[int, int],
    crop: tuple[float, float, float],
    origin: tuple[int, int] = (0, 0),
    feather: float = DEFAULT_FEATHER,
) -> np.ndarray:
    """Feathered elliptical blend weight in [0, 1] for the square ``crop`` (x0, y0, side).

    Returns a float32 array of ``shape`` (h, w) whose pixel (i, j) is photo pixel
    (origin[0] + j, origin[1] + i). The ellipse (half-axes :data:`MASK_AXES` of half the side,
    centred on the crop) is 1 inside ``1 - feather`` of its radius and falls to exactly 0 at the
    radius along a quintic smoothstep (continuous value, slope and curvature: no visible edge).
    """
    if not 0 < feather <= 1:
        raise ValueError(f"feather must be in (0, 1], got {feather}")
    x0, y0, side = crop
    cx, cy = x0 + side / 2.0, y0 + side / 2.0
    rx, ry = MASK_AXES[0] * side / 2.0, MASK_AXES[1] * side / 2.0
    h, w = shape
    # Pixel centres of the photo are at integer coordinates; crop x0 is a pixel's left edge.
    dx = ((np.arange(w, dtype=np.float32) + np.float32(origin[0] + 0.5 - cx)) / np.float32(rx)) ** 2
    dy = ((np.arange(h, dtype=np.float32) + np.float32(origin[1] + 0.5 - cy)) / np.float32(ry)) ** 2
    # In place from here: a face region of a 12 MP photo is millions of pixels.
    t = np.add(dy[:, None], dx[None, :])
    np.sqrt(t, out=t)  # elliptical radius, 1 on the ellipse
    np.subtract(1.0, t, out=t)
    t *= np.float32(1.0 / feather)
    np.clip(t, 0.0, 1.0, out=t)
    # Quintic smoothstep t^3 (6t^2 - 15t + 10): value, slope and curvature continuous.
    mask = t * np.float32(6.0)
    mask -= np.float32(15.0)
    mask *= t
    mask += np.float32(10.0)
    mask *= t
    mask *= t
    mask *= t
    # float32 rounding can lift the polynomial a hair above 1 just below t = 1.
    return np.minimum(mask, 1.0, out=mask)


def mask_region(
    crop: tuple[float, float, float], image_shape: Sequence[int]
) -> tuple[int, int, int, int]:
    """Photo pixels (x0, y0, x1, y1), clipped to the photo, where :func:`face_mask` can be > 0."""
    x0, y0, side = crop
    cx, cy = x0 + side / 2.0, y0 + side / 2.0
    rx, ry = MASK_AXES[0] * side / 2.0, MASK_AXES[1] * side / 2.0
    h, w = int(image_shape[0]), int(image_shape[1])
    left = max(0, int(np.floor(cx - rx)))
    top = max(0, int(np.floor(cy - ry)))
    right = min(w, int(np.ceil(cx + rx)) + 1)
    bottom = min(h, int(np.ceil(cy + ry)) + 1)
    return left, top, max(left, right), max(top, bottom)


def _upsample_to_region(
    small: np.ndarray, crop: tuple[float, float, float], region: tuple[int, int, int, int]
) -> np.ndarray:
    """Resample a size x size crop result onto photo pixels ``region`` (bilinear, one affine).

    Same half-pixel convention as ``cv2.resize``: photo pixel u maps to crop pixel
    ``(u + 0.5 - x0) * size / side - 0.5``; so this equals resizing the result to the crop's
    side in the photo and cutting out ``region``, without building the full-size crop.
    """
    size = small.shape[0]
    x0, y0, side = crop
    if side < size:
        # A face smaller than the network's input: shrink with area averaging first (bilinear
        # sampling would alias), then the warp below is a pure integer shift.
        small = cv2.resize(np.ascontiguousarray(small), (side, side), interpolation=cv2.INTER_AREA)
        size = side
    scale = size / float(side)
    rx0, ry0, rx1, ry1 = region
    matrix = np.array(
        [
            [scale, 0.0, (rx0 + 0.5 - x0) * scale - 0.5],
            [0.0, scale, (ry0 + 0.5 - y0) * scale - 0.5],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        np.ascontiguousarray(small, dtype=np.float32),
        matrix,
        (rx1 - rx0, ry1 - ry0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,  # the matrix maps output -> source
        borderMode=cv2.BORDER_REPLICATE,
    )


def make_blur(meta: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bilateral filter BL the model was trained with, at its input size (from ``meta``)."""
    parsed = parse_meta(meta)
    settings = parsed.bilateral
    sigma_s = sigma_s_for(parsed.size, settings.sigma_s_fraction)
    return lambda image: bilateral_filter(image, sigma_s, settings.sigma_r, settings.mode)


@torch.inference_mode()
def run_model(
    model: torch.nn.Module,
    meta: dict[str, Any],
    crops: np.ndarray,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Network output ``y`` (N, S, S, 3) float32 for face crops (N, S, S, 3) in [0, 1].

    The network input is built as in training (:func:`pipeline.core.encodings.network_input`: the
    crop itself, or its bilateral filter for encoding C, always in float32). ``precision``
    ``bf16`` runs the network under bfloat16 autocast: about 1.7x faster on CPUs with native
    bf16 (AVX512-BF16 / AMX) and on recent GPUs, at an error in y of a few 1e-3; elsewhere
    slower than fp32, hence opt-in.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device is None:
        device = next(model.parameters()).device
    blur = make_blur(meta)
    outputs = []
    for start in range(0, len(crops), MAX_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + MAX_BATCH]))
        x = batch.permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
        inputs = network_input(x, meta["encoding"], blur)
        if device.type == "cpu":
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = model(inputs).float()
        outputs.append(y.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(outputs).astype(np.float32, copy=False)


def face_crops(
    image: np.ndarray, boxes: Sequence[Sequence[int]], meta: dict[str, Any]
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The training crops of ``boxes``: (N, S, S, 3) float32 and their (x0, y0, side) boxes.

    Uses the crop stage's own square box and crop/resize (pipeline.faces.detect) with the margin and
    padding the model was trained with, so the network sees what it saw in training.
    """
    settings = crop_settings(meta)
    size = int(meta["size"])
    squares, crops = [], []
    for box in boxes:
        square = tuple(int(v) for v in face_lib.square_crop_box(box, settings["margin"]))
        squares.append(square)
        # The flash half of faces.crop_pair: one anti-aliased resample of the square.
        matrix = face_lib.crop_matrix(square, size)
        crops.append(face_lib.resample(image, matrix, size, settings["pad_mode"]))
    if not crops:
        return np.zeros((0, size, size, 3), np.float32), []
    return np.stack(crops).astype(np.float32, copy=False), squares


def enhance_image(
    image: np.ndarray,
    model: torch.nn.Module,
    meta: dict[str, Any],
    *,
    boxes: Sequence[Sequence[int]] | None = None,
    feather: float = DEFAULT_FEATHER,
    detector: str | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
    inplace: bool = False,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, list[Face]]:
    """Relight every face of an upright float32 RGB photo in [0, 1]; returns (photo, faces).

    ``boxes`` (top, right, bottom, left) skips detection when given. Pixels outside every
    face's mask region are returned bit-identical; with no face the photo is returned as is.
    ``inplace=True`` writes into ``image`` (saves a full-size copy of a 12 MP photo).
    ``timings`` (a dict) receives seconds per stage: detect, crop, model, reconstruct, blend.
    ``precision``: ``fp32`` or ``bf16`` for the network (see :func:`run_model`).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype.kind != "f":
        raise ValueError(
            f"expected an HxWx3 float RGB image in [0, 1], got {image.dtype} {image.shape}"
        )
    check_meta(meta)
    settings = crop_settings(meta)
    if boxes is None:
        with _timed(timings, "detect"):
            boxes = face_lib.detect_faces(
                image,
                detector=detector or settings["detector"],
                max_side=settings["detect_max_side"],
            )
    boxes = [tuple(int(v) for v in box) for box in boxes]
    out = image if inplace else image.copy()
    if not boxes:
        return out, []
    with _timed(timings, "crop"):
        crops, squares = face_crops(image, boxes, meta)
    with _timed(timings, "model"):
        ys = run_model(model, meta, crops, device, precision)

    regions = [mask_region(square, image.shape) for square in squares]
    with _timed(timings, "reconstruct"):
        changes = [
            _relit_change(image, crop, y, square, region, meta["encoding"])
            for crop, y, square, region in zip(crops, ys, squares, regions, strict=True)
        ]
    with _timed(timings, "blend"):
        _blend(out, image, changes, squares, regions, feather)
    found = [
        Face(box, square, region)
        for box, square, region in zip(boxes, squares, regions, strict=True)
    ]
    return out, found


def _relit_change(
    image: np.ndarray,
    crop: np.ndarray,
    y: np.ndarray,
    square: tuple[int, int, int],
    region: tuple[int, int, int, int],
    encoding: str,
) -> np.ndarray:
    """clip(pred) - x over the photo pixels ``region``, pred at the photo's resolution.

    B and C: eq. 2 is affine in (x, y) and bilinear upsampling preserves affine combinations,
    so ``x - 2 up(y) + 1 == x + up(pred_crop - x_crop)``: upsampling the crop-size difference
    ``reconstruct(x_crop, y) - x_crop`` (= 1 - 2y, smooth) and adding the photo's own pixels is
    eq. 2 applied at full resolution, with one full-size temporary instead of three.
    A: the network's image itself, upsampled.
    """
    rx0, ry0, rx1, ry1 = region
    x = image[ry0:ry1, rx0:rx1]
    if encoding == "A":
        pred = _upsample_to_region(y, square, region)
    else:
        pred = _upsample_to_region(reconstruct(crop, y, encoding) - crop, square, region)
        pred += x
    np.clip(pred, 0.0, 1.0, out=pred)
    pred -= x
    return pred


def _blend(
    out: np.ndarray,
    image: np.ndarray,
    changes: list[np.ndarray],
    squares: list[tuple[int, int, int]],
    regions: list[tuple[int, int, int, int]],
    feather: float,
) -> None:
    """out = x + sum(m_i c_i) / max(1, sum(m_i)) with c_i = relit_i - x, over the regions.

    Where masks overlap (faces close together) the weights are normalised, so the result is
    always a convex combination of the input and the relit faces: no overshoot, no seam.
    Pixels where every mask is 0 get a change of exactly 0.0 and keep their value bit for bit.
    ``changes`` are consumed (scaled in place).
    """
    live = [i for i, r in enumerate(regions) if r[2] > r[0] and r[3] > r[1]]
    masks = {}
    for i in live:
        rx0, ry0, rx1, ry1 = regions[i]
        masks[i] = face_mask((ry1 - ry0, rx1 - rx0), squares[i], (rx0, ry0), feather)
        changes[i] *= masks[i][..., None]
    if len(live) == 1:
        # One face (the usual selfie): weights never exceed 1, no union arrays needed.
        (i,) = live
        rx0, ry0, rx1, ry1 = regions[i]
        np.add(image[ry0:ry1, rx0:rx1], changes[i], out=out[ry0:ry1, rx0:rx1])
        return
    if not live:
        return
    ux0 = min(regions[i][0] for i in live)
    uy0 = min(regions[i][1] for i in live)
    ux1 = max(regions[i][2] for i in live)
    uy1 = max(regions[i][3] for i in live)
    shape = (uy1 - uy0, ux1 - ux0)
    weight = np.zeros(shape, np.float32)
    change = np.zeros((*shape, 3), np.float32)
    for i in live:
        rx0, ry0, rx1, ry1 = regions[i]
        sub = (slice(ry0 - uy0, ry1 - uy0), slice(rx0 - ux0, rx1 - ux0))
        weight[sub] += masks[i]
        change[sub] += changes[i]
    change /= np.maximum(weight, 1.0)[..., None]
    np.add(image[uy0:uy1, ux0:ux1], change, out=out[uy0:uy1, ux0:ux1])


# --------------------------------------------------------------------------- files and paths


def expand_inputs(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their images, sorted, not recursive) and glob patterns -> image paths.

    Raises :class:`EnhanceError` naming an item that is neither an existing path nor a pattern
    matching any image. Duplicates are dropped, order kept.
    """
    found: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
            if not images:
                raise EnhanceError(
                    f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            found.extend(images)
        elif glob.has_magic(text):
            matches = sorted(
                Path(p)
                for p in glob.glob(text, recursive=True)
                if Path(p).is_file() and _is_image_name(Path(p))
            )
            if not matches:
                raise EnhanceError(f"{text}: pattern matches no image")
            found.extend(matches)
        else:
            raise EnhanceError(f"{path}: file not found")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def plan_outputs(
    inputs: Sequence[Path], output: str | os.PathLike | None, out_dir: str | os.PathLike | None
) -> list[Path]:
    """Output path per input: ``output`` for a single input, else ``out_dir/<input name>``.

    Raises :class:`EnhanceError` for a missing or ambiguous destination, an unsupported output
    extension, two inputs with one output name, or an output that would overwrite its input.
    """
    if (output is None) == (out_dir is None):
        raise EnhanceError("give exactly one of -o/--output FILE or --out-dir DIR")
    if output is not None:
        if len(inputs) != 1:
            raise EnhanceError(f"-o takes one input, got {len(inputs)}; use --out-dir for several")
        outputs = [Path(output)]
    else:
        outputs = [Path(out_dir) / path.name for path in inputs]
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if not _is_image_name(target):
            raise EnhanceError(
                f"{target}: unsupported output type (use {', '.join(IMAGE_EXTENSIONS)})"
            )
        key = target.resolve()
        if key == source.resolve():
            raise EnhanceError(f"{target}: output would overwrite its input")
        if key in seen:
            raise EnhanceError(f"{seen[key]} and {source} would both be written to {target}")
        seen[key] = source
    return outputs


def source_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """EXIF (orientation reset to 1) and ICC profile of an image, for writing them back.

    Returns ``{"exif": bytes, "icc_profile": bytes, "bits": 8 | 16}`` with the keys it could
    read; a corrupt metadata block is dropped rather than failing the photo.
    """
    found: dict[str, Any] = {"bits": 8}
    try:
        with Image.open(path) as pil:
            icc = pil.info.get("icc_profile")
            if icc:
                found["icc_profile"] = icc
            try:
                exif = pil.getexif()
                if len(exif):
                    if _EXIF_ORIENTATION in exif:
                        # The pixels we write are upright: a kept tag would rotate them again.
                        exif[_EXIF_ORIENTATION] = 1
                    found["exif"] = exif.tobytes()
            except Exception as error:  # corrupt EXIF: keep the photo, lose the tags
                log.warning("%s: EXIF not kept (%s)", path, error)
            found["bits"] = _bit_depth(pil, Path(path))
    except (OSError, UnidentifiedImageError, SyntaxError):
        pass
    return found


def _bit_depth(pil: Image.Image, path: Path) -> int:
    if pil.mode.startswith("I;16") or pil.mode == "I":
        return 16
    if pil.format == "PNG":
        # Pillow opens 16-bit colour PNGs as 8-bit RGB; the IHDR chunk has the true depth.
        with open(path, "rb") as handle:
            header = handle.read(25)
        return 16 if len(header) == 25 and header[24] == 16 else 8
    if pil.format == "TIFF":
        bits = pil.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if max(bits) > 8 else 8
    return 8


def write_output(
    path: str | os.PathLike, image: np.ndarray, metadata: dict[str, Any] | None = None
) -> Path:
    """Write an upright float [0, 1] RGB photo with the source's EXIF and ICC where possible.

    JPEG (quality 95), PNG and WebP carry EXIF and ICC through Pillow; 16-bit sources written
    to PNG/TIFF stay 16-bit (through :func:`pipeline.io.write_image`, without metadata).
    """
    path = Path(path)
    metadata = metadata or {}
    suffix = path.suffix.lower()
    if metadata.get("bits") == 16 and suffix in (".png", ".tif", ".tiff"):
        return write_image(path, image, bits=16)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One saturating, rounding pass (OpenCV, multi-threaded): the exact inverse of /255 on 8-bit.
    pixels = cv2.convertScaleAbs(image, alpha=255.0)
    options: dict[str, Any] = {}
    if suffix in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"):
        options = {key: metadata[key] for key in ("exif", "icc_profile") if key in metadata}
    if suffix in (".jpg", ".jpeg"):
        options["quality"] = _JPEG_QUALITY
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        Image.fromarray(pixels).save(tmp, **options)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def enhance_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    model: torch.nn.Module,
    meta: dict[str, Any],
    *,
    feather: float = DEFAULT_FEATHER,
    skip_no_face: bool = False,
    detector: str | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> EnhanceResult:
    """Enhance one photo file into ``target``; never raises for a bad image (status failed).

    A photo without a face is copied unchanged (warning) or skipped with ``skip_no_face``.
    """
    source, target = Path(source), Path(target)
    timings: dict[str, float] = {}
    try:
        with _timed(timings, "read"):
            image = read_image(source)
    except ImageReadError as error:
        log.error("%s: skipped: %s", source, error.reason)
        return EnhanceResult(source, None, "failed", reason=error.reason, timings=timings)
    out, found = enhance_image(
        image,
        model,
        meta,
        feather=feather,
        detector=detector,
        device=device,
        precision=precision,
        inplace=True,
        timings=timings,
    )
    if not found and skip_no_face:
        log.warning("%s: no face found; skipped (--skip-no-face)", source)
        return EnhanceResult(source, None, "skipped_no_face", reason="no face", timings=timings)
    try:
        with _timed(timings, "write"):
            if not found and source.suffix.lower() == target.suffix.lower():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)  # byte-identical, EXIF orientation included
            else:
                write_output(target, out, source_metadata(source))
    except OSError as error:
        reason = f"cannot write {target} ({error.strerror or error})"
        log.error("%s: %s", source, reason)
        return EnhanceResult(source, None, "failed", faces=found, reason=reason, timings=timings)
    if not found:
        log.warning("%s: no face found; copied unchanged", source)
        return EnhanceResult(source, target, "copied_no_face", reason="no face", timings=timings)
    return EnhanceResult(source, target, "enhanced", faces=found, timings=timings)


def enhance_paths(
    inputs: Sequence[str | os.PathLike],
    *,
    model_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    feather: float = DEFAULT_FEATHER,
    skip_no_face: bool = False,
    detector: str | None = None,
    precision: str = "fp32",
    progress: bool = True,
) -> list[EnhanceResult]:
    """The ``deepflash enhance`` command: inputs (files, folders, globs) -> enhanced photos.

    Argument and model problems raise :class:`EnhanceError` before any photo is read; a bad
    photo is logged with its reason and reported as ``failed`` while the others go on.
    """
    from tqdm.auto import tqdm

    if not 0 < feather <= 1:
        raise EnhanceError(f"--feather must be in (0, 1], got {feather}")
    if precision not in PRECISIONS:
        raise EnhanceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    sources = expand_inputs(inputs)
    targets = plan_outputs(sources, output, out_dir)
    model, meta, torch_device = load_enhancer(model_path, device)
    results = []
    bar = tqdm(
        list(zip(sources, targets, strict=True)), desc="enhance", unit="photo", disable=not progress
    )
    for source, target in bar:
        bar.set_postfix_str(source.name, refresh=False)
        results.append(
            enhance_file(
                source,
                target,
                model,
                meta,
                feather=feather,
                skip_no_face=skip_no_face,
                detector=detector,
                device=torch_device,
                precision=precision,
            )
        )
    return results


__all__ = [
    "DEFAULT_FEATHER",
    "IMAGE_EXTENSIONS",
    "MASK_AXES",
    "PRECISIONS",
    "STAGES",
    "EnhanceError",
    "EnhanceResult",
    "Face",
    "check_meta",
    "crop_settings",
    "enhance_file",
    "enhance_image",
    "enhance_paths",
    "expand_inputs",
    "face_crops",
    "face_mask",
    "load_enhancer",
    "parse_meta",
    "make_blur",
    "mask_region",
    "plan_outputs",
    "resolve_device",
    "run_model",
    "source_metadata",
    "write_output",
]
