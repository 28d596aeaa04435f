"""Portrait sources of the demo: the albedo, silhouette, skin and hair of each photograph.

A source is one portrait prepared once: the HOG face box, a GrabCut person mask seeded by it,
and skin / hair masks that derived subjects recolour (see :mod:`pipeline.datasets.demo`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.faces.detect import detect_faces
from pipeline.io import ImageReadError, is_image_name, read_image, safe_name


@dataclass(frozen=True)
class Source:
    """A portrait prepared for rendering: sRGB float image, face box and soft region maps."""

    name: str
    image: np.ndarray  # HxWx3 float32 sRGB in [0, 1]
    face: tuple[float, float, float, float]  # centre x, centre y, width, height (source px)
    face_detected: bool
    person: np.ndarray  # HxW float32 in [0, 1] (GrabCut silhouette, feathered)
    skin: np.ndarray  # HxW float32 in [0, 1], skin colour near the face
    hair: np.ndarray  # HxW float32 in [0, 1], non-skin person pixels around the head


def default_sources() -> list[tuple[str, np.ndarray]]:
    """The public-domain portraits installed packages ship: astronaut and grace_hopper."""
    import matplotlib.cbook
    import skimage.data

    astronaut = skimage.data.astronaut().astype(np.float32) / 255.0
    hopper_path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return [("astronaut", astronaut), ("grace-hopper", read_image(hopper_path))]


@functools.lru_cache(maxsize=1)
def default_prepared_sources() -> tuple[Source, ...]:
    """The default portraits, prepared once per process (face search + segmentation ~1 s).

    The arrays are shared between callers: rendering only reads them.
    """
    return tuple(prepare_source(name, image) for name, image in default_sources())


def folder_sources(
    portraits_dir: str | Path, limit: int | None = None
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Portraits of a folder (sorted by name, one subject per file) and (file, reason) skips.

    Reading stops after ``limit`` readable portraits.
    """
    folder = Path(portraits_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: portraits folder not found")
    sources, skipped = [], []
    for path in sorted(folder.iterdir()):
        if limit is not None and len(sources) >= limit:
            break
        if not path.is_file() or not is_image_name(path):
            continue
        try:
            sources.append((safe_name(path.stem), read_image(path)))
        except ImageReadError as error:
            skipped.append((str(path), error.reason))
    if not sources:
        raise ValueError(f"{folder}: no readable portrait images")
    return sources, skipped


def prepare_source(name: str, image: np.ndarray) -> Source:
    """Find the face (HOG) and segment person, skin and hair of one portrait."""
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    # Very large portraits are reduced first: the demo never needs more than ~2x its output.
    image = _limit_side(image, 2048)
    face, detected = _find_face(image)
    person = _person_mask(image, face)
    skin, hair = _skin_and_hair(image, face, person)
    return Source(name, image, face, detected, person, skin, hair)


def _limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _find_face(image: np.ndarray) -> tuple[tuple[float, float, float, float], bool]:
    """Largest HOG face (centre x, centre y, width, height); the upper centre when none."""
    boxes = detect_faces(image)
    h, w = image.shape[:2]
    if not boxes:
        side = 0.3 * min(w, h)
        return (w / 2, 0.4 * h, side, side), False
    top, right, bottom, left = boxes[0]
    return ((left + right) / 2, (top + bottom) / 2, right - left, bottom - top), True


def _person_mask(image: np.ndarray, face: tuple[float, ...]) -> np.ndarray:
    """GrabCut silhouette seeded by a head ellipse and a torso below the face, feathered."""
    h, w = image.shape[:2]
    scale = min(1.0, 320 / max(h, w))  # GrabCut on a small copy: ~0.2 s instead of ~2 s
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    cx, cy, fw, fh = (v * scale for v in face)
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    head = (round(cx), round(cy - 0.15 * fh))
    cv2.ellipse(mask, head, (round(0.9 * fw), round(1.15 * fh)), 0, 0, 360, cv2.GC_PR_FGD, -1)
    torso = np.array(
        [
            [cx - 0.6 * fw, cy + 0.6 * fh],
            [cx + 0.6 * fw, cy + 0.6 * fh],
            [cx + 2.2 * fw, sh],
            [cx - 2.2 * fw, sh],
        ],
        np.int32,
    )
    cv2.fillPoly(mask, [torso], cv2.GC_PR_FGD)
    cv2.ellipse(
        mask, (round(cx), round(cy)), (round(0.35 * fw), round(0.45 * fh)), 0, 0, 360, 1, -1
    )
    border = max(1, round(0.03 * min(sh, sw)))
    mask[:, :border] = cv2.GC_BGD
    mask[:, -border:] = cv2.GC_BGD
    mask[:border] = cv2.GC_BGD
    bgr = cv2.cvtColor((small * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation uses OpenCV's global RNG
    try:
        models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
        cv2.grabCut(bgr, mask, None, *models, 4, cv2.GC_INIT_WITH_MASK)
        fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    except cv2.error:  # degenerate image (e.g. flat): fall back to the seed shapes
        fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    # Keep the connected blob that holds the face (GrabCut may add stray background bits).
    count, labels = cv2.connectedComponents((fg > 0).astype(np.uint8))
    label = labels[min(sh - 1, round(cy)), min(sw - 1, round(cx))]
    if count > 2 and label > 0:
        fg = (labels == label).astype(np.float32)
    fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(fg, (0, 0), max(1.0, 0.004 * max(h, w)))


def _skin_and_hair(
    image: np.ndarray, face: tuple[float, ...], person: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Skin: colours close (in Lab) to the centre of the face; hair: other pixels around the head."""
    h, w = image.shape[:2]
    cx, cy, fw, fh = face
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    centre = ((xx - cx) / (0.3 * fw)) ** 2 + ((yy - cy - 0.05 * fh) / (0.32 * fh)) ** 2 < 1
    sample = lab[centre]
    median = np.median(sample, axis=0)
    spread = np.median(np.abs(sample - median), axis=0) * 1.4826  # robust sigma (eyes, lips)
    distance = np.sqrt((((lab - median) / np.maximum(2 * spread, (8.0, 4.0, 4.0))) ** 2).sum(-1))
    near_face = ((xx - cx) / (1.3 * fw)) ** 2 + ((yy - cy - 0.3 * fh) / (1.8 * fh)) ** 2 < 1
    skin = np.clip(1.5 - distance, 0, 1) * near_face * (person > 0.5)
    # Close the holes of freckles and pores, then feather.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, round(0.08 * fw)) | 1,) * 2)
    skin = cv2.morphologyEx(skin.astype(np.float32), cv2.MORPH_CLOSE, kernel)
    blur = max(1.0, 0.03 * fw)
    skin = cv2.GaussianBlur(skin, (0, 0), blur)
    around_head = ((xx - cx) / (1.0 * fw)) ** 2 + ((yy - cy + 0.15 * fh) / (1.05 * fh)) ** 2 < 1
    inner_face = ((xx - cx) / (0.42 * fw)) ** 2 + ((yy - cy) / (0.55 * fh)) ** 2 < 1
    hair = around_head & ~inner_face & (yy < cy + 0.3 * fh) & (person > 0.5) & (skin < 0.3)
    hair = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), blur)
    return skin.clip(0, 1), hair.clip(0, 1)
