"""A photo's work that needs no network: read it (its 8-bit pixels until a face needs floats)
and find its faces with the model's detector settings, so that a folder's next photo can go
through it while the network, blend and writer handle the current one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.faces.detect import Face as Detection
from pipeline.faces.detect import find_faces
from pipeline.io import ImageReadError, read_alpha, read_image
from pipeline.models.format import ModelMeta


@contextmanager
def timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the block's seconds to ``timings[stage]`` (nothing when ``timings`` is None)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def detect_photo_faces(
    image: np.ndarray, meta: dict[str, Any], detector: str | None = None
) -> list[Detection]:
    """The faces of a photo (float, or uint8 as read: the same faces) with the detector
    settings the model's training crops were made with (``detector`` overrides its choice)."""
    settings = ModelMeta.parse(meta).crop_settings()
    return find_faces(
        image,
        detector=detector or settings["detector"],
        max_side=settings["detect_max_side"],
        upsample=settings["upsample"],
        cnn_max_side=settings["cnn_max_side"],
        shrink_in_float=True,
    )


@dataclass
class Photo:
    """A photo file read and its faces found (``reason`` says why it could not be read)."""

    image: np.ndarray | None
    alpha: np.ndarray | None
    faces: list[Detection]
    reason: str
    timings: dict[str, float]


def read_photo(source: Path, meta: dict[str, Any], detector: str | None) -> Photo:
    """Read a photo (its 8-bit pixels until a face needs floats) and find its faces: the part
    of a photo's work that needs no network, so a folder's next photo can go through it while
    the network and the writer handle the current one
    (:func:`pipeline.enhance.apply.enhance_paths`)."""
    timings: dict[str, float] = {}
    try:
        with timed(timings, "read"):
            image = read_image(source, keep_uint8=True)
            alpha = read_alpha(source)
    except ImageReadError as error:
        return Photo(None, None, [], error.reason, timings)
    with timed(timings, "detect"):
        faces = detect_photo_faces(image, meta, detector)
    return Photo(image, alpha, faces, "", timings)


__all__ = ["Photo", "detect_photo_faces", "read_photo", "timed"]
