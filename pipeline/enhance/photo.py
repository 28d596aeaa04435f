"""A photo's work that needs no network: read it (its 8-bit pixels until a face needs floats)
and find its faces with the model's detector settings. Torch-free on purpose."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.faces.detect import Face as Detection
from pipeline.faces.detect import find_faces
from pipeline.io import ImageReadError, read_alpha, read_image

#: The crop settings that decide which faces the detector finds.
DETECTION_KEYS = ("detector", "detect_max_side", "upsample", "cnn_max_side")


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
    image: np.ndarray, settings: Mapping[str, Any], detector: str | None = None
) -> list[Detection]:
    """The faces of a photo (float, or uint8 as read: the same faces) with the detector
    ``settings`` (a model's crop settings; ``detector`` overrides its choice)."""
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


def read_photo(source: Path, settings: Mapping[str, Any], detector: str | None) -> Photo:
    """Read a photo (its 8-bit pixels until a face needs floats) and find its faces: the part
    of a photo's work that needs no network. It runs in the calling thread: reading the next
    photo in a second thread beside the network ran dlib, OpenCV and torch at once in one
    process, and the test suite then crashed (segfaults in a later garbage collection and at
    exit); on 2 cores it gained nothing measurable for folders."""
    timings: dict[str, float] = {}
    try:
        with timed(timings, "read"):
            image = read_image(source, keep_uint8=True)
            alpha = read_alpha(source)
    except ImageReadError as error:
        return Photo(None, None, [], error.reason, timings)
    with timed(timings, "detect"):
        faces = detect_photo_faces(image, settings, detector)
    return Photo(image, alpha, faces, "", timings)


__all__ = [
    "DETECTION_KEYS",
    "Photo",
    "detect_photo_faces",
    "read_photo",
    "timed",
]
