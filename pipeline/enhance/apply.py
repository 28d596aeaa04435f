"""Full-resolution inference on a real photo: every face relit, blended back without a seam.

The paper applied its network to 512x512 face crops and pasted the results into the original
photos by hand (segmentation in Photoshop). Here it is automatic, for every face of a photo:

1. read the photo upright (EXIF orientation) with :func:`pipeline.io.read_image`;
2. find every face, tilted ones too (:func:`pipeline.faces.detect.find_faces`);
3. per face, the training crop: the crop stage's own placement and resampling, at the model's
   input size (the model file's meta says which size, encoding, bilateral filter, crop
   settings and augmentation rotations); a face tilted beyond those rotations is cropped
   turned upright, as in training;
4. run the network on all crops;
5. reconstruct at the photo's own resolution. For encodings B and C the network predicts a
   *difference* image, ``x - pred = 2y - 1``, which is smooth (C: the difference of two
   bilateral-filtered images), so ``y`` is upsampled to the crop's size in the photo and eq. 2
   (``pred = x - 2y + 1``) is applied there, to the photo's own pixels: the result keeps every
   fine detail of the photo (pores, hair, noise) that a 512 px crop cannot hold. For encoding A
   the network predicts the image itself, which can only be resized up;
6. blend each face back with a feathered elliptical mask (smooth falloff to exactly 0 inside the
   crop; turned back with the face in the same single warp), so pixels away from faces are
   bit-identical to the input and there is no seam (:mod:`pipeline.enhance.blend`);
7. repair red-eye on the relit full-resolution photo, face by face, from the faces' landmarks
   (``--redeye auto``, the default; :mod:`pipeline.enhance.redeye`): the pupils are found on
   the photo as read (the relight warms lids toward red) and repaired on the relit one; the
   network cannot learn it (the pupils are high frequency, which encoding C passes through);
8. write the result with the input's EXIF (orientation reset to 1: the pixels are upright now),
   ICC profile and alpha channel (colour is relit, alpha passes through;
   :mod:`pipeline.enhance.files`).

Every geometric step maps photo pixels to crop pixels with one affine (half-pixel centres, the
convention of ``cv2.resize``), and only the region under a mask is ever resampled, so a 12 MP
photo costs about as much as its faces.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.enhance.blend import (
    DEFAULT_FEATHER,
    MASK_AXES,
    blend,
    face_mask,
    mask_region,
    region_pixels,
    relit_change,
)
from pipeline.enhance.files import (
    EnhanceError,
    expand_inputs,
    keeps_alpha,
    plan_outputs,
    source_metadata,
    write_output,
)
from pipeline.enhance.network import PRECISIONS, run_model
from pipeline.enhance.photo import (
    Photo,
    detect_photo_faces,
    read_photo,
    timed,
)
from pipeline.enhance.placement import Placement, face_crops, place_face
from pipeline.enhance.redeye import MODES as REDEYE_MODES
from pipeline.enhance.redeye import FaceRedeye, find_redeye, repair_redeye
from pipeline.enhance.redeye import summary as redeye_summary
from pipeline.faces.detect import Face as Detection
from pipeline.models.format import ModelMeta
from pipeline.runtime import DeviceError, resolve_device

log = logging.getLogger(__name__)

#: The stages timed per photo (EnhanceResult.timings keys).
STAGES = ("read", "detect", "crop", "model", "reconstruct", "blend", "redeye", "write")


@dataclass(frozen=True)
class Face:
    """One processed face: ``box`` (top, right, bottom, left) and square ``crop`` (x0, y0, side)
    in photo pixels, ``region`` (x0, y0, x1, y1): the photo pixels its mask may change,
    ``angle``: the crop's turn (0 unless the face's ``roll`` is beyond the model's training
    rotations), ``centre``: the blend ellipse's centre, and ``path``: which detector found it
    (``given`` for boxes passed in); ``redeye``: what the red-eye step found in its eyes
    (None when it was off)."""

    box: tuple[int, int, int, int]
    crop: tuple[int, int, int]
    region: tuple[int, int, int, int]
    angle: float = 0.0
    roll: float = 0.0
    path: str = "given"
    centre: tuple[float, float] | None = None
    redeye: FaceRedeye | None = None


@dataclass(frozen=True)
class EnhanceOptions:
    """How ``deepflash enhance`` treats each photo: the blend mask's ``feather``, whether a
    photo without a face is skipped (else copied), the face ``detector`` (None: the model's)
    and the network ``precision`` (see :func:`run_model`), ``redeye``: ``auto`` repairs
    red-eye after relighting, ``off`` leaves the eyes as the network made them."""

    feather: float = DEFAULT_FEATHER
    skip_no_face: bool = False
    detector: str | None = None
    precision: str = "fp32"
    redeye: str = "auto"


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


def crop_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The crop settings the model's training crops were made with (meta ``crop``)."""
    return parse_meta(meta).crop_settings()


# --------------------------------------------------------------------------- the per-photo core


def enhance_image(
    image: np.ndarray,
    model: torch.nn.Module,
    meta: dict[str, Any],
    *,
    boxes: Sequence[Detection | Sequence[int]] | None = None,
    feather: float = DEFAULT_FEATHER,
    detector: str | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
    inplace: bool = False,
    timings: dict[str, float] | None = None,
    redeye: str = "auto",
) -> tuple[np.ndarray, list[Face]]:
    """Relight every face of an upright RGB photo; returns (photo, faces).

    The photo is float32 in [0, 1] or its uint8 pixels (what ``read_image(...,
    keep_uint8=True)`` gives an 8-bit photo): a uint8 photo is converted only where a face's
    crop or region needs floats (x / 255, so the same faces and the same result, rounded
    to 8 bits as the writer would), and comes back as uint8.

    ``boxes`` skips detection when given: detected faces (with their roll) or upright boxes
    (top, right, bottom, left). Pixels
    outside every face's mask region are returned bit-identical; with no face the photo is
    returned as is. ``inplace=True`` writes into ``image`` (saves a full-size copy of a
    12 MP photo). ``timings`` (a dict) receives seconds per stage: detect, crop, model,
    reconstruct, blend. ``precision``: ``fp32`` or ``bf16`` for the network (see
    :func:`run_model`). ``redeye``: ``auto`` repairs red-eye in each face's eyes after the
    blend (each Face's ``redeye`` says what was found), ``off`` skips it.
    """
    if redeye not in REDEYE_MODES:
        raise ValueError(f"redeye must be one of {REDEYE_MODES}, got {redeye!r}")
    if (
        image.ndim != 3
        or image.shape[2] != 3
        or not (image.dtype.kind == "f" or image.dtype == np.uint8)
    ):
        raise ValueError(
            f"expected an HxWx3 float RGB image in [0, 1] or uint8, got {image.dtype} {image.shape}"
        )
    parse_meta(meta)  # EnhanceError for a bad meta
    if boxes is None:
        with timed(timings, "detect"):
            faces = detect_photo_faces(image, crop_settings(meta), detector)
    else:
        faces = [
            box
            if isinstance(box, Detection)
            else Detection(tuple(int(v) for v in box), 0.0, "given", 0.0)
            for box in boxes
        ]
    out = image if inplace else image.copy()
    if not faces:
        return out, []
    with timed(timings, "crop"):
        crops, placements = face_crops(image, faces, meta)
    with timed(timings, "model"):
        ys = run_model(model, meta, crops, device, precision)

    if redeye == "auto":  # found on the photo as read: the relight warms lids toward red
        with timed(timings, "redeye"):
            findings = find_redeye(image, faces)
    regions = [mask_region(p.crop, image.shape, p.angle, p.centre) for p in placements]
    with timed(timings, "reconstruct"):
        # One face (a selfie): its region's float pixels once, for its change and its blend
        # (with more faces the blend works on their union; holding every region costs memory)
        xs = [region_pixels(image, regions[0])] if len(regions) == 1 else [None] * len(regions)
        changes = [
            relit_change(image, crop, y, p.crop, region, meta["encoding"], p.angle, x)
            for crop, y, p, region, x in zip(crops, ys, placements, regions, xs, strict=True)
        ]
    with timed(timings, "blend"):
        masks = [
            face_mask((r[3] - r[1], r[2] - r[0]), p.crop, (r[0], r[1]), feather, p.angle, p.centre)
            for p, r in zip(placements, regions, strict=True)
        ]
        blend(out, image, changes, masks, regions, xs)
        del xs
    eyes: list[FaceRedeye | None] = [None] * len(faces)
    if redeye == "auto":
        with timed(timings, "redeye"):
            eyes = list(repair_redeye(out, findings))
    found = [
        Face(face.box, p.crop, region, p.angle, face.roll, face.path, p.centre, eye)
        for face, p, region, eye in zip(faces, placements, regions, eyes, strict=True)
    ]
    return out, found


def enhance_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    model: torch.nn.Module,
    meta: dict[str, Any],
    options: EnhanceOptions = EnhanceOptions(),
    *,
    device: torch.device | None = None,
    photo: Photo | None = None,
) -> EnhanceResult:
    """Enhance one photo file into ``target``; never raises for a bad image (status failed).

    A photo without a face is copied unchanged (warning) or skipped with
    ``options.skip_no_face``.
    An alpha channel is kept as it is (only colour is relit) when ``target``'s type holds
    one; a JPEG or BMP target drops it, with a warning saying so. ``photo``: the file
    already read and its faces found (:func:`pipeline.enhance.photo.read_photo`); read here
    otherwise.
    """
    source, target = Path(source), Path(target)
    parse_meta(meta)  # EnhanceError for a bad meta
    photo = photo or read_photo(source, crop_settings(meta), options.detector)
    timings = dict(photo.timings)
    if photo.image is None:
        log.error("%s: skipped: %s", source, photo.reason)
        return EnhanceResult(source, None, "failed", reason=photo.reason, timings=timings)
    image, alpha = photo.image, photo.alpha
    out, found = enhance_image(
        image,
        model,
        meta,
        boxes=photo.faces,
        feather=options.feather,
        detector=options.detector,
        device=device,
        precision=options.precision,
        inplace=True,
        timings=timings,
        redeye=options.redeye,
    )
    if not found and options.skip_no_face:
        log.warning("%s: no face found; skipped (--skip-no-face)", source)
        return EnhanceResult(source, None, "skipped_no_face", reason="no face", timings=timings)
    copy = not found and source.suffix.lower() == target.suffix.lower()
    if alpha is not None and not copy and not keeps_alpha(target):
        log.warning(
            "%s: alpha channel dropped: %s cannot hold one (write .png, .tif or .webp to keep it)",
            source,
            target.suffix,
        )
    try:
        with timed(timings, "write"):
            if copy:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)  # byte-identical, EXIF orientation included
            else:
                write_output(target, out, source_metadata(source), alpha)
    except OSError as error:
        reason = f"cannot write {target} ({error.strerror or error})"
        log.error("%s: %s", source, reason)
        return EnhanceResult(source, None, "failed", faces=found, reason=reason, timings=timings)
    if not found:
        log.warning("%s: no face found; copied unchanged", source)
        return EnhanceResult(source, target, "copied_no_face", reason="no face", timings=timings)
    checked = [face.redeye for face in found if face.redeye is not None]
    if checked:
        log.info("%s: red-eye: %s", source, redeye_summary(checked))
    return EnhanceResult(source, target, "enhanced", faces=found, timings=timings)


