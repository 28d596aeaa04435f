"""A photo's work that needs no network: read it (its 8-bit pixels until a face needs floats)
and find its faces with the model's detector settings, so that a folder's next photo can go
through it while the network, blend and writer handle the current one, and a single photo
while torch is being imported (:func:`read_ahead`). Torch-free on purpose."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import CropParams
from pipeline.enhance.files import EnhanceError, expand_inputs
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
        faces = detect_photo_faces(image, settings, detector)
    return Photo(image, alpha, faces, "", timings)


@dataclass(frozen=True)
class Ahead:
    """The first photo of a call, being read (and its faces found) in the background."""

    source: Path
    settings: dict[str, Any]
    detector: str | None
    photo: Future[Photo]


def read_ahead(inputs: Sequence[str | os.PathLike], detector: str | None = None) -> Ahead | None:
    """Start reading the first photo of ``inputs`` and finding its faces, with the crop
    params' default detector settings, in a background thread: a cold ``deepflash enhance``
    does it while importing torch and loading the model (which says the settings; see
    :func:`take_ahead`). None when the inputs are not usable (the command then says why)."""
    try:
        first = expand_inputs(inputs)[0]
    except (EnhanceError, OSError):
        return None
    settings = CropParams().model_dump()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    photo = pool.submit(read_photo, first, settings, detector)
    pool.shutdown(wait=False)
    return Ahead(first, settings, detector, photo)


def take_ahead(
    ahead: Ahead | None, source: Path, settings: Mapping[str, Any], detector: str | None
) -> Photo | None:
    """The photo :func:`read_ahead` read, when it is ``source`` with the same detector
    settings as ``settings`` (the model's): the same photo and faces a fresh read would give.
    None otherwise (the caller reads it)."""
    if ahead is None or ahead.source != source or ahead.detector != detector:
        return None
    if any(ahead.settings[key] != settings[key] for key in DETECTION_KEYS):
        return None
    return ahead.photo.result()


__all__ = [
    "DETECTION_KEYS",
    "Ahead",
    "Photo",
    "detect_photo_faces",
    "read_ahead",
    "read_photo",
    "take_ahead",
    "timed",
]
