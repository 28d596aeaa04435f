"""Photo files for ``deepflash enhance``: inputs, outputs, and what a photo carries besides
its colour (EXIF, ICC profile, 16-bit depth, alpha), so the relit photo keeps all of it."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.io import (
    HEIF_SUFFIXES,
    IMAGE_SUFFIXES,
    is_image_name,
    open_image,
    write_image,
    write_pixels,
)

log = logging.getLogger(__name__)

#: Output types :func:`write_output` writes (with EXIF and ICC where the type holds them).
#: Inputs from folders and globs are every type the reader decodes (:func:`is_image_name`).
OUTPUT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: Output types that hold an alpha channel.
ALPHA_EXTENSIONS = (".png", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112
_JPEG_QUALITY = 95


class EnhanceError(RuntimeError):
    """A user-facing problem (missing or wrong model file, bad arguments); message says why."""


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
            images = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p))
            if not images:
                raise EnhanceError(
                    f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            found.extend(images)
        elif glob.has_magic(text):
            matches = sorted(
                Path(p)
                for p in glob.glob(text, recursive=True)
                if Path(p).is_file() and is_image_name(Path(p))
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


def plan_outputs(
    inputs: Sequence[Path], output: str | os.PathLike | None, out_dir: str | os.PathLike | None
) -> list[Path]:
    """Output path per input: ``output`` for a single input, else ``out_dir/<input name>``.

    A HEIC/HEIF input (phone cameras' format, read but not written) gets a ``.jpg`` of its
    name: in ``out_dir``, or beside it when no destination is given (HEIF inputs only; an
    existing file of that name is refused, never replaced).
    Raises :class:`EnhanceError` for a missing or ambiguous destination, an unsupported output
    extension, two inputs with one output name, or an output that would overwrite its input.
    """
    beside = output is None and out_dir is None and bool(inputs)
    beside = beside and all(path.suffix.lower() in HEIF_SUFFIXES for path in inputs)
    if not beside and (output is None) == (out_dir is None):
        raise EnhanceError("give exactly one of -o/--output FILE or --out-dir DIR")
    if output is not None:
        if len(inputs) != 1:
            raise EnhanceError(f"-o takes one input, got {len(inputs)}; use --out-dir for several")
        outputs = [Path(output)]
    else:
        folders = [path.parent if beside else Path(out_dir) for path in inputs]  # type: ignore[arg-type]
        outputs = [
            folder / _output_name(path) for folder, path in zip(folders, inputs, strict=True)
        ]
        for target in outputs if beside else []:
            if target.exists():
                raise EnhanceError(f"{target}: exists; pass -o FILE or --out-dir DIR")
    seen: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs, strict=True):
        if target.suffix.lower() not in OUTPUT_EXTENSIONS:
            raise EnhanceError(
                f"{target}: unsupported output type (use {', '.join(OUTPUT_EXTENSIONS)})"
            )
        key = target.resolve()
        if key == source.resolve():
            raise EnhanceError(f"{target}: output would overwrite its input")
        if key in seen:
            raise EnhanceError(f"{seen[key]} and {source} would both be written to {target}")
        seen[key] = source
    return outputs


def _output_name(path: Path) -> str:
    return path.stem + ".jpg" if path.suffix.lower() in HEIF_SUFFIXES else path.name


def source_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """EXIF (orientation reset to 1) and ICC profile of an image, for writing them back.

    Returns ``{"exif": bytes, "icc_profile": bytes, "bits": 8 | 16}`` with the keys it could
    read; a corrupt metadata block is dropped rather than failing the photo.
    """
    found: dict[str, Any] = {"bits": 8}
    try:
        with open_image(path) as pil:
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


def keeps_alpha(path: str | os.PathLike) -> bool:
    """Whether an output of this type can hold an alpha channel."""
    return Path(path).suffix.lower() in ALPHA_EXTENSIONS


def write_output(
    path: str | os.PathLike,
    image: np.ndarray,
    metadata: dict[str, Any] | None = None,
    alpha: np.ndarray | None = None,
) -> Path:
    """Write an upright float [0, 1] (or uint8) RGB photo with the source's EXIF and ICC where
    possible.

    JPEG (quality 95), PNG and WebP carry EXIF and ICC through Pillow; 16-bit sources written
    to PNG/TIFF stay 16-bit (through OpenCV, without metadata). ``alpha`` (HxW float in
    [0, 1]) is written as the fourth channel where the type holds one
    (:data:`ALPHA_EXTENSIONS`); JPEG and BMP cannot, and the caller says so. Atomic.
    """
    path = Path(path)
    metadata = metadata or {}
    suffix = path.suffix.lower()
    if alpha is not None and not keeps_alpha(path):
        alpha = None
    if alpha is not None and alpha.shape != image.shape[:2]:
        raise ValueError(f"{path}: alpha {alpha.shape} does not match the photo {image.shape[:2]}")
    if metadata.get("bits") == 16 and suffix in (".png", ".tif", ".tiff"):
        if alpha is None:
            return write_image(path, image, bits=16)
        pixels = np.clip(np.rint(np.dstack([image, alpha]) * 65535), 0, 65535).astype(np.uint16)
        return write_pixels(path, pixels)
    # One saturating, rounding pass (OpenCV, multi-threaded): the exact inverse of /255 on 8-bit;
    # uint8 pixels (enhance's own, blended in 8 bits) are written as they are.
    pixels = image if image.dtype == np.uint8 else cv2.convertScaleAbs(image, alpha=255.0)
    if alpha is not None:
        pixels = np.dstack([pixels, cv2.convertScaleAbs(alpha, alpha=255.0)])
    options: dict[str, Any] = {}
    if suffix in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"):
        options.update({key: metadata[key] for key in ("exif", "icc_profile") if key in metadata})
    if suffix in (".jpg", ".jpeg"):
        options["quality"] = _JPEG_QUALITY
    if suffix == ".webp" and alpha is not None:
        options["lossless"] = True  # lossy WebP would blur the alpha edge
    return write_pixels(path, pixels, **options)


__all__ = [
    "ALPHA_EXTENSIONS",
    "OUTPUT_EXTENSIONS",
    "EnhanceError",
    "expand_inputs",
    "keeps_alpha",
    "plan_outputs",
    "source_metadata",
    "write_output",
]
