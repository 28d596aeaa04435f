"""Decoding an image file into pixels: the opener (HEIC/HEIF too), EXIF orientation, strict
loading, the RGB array of any mode, and 8-bit pixels to float. :mod:`pipeline.io` reads every
image through these (its :func:`pipeline.io.read_image` is the project's one reader).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

_EXIF_ORIENTATION = 0x0112
# HEIC/HEIF: the default of phone cameras (iPhone), decoded by pillow-heif.
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})


def _register_heif() -> None:
    # pillow-heif costs ~0.1 s to import: only when a HEIF file is opened. Its opener applies
    # the file's orientation (EXIF / irot) while decoding and reports orientation 1 after.
    from pillow_heif import register_heif_opener

    register_heif_opener()


def open_image(path: str | os.PathLike) -> Image.Image:
    """``PIL.Image.open`` that also opens HEIC/HEIF photos (pillow-heif's opener, registered
    on the first HEIF name, or on a file Pillow alone cannot identify); the one opener of the
    project's readers."""
    if Path(path).suffix.lower() in HEIF_SUFFIXES:
        _register_heif()
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        if "HEIF" in Image.OPEN:
            raise
        _register_heif()  # a HEIF file under another name
        return Image.open(path)


# x / 255 in float32 for every 8-bit value: cv2.LUT applies it ten times faster than numpy's
# astype-and-divide (one multi-threaded pass, no temporary), with the same values.
_UINT8_TO_FLOAT = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(1, 256)


def uint8_to_float(array: np.ndarray) -> np.ndarray:
    """8-bit pixels as float32 in [0, 1], exactly ``array / 255`` (what
    :func:`pipeline.io.read_image` returns for an 8-bit image), as a new contiguous array."""
    return cv2.LUT(np.ascontiguousarray(array, dtype=np.uint8), _UINT8_TO_FLOAT)


def load_strict(pil: Image.Image) -> None:
    """Decode fully, raising on truncated data whatever the process-wide Pillow setting.

    face_recognition sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` on import, which would
    make Pillow pad a truncated file with grey instead of failing.
    """
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        pil.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def exif_orientation(pil: Image.Image) -> int:
    """EXIF orientation from the header only (never decodes the pixels)."""
    try:
        if pil.format == "PNG":
            # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after
            # the pixel data (a bomb would be decoded by image_size); read the one before it,
            # where writers put it, from the header.
            raw = pil.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = pil.getexif()
        return int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a corrupt EXIF block must not make a good image unreadable
        return 1


def to_rgb(pil: Image.Image, path: Path) -> np.ndarray:
    """HxWx3 RGB: uint8 for 8-bit images, float32 in [0, 1] for deeper ones."""
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(pil, dtype=np.float32)
        # Pillow opens 8-bit grey as "L", so "I" holds deeper data (16-bit PGM/PNG/TIFF): a
        # dark 16-bit image (all values <= 255) must still be scaled by 65535, not 255.
        peak = 65535.0 if grey.max(initial=0) <= 65535 else float(2**31 - 1)  # 32-bit signed "I"
        return np.repeat((grey / peak).clip(0, 1)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(pil, dtype=np.float32)
        return np.repeat(grey.clip(0, 1)[..., None], 3, axis=2)
    if mode in ("RGB", "RGBA") and pil.format in ("PNG", "TIFF"):
        # Pillow reduces 16-bit colour PNG/TIFF to 8 bits; OpenCV keeps all 16.
        deep = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if deep is not None and deep.dtype == np.uint16 and deep.ndim == 3:
            rgb = deep[..., 2::-1] if deep.shape[2] >= 3 else deep
            return rgb.astype(np.float32) / 65535.0
    return np.asarray(pil.convert("RGB"))


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG stream's first image reaches its end-of-image marker: segments are
    walked by their lengths up to the first start of scan (the EXIF thumbnail's own markers
    lie inside a segment), and after it an FF D9 ends the image (an 0xFF byte of coded data
    is stuffed as FF 00). Bytes after it (MPF images, maker trailers) are allowed."""
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:
            return data.find(b"\xff\xd9", pos + 2) != -1
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def decode_jpeg(pil: Image.Image, path: Path) -> np.ndarray | None:
    """An 8-bit colour JPEG's RGB pixels decoded by OpenCV straight into an array, else None.

    The same pixels as Pillow's decode (both are libjpeg-turbo with its default slow-integer
    DCT and smooth chroma upsampling; tests compare on the shared photos and made ones)
    without Pillow's copy through ``tobytes``: 0.12 s instead of 0.28 s for a 12 MP photo.
    None (Pillow then decodes and names the error) for other formats and modes, and for a
    file that looks cut short: OpenCV would pad it with grey where Pillow refuses it.
    """
    if pil.format != "JPEG" or pil.mode != "RGB":
        return None
    data = Path(path).read_bytes()
    if not _jpeg_complete(data):
        return None
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION  # orientation: applied after
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None or array.shape != (pil.height, pil.width, 3):
        return None
    return array


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1-8) to an HxWxC array, as ImageOps.exif_transpose does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],  # transverse (anti-diagonal)
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return op(array) if op else array


__all__ = [
    "HEIF_SUFFIXES",
    "apply_orientation",
    "decode_jpeg",
    "exif_orientation",
    "load_strict",
    "open_image",
    "to_rgb",
    "uint8_to_float",
]
