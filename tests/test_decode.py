"""pipeline/decode.py: OpenCV's JPEG decode gives Pillow's pixels, and refuses what is cut short."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.decode import _jpeg_complete, decode_jpeg


def _photo(height: int = 61, width: int = 83) -> np.ndarray:
    """Smooth shading plus noise: chroma upsampling and the DCT both matter."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3 % 256, y * 4 % 256, (x + y) * 2 % 256], axis=2)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _pillow(path: Path) -> np.ndarray:
    with Image.open(path) as pil:
        return np.asarray(pil.convert("RGB"))


def _decoded(path: Path) -> np.ndarray | None:
    with Image.open(path) as pil:
        return decode_jpeg(pil, path)


SAVES = {
    "420": {"quality": 90},
    "444": {"quality": 95, "subsampling": 0},
    "422": {"quality": 80, "subsampling": 1},
    "progressive": {"quality": 85, "progressive": True},
    "optimized": {"quality": 70, "optimize": True},
}


@pytest.mark.parametrize("name", sorted(SAVES))
def test_opencv_decode_equals_pillow(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.jpg"
    Image.fromarray(_photo()).save(path, **SAVES[name])
    decoded = _decoded(path)
    assert decoded is not None
    np.testing.assert_array_equal(decoded, _pillow(path))


def test_exif_thumbnail_and_trailer_after_the_image(tmp_path: Path) -> None:
    """An EXIF block holding its own JPEG thumbnail (FF D8 .. FF D9 inside APP1) and bytes
    after the end of the image (maker trailers, MPF) decode; the same file cut in its coded
    data does not (Pillow then reports it truncated)."""
    thumb = io.BytesIO()
    Image.fromarray(_photo(16, 16)).save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    path = tmp_path / "exif.jpg"
    Image.fromarray(_photo()).save(path, quality=90, exif=exif.tobytes() + thumb.getvalue())
    data = path.read_bytes()
    assert _jpeg_complete(data)
    trailer = tmp_path / "trailer.jpg"
    trailer.write_bytes(data + b"SEFT" + bytes(range(256)))
    np.testing.assert_array_equal(_decoded(trailer), _pillow(path))
    for keep in (len(data) - 2, len(data) // 2, 300):
        cut = tmp_path / f"cut{keep}.jpg"
        cut.write_bytes(data[:keep])
        assert not _jpeg_complete(cut.read_bytes()), keep
        if keep > 1000:  # (cut in its header, Pillow cannot even open it)
            assert _decoded(cut) is None, keep


def test_other_modes_and_formats_are_left_to_pillow(tmp_path: Path) -> None:
    grey, png = tmp_path / "grey.jpg", tmp_path / "photo.png"
    Image.fromarray(_photo()[..., 0]).save(grey)
    Image.fromarray(_photo()).save(png)
    assert _decoded(grey) is None and _decoded(png) is None


def test_shared_photos_decode_like_pillow(shared_data: Path) -> None:
    """Every JPEG of the shared data (camera and web photos): the same pixels."""
    files = sorted(
        p
        for p in shared_data.rglob("*")
        if p.suffix.lower() in (".jpg", ".jpeg") and p.stat().st_size
    )
    assert files
    compared = 0
    for path in files:
        decoded = _decoded(path)
        if decoded is None:
            with Image.open(path) as pil:
                # only other formats (a WebP named .jpg) and modes go to Pillow
                assert (pil.format, pil.mode) != ("JPEG", "RGB"), path
            continue
        np.testing.assert_array_equal(decoded, _pillow(path), err_msg=str(path))
        compared += 1
    assert compared >= 100