def enhance_paths(
    inputs: Sequence[str | os.PathLike],
    *,
    model_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str = "auto",
    options: EnhanceOptions = EnhanceOptions(),
    progress: bool = True,
) -> list[EnhanceResult]:
    """The ``deepflash enhance`` command: inputs (files, folders, globs) -> enhanced photos.

    Argument and model problems raise :class:`EnhanceError` before any photo is read; a bad
    photo is logged with its reason and reported as ``failed`` while the others go on.
    """
    from tqdm.auto import tqdm

    if not 0 < options.feather <= 1:
        raise EnhanceError(f"--feather must be in (0, 1], got {options.feather}")
    if options.redeye not in REDEYE_MODES:
        raise EnhanceError(
            f"--redeye must be one of {', '.join(REDEYE_MODES)}, got {options.redeye!r}"
        )
    if options.precision not in PRECISIONS:
        raise EnhanceError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}"
        )
    sources = expand_inputs(inputs)
    targets = plan_outputs(sources, output, out_dir)
    model, meta, torch_device = load_enhancer(model_path, device)
    results = []
    bar = tqdm(
        list(zip(sources, targets, strict=True)), desc="enhance", unit="photo", disable=not progress
    )
    settings = crop_settings(meta)
    for source, target in bar:
        bar.set_postfix_str(source.name, refresh=False)
        photo = read_photo(source, settings, options.detector)
        result = enhance_file(
            source, target, model, meta, options, device=torch_device, photo=photo
        )
        results.append(result)
    return results


__all__ = [
    "DEFAULT_FEATHER",
    "MASK_AXES",
    "PRECISIONS",
    "STAGES",
    "EnhanceError",
    "EnhanceOptions",
    "EnhanceResult",
    "Face",
    "Placement",
    "crop_settings",
    "enhance_file",
    "enhance_image",
    "enhance_paths",
    "face_crops",
    "load_enhancer",
    "parse_meta",
    "place_face",
    "resolve_device",
    "run_model",
]
