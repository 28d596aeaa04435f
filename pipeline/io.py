"""Image, CSV and JSON input/output: the one reader and writer of each, every write atomic.

Every image enters the pipeline as float32 RGB in [0, 1], HxWx3, upright (EXIF orientation
applied), whatever it was on disk: 8- or 16-bit, grey, grey+alpha, RGBA, palette, CMYK.
Every CSV table is read with one dtype rule (:func:`read_csv`: every cell is text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.decode import (
    HEIF_SUFFIXES,
    apply_orientation,
    decode_jpeg,
    exif_orientation,
    load_strict,
    open_image,
    to_rgb,
    uint8_to_float,
)

if TYPE_CHECKING:
    import pandas as pd

# Pillow's own bomb check only warns below 2x its limit; we check sizes ourselves.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 100_000_000
# Every type :func:`read_image` decodes (Pillow, 16-bit PNG/TIFF through OpenCV): the dataset
# layouts, the demo's portraits folder and enhance's folders and globs all take the same list,
# so a photo one of them reads is never skipped by another (Yale B ships .pgm; GIF: first frame).
IMAGE_SUFFIXES = (
    frozenset(
        {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".pgm", ".ppm", ".pnm", ".gif"}
    )
    | HEIF_SUFFIXES
)
"""File extensions (lower case) of the image files the project reads."""
MANIFEST_PATH = Path("data/interim/manifest.csv")
"""The ingest stage's manifest (one row per pair, its subject split), read by the later stages."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class ImageReadError(ValueError):
    """An image could not be used; ``reason`` is a short machine-friendly explanation."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image after EXIF orientation, reading only its header."""
    path = Path(path)
    _check_file(path)
    try:
        with open_image(path) as pil:
            width, height = pil.size
            if exif_orientation(pil) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(path, f"not an image ({error.__class__.__name__})") from None


def read_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    keep_uint8: bool = False,
) -> np.ndarray:
    """Read any common image as upright float32 RGB in [0, 1] (HxWx3).

    ``keep_uint8``: an 8-bit image comes back as its uint8 RGB pixels instead (deeper ones as
    float32 still), for callers that convert only the parts they compute on
    (:func:`uint8_to_float` gives exactly the float this reader would return).
    Raises :class:`ImageReadError` for empty, truncated, unreadable or oversized files.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open_image(path) as pil:
            if max_pixels is not None and pil.width * pil.height > max_pixels:
                raise ImageReadError(
                    path,
                    f"too many pixels ({pil.width}x{pil.height} > {max_pixels}): "
                    "possible decompression bomb",
                )
            orientation = exif_orientation(pil)
            array = decode_jpeg(pil, path)
            if array is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    load_strict(pil)
                array = to_rgb(pil, path)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        message = str(error)
        reason = "truncated file" if "truncated" in message else f"unreadable ({message})"
        raise ImageReadError(path, reason) from None
    array = np.ascontiguousarray(apply_orientation(array, orientation))
    if array.dtype != np.uint8:
        return array
    if not keep_uint8:
        return uint8_to_float(array)
    return array if array.flags.writeable else array.copy()  # Pillow's buffer is read-only


def write_image(path: str | os.PathLike, image: np.ndarray, bits: int = 8) -> Path:
    """Write float [0, 1] (or uint8/uint16) RGB or grey to PNG/JPEG/TIFF; parents created.

    Atomic (:func:`write_pixels`).
    """
    path = Path(path)
    array = np.asarray(image)
    if array.dtype.kind == "f":
        scale = 65535 if bits == 16 else 255
        array = np.clip(np.rint(np.nan_to_num(array) * scale), 0, scale)
        array = array.astype(np.uint16 if bits == 16 else np.uint8)
    if array.dtype == np.uint16:
        return write_pixels(path, array)
    suffix = path.suffix.lower()
    # PNG level 1: ~2.4x faster than Pillow's default for ~10% larger files (augment writes
    # 40 PNGs per pair, so writing dominated that stage).
    options: dict[str, Any] = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
    if suffix == ".png":
        options = {"compress_level": 1}
    return write_pixels(path, array, **options)


def write_pixels(path: str | os.PathLike, pixels: np.ndarray, **options: Any) -> Path:
    """Write uint8 or uint16 pixels (HxW grey, HxWx3 RGB, HxWx4 RGBA) atomically, the type
    from the extension; parents created.

    uint8 goes through Pillow with ``options`` (its ``save`` keywords: quality, exif,
    icc_profile...); uint16 through OpenCV (Pillow cannot write 16-bit colour), without
    options. The one image encoder of the project: :func:`write_image` and the enhance writer.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    array = np.asarray(pixels)
    with atomic_output(path) as tmp:
        if array.dtype == np.uint16:
            # OpenCV's channel order is BGR(A).
            colour = array.ndim == 3 and array.shape[2] in (3, 4)
            out = array[..., [2, 1, 0, 3][: array.shape[2]]] if colour else array
            ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(out))
            if not ok:
                raise OSError(f"{path}: could not write image")
            tmp.write_bytes(encoded.tobytes())
        else:
            image_format = Image.registered_extensions().get(suffix)
            if image_format is None:
                raise ValueError(f"unknown file extension: {path.suffix}")
            Image.fromarray(array).save(tmp, format=image_format, **options)
    return path


