"""The network-free half of a photo (pipeline/enhance/photo.py): its 8-bit pixels and faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data

from pipeline.config import CropParams
from pipeline.enhance.photo import read_photo
from pipeline.io import read_image, write_image


def test_read_photo_keeps_8_bit_pixels_and_finds_the_face(tmp_path: Path) -> None:
    """The photo's uint8 pixels (x / 255 is exactly the reader's float image) and its face(s);
    an unreadable file gives its reason instead of raising."""
    photo = write_image(tmp_path / "astronaut.png", skimage.data.astronaut())
    read = read_photo(photo, CropParams().model_dump(), None)
    assert read.image.dtype == np.uint8 and len(read.faces) >= 1
    assert np.array_equal(read.image / np.float32(255), read_image(photo))
    assert set(read.timings) == {"read", "detect"}
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    broken = read_photo(tmp_path / "broken.jpg", CropParams().model_dump(), None)
    assert broken.image is None and broken.reason and broken.faces == []
