"""The network-free half of a photo (pipeline/enhance/photo.py): read ahead, same answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data

from pipeline.config import CropParams
from pipeline.enhance.photo import read_ahead, read_photo, take_ahead
from pipeline.io import read_image, write_image


def test_read_ahead_gives_the_photo_and_faces_a_fresh_read_gives(tmp_path: Path) -> None:
    """The first photo read in the background (default detector settings) equals a fresh
    read_photo; it is refused for another photo, another detector or other settings."""
    photo = write_image(tmp_path / "astronaut.png", skimage.data.astronaut())
    other = write_image(tmp_path / "other.png", skimage.data.astronaut()[:, ::-1])
    settings = CropParams().model_dump()
    assert take_ahead(read_ahead([str(other)]), photo, settings, None) is None
    assert take_ahead(read_ahead([str(tmp_path)]), photo, settings, "hog") is None
    changed = {**settings, "detect_max_side": settings["detect_max_side"] // 2}
    assert take_ahead(read_ahead([str(photo)]), photo, changed, None) is None
    early = take_ahead(read_ahead([str(photo)]), photo, settings, None)
    fresh = read_photo(photo, settings, None)
    assert early is not None and early.faces == fresh.faces and len(fresh.faces) >= 1
    assert early.image.dtype == np.uint8
    assert np.array_equal(early.image, fresh.image)
    assert np.array_equal(early.image / np.float32(255), read_image(photo))
    assert read_ahead([str(tmp_path / "missing.jpg")]) is None