def read_alpha(path: str | os.PathLike) -> np.ndarray | None:
    """The alpha channel of an image as upright float32 HxW in [0, 1], None when it has none.

    :func:`read_image` returns colour only; a caller that writes the image back (enhance)
    takes the alpha from here, with the same EXIF orientation and 8/16-bit depth.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open_image(path) as pil:
            has_alpha = pil.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
                pil.mode == "P" and "transparency" in pil.info
            )
            if not has_alpha:
                return None
            orientation = exif_orientation(pil)
            alpha = None
            if pil.format in ("PNG", "TIFF"):
                # Pillow reduces 16-bit PNG/TIFF to 8 bits; OpenCV keeps all 16.
                deep = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
                if deep is not None and deep.dtype == np.uint16 and deep.ndim == 3:
                    alpha = deep[..., -1].astype(np.float32) / 65535.0
            if alpha is None:
                alpha = np.asarray(pil.convert("RGBA").getchannel("A"), np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(path, f"not an image ({error.__class__.__name__})") from None
    return np.ascontiguousarray(apply_orientation(alpha, orientation))


def write_mask(path: str | os.PathLike, valid: np.ndarray) -> Path:
    """Write a bool validity mask (True = real photo pixels) as an 8-bit grey PNG, 255/0."""
    array = np.asarray(valid)
    if array.ndim != 2:
        raise ValueError(f"{path}: a mask must be HxW, got shape {array.shape}")
    return write_image(path, np.where(array, 255, 0).astype(np.uint8))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A validity mask written by :func:`write_mask` as HxW bool (True where white)."""
    return read_image(path)[..., 0] >= 0.5


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def safe_name(text: str) -> str:
    """A filesystem-safe name: runs of characters other than ``A-Za-z0-9._+-`` become '-'.

    Leading and trailing '-' and '.' go (no hidden files, never "." or ".."); "x" if nothing is left.
    """
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def write_rejected(path: str | os.PathLike, rows: Iterable[tuple[str, str]]) -> Path:
    """A rejected-inputs CSV with columns file, reason (header written even when empty)."""
    import pandas as pd

    return write_csv(path, pd.DataFrame(list(rows), columns=["file", "reason"], dtype=object))


def write_csv(
    path: str | os.PathLike, table: pd.DataFrame, float_format: str | None = None
) -> Path:
    """Write a table as CSV (header, no index column, ``\n`` line ends), atomically."""
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format=float_format)
    return Path(path)


def read_stage_table(path: str | os.PathLike, made_by: str) -> pd.DataFrame:
    """:func:`read_csv` of a table another DVC stage writes; a missing one raises
    FileNotFoundError "<path>: not found (run the <made_by> stage first)"."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: not found (run the {made_by} stage first)")
    return read_csv(path)


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV table with every cell as text (the one dtype rule of the project's tables).

    Identifiers stay what was written ("007", "NA" and "null" are names, not numbers or
    missing values) and an empty cell is ""; a reader converts the numbers it uses
    (``int(row.width)``).
    """
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False)


def empty_dir(path: str | os.PathLike) -> Path:
    """Remove ``path`` (a stage's own output folder) and create it empty: no stale file of an
    earlier run survives beside the new ones."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file."""
    return json.loads(Path(path).read_text())


@contextmanager
def atomic_output(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it replaces ``path``.

    The one atomic write of the project: a killed process leaves the old file or the new
    one, never half of one. The result gets mode 0644 like any other output (mkstemp's 0600
    would hide a model file from other users). On error the temporary file is removed.
    ``durable``: fsync the file before the rename and the folder after it, so that a power
    cut cannot leave the new name on data that never reached the disk (checkpoints, models).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            # Folders cannot be opened or fsynced on every platform: best effort there.
            with contextlib.suppress(OSError):
                _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); ``durable``: see atomic_output."""
    with atomic_output(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (parents created)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON (indented, keys sorted, parents created), atomically."""
    return write_text(
        path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "zero bytes")


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "HEIF_SUFFIXES",
    "MANIFEST_PATH",
    "ImageReadError",
    "empty_dir",
    "image_size",
    "is_image_name",
    "open_image",
    "read_csv",
    "read_image",
    "read_json",
    "read_stage_table",
    "safe_name",
    "uint8_to_float",
    "write_csv",
    "write_image",
    "write_json",
    "write_pixels",
    "write_rejected",
]
