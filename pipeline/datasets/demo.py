"""Synthetic flash/studio portrait pairs: the demo dataset and a test fixture with known answers.

Each pair is rendered from one portrait photograph, treated as the albedo of a simple scene:
a person (GrabCut silhouette seeded by the HOG face box) in front of a flat background. A depth
proxy gives every pixel a distance from the camera (face near, body a little further, background
far) and a normal (an ellipsoid for the head, a cylinder for the body, the albedo's gradients as
bump detail). Two images are lit from that scene:

* flash: a point light a few centimetres beside the lens. Irradiance falls off with the inverse
  square of the distance to the light, so the background darkens; Lambert shading plus
  Blinn-Phong specular highlights, stronger and tighter on the skin of the face (shine); a hard
  shadow of the person on the background, offset opposite the flash; cooler white balance; a
  little ambient light; Gaussian sensor noise.
* studio: soft, even, warmer light (large key light from one side, no fall-off, no shadow).

The studio image is then misaligned by a known small affine transform (rotation, scale, shear,
shift) and the 2x3 matrix is written to ``truth.csv`` with the registration contract's
convention: it maps a flash pixel (x, y) to the matching studio pixel, so
``cv2.warpAffine(studio, M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)`` aligns the
studio image onto the flash image.

Sources: scikit-image's ``astronaut`` and matplotlib's ``grace_hopper`` (both public domain) or a
folder of portraits, one subject per file. When there are fewer sources than subjects, further
subjects are derived from the same photographs by honest variation: another framing (face size
and position in the frame), mirroring, a skin-tone shift and a hair-colour shift. Poses are
small variations of head position, zoom and camera roll. Everything is deterministic by seed.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.datasets.truth import TRUTH_COLUMNS
from pipeline.faces.detect import detect_faces
from pipeline.io import ImageReadError, is_image_name, read_image, safe_name, write_image

# Skin-tone gains (linear RGB) for derived subjects; the first entry (no change) is the original.
_SKIN_GAINS = (
    (1.00, 1.00, 1.00),
    (0.55, 0.43, 0.35),  # deep brown
    (0.78, 0.64, 0.50),  # medium brown
    (0.86, 0.80, 0.70),  # olive
    (1.06, 1.03, 1.00),  # lighter
)
# Hair-colour gains (linear RGB, applied to the non-skin pixels around the head).
_HAIR_GAINS = (
    (0.30, 0.28, 0.27),  # black
    (0.62, 0.45, 0.33),  # dark brown
    (1.25, 0.62, 0.38),  # auburn
    (1.70, 1.45, 0.95),  # blond
    (1.10, 1.10, 1.12),  # grey
)
_FOCAL_FRACTION = 0.75  # phone main camera: focal length ~0.75 x image width (~67 deg FOV)
_HEAD_RADIUS_M = 0.09  # half a head width, metres: depth of the head ellipsoid


@dataclass(frozen=True)
class Misalignment:
    """A known affine misalignment of the studio shot, about the image centre.

    ``matrix`` maps a flash pixel (x, y) to the studio pixel showing the same scene point:
    ``M = T(c + shift) . R(rotation) . scale . Shear(shear) . T(-c)`` with pixel centres at integer
    coordinates, c the image centre, R = [[cos, -sin], [sin, cos]] (clockwise on screen, since
    y points down) and Shear = [[1, shear], [0, 1]].
    """

    rotation_deg: float
    scale: float
    shear: float
    shift_x: float
    shift_y: float

    def matrix(self, width: int, height: int) -> np.ndarray:
        """The 2x3 float64 matrix in full-resolution pixel coordinates of a width x height pair."""
        theta = math.radians(self.rotation_deg)
        cos, sin = math.cos(theta), math.sin(theta)
        linear = (
            np.array([[cos, -sin], [sin, cos]]) * self.scale @ np.array([[1.0, self.shear], [0, 1]])
        )
        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        offset = centre + np.array([self.shift_x, self.shift_y]) - linear @ centre
        return np.hstack([linear, offset[:, None]])


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


@dataclass(frozen=True)
class SubjectSpec:
    """Everything random about one demo subject (drawn from the seed)."""

    index: int
    name: str
    source: int
    variant: int
    mirror: bool
    skin_gain: tuple[float, float, float]
    hair_gain: tuple[float, float, float] | None
    face_fraction: float  # face-box width / image width
    face_x: float  # face centre, fraction of the width
    face_y: float  # face centre, fraction of the height
    face_distance_m: float
    background_distance_m: float
    flash_offset_m: tuple[float, float]  # flash position beside the lens (x right, y down)
    studio_key: tuple[float, float]  # direction of the studio key light in the image plane
    flash_white_balance: tuple[float, float, float]
    studio_white_balance: tuple[float, float, float]


@dataclass(frozen=True)
class PoseSpec:
    """One pose of a subject: head position, zoom, camera roll and the studio misalignment."""

    index: int
    name: str
    shift: tuple[float, float]  # face-centre shift, fractions of width and height
    zoom: float
    roll_deg: float
    misalignment: Misalignment


@dataclass
class RenderedPair:
    """One rendered pair (float32 sRGB HxWx3) and the studio misalignment matrix."""

    flash: np.ndarray
    studio: np.ndarray  # misaligned: what the demo writes
    studio_aligned: np.ndarray  # pixel-aligned with the flash image (before the misalignment)
    matrix: np.ndarray  # 2x3, flash pixel -> studio pixel
    face: tuple[float, float, float, float]  # face centre x, y, width, height in flash px


@dataclass
class DemoPair:
    """A written demo pair: where it is and its ground-truth misalignment."""

    subject: str
    pose: str
    flash: Path
    studio: Path
    matrix: np.ndarray
    misalignment: Misalignment
    face: tuple[float, float, float, float]  # face centre x, y, width, height in flash px


@dataclass
class DemoSummary:
    """What :func:`generate_demo` wrote."""

    out_dir: Path
    pairs: list[DemoPair]
    subjects: list[SubjectSpec]
    sources: list[str]
    faces_not_found: list[str] = field(default_factory=list)
    skipped_portraits: list[tuple[str, str]] = field(default_factory=list)

    def metrics(self) -> dict:
        """Counts for metrics/demo.json."""
        return {
            "pairs": len(self.pairs),
            "subjects": len(self.subjects),
            "poses": len({p.pose for p in self.pairs}),
            "sources": len(self.sources),
            "derived_subjects": sum(1 for s in self.subjects if s.variant > 0),
            "sources_without_face": len(self.faces_not_found),
            "skipped_portraits": len(self.skipped_portraits),
        }


# ----------------------------------------------------------------------------------- sources
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


# ------------------------------------------------------------------------------------- specs
def make_subject_specs(
    source_names: Sequence[str], n_subjects: int, seed: int
) -> list[SubjectSpec]:
    """Subject i uses source i mod len(sources); later rounds are mirrored/recoloured variants.

    Each subject has its own random stream (seed, i), so adding subjects keeps the others.
    """
    specs = []
    for i in range(n_subjects):
        rng = np.random.default_rng([seed, 1, i])
        source, variant = i % len(source_names), i // len(source_names)
        if variant == 0:
            skin, hair = _SKIN_GAINS[0], None
        else:
            skin = _SKIN_GAINS[1 + int(rng.integers(len(_SKIN_GAINS) - 1))]
            hair = _HAIR_GAINS[int(rng.integers(len(_HAIR_GAINS)))]
        angle = rng.uniform(0, 2 * math.pi)
        baseline = rng.uniform(0.04, 0.07)  # flash 4-7 cm from the lens
        key = rng.uniform(-1, 1)
        jitter = rng.uniform(-0.03, 0.03, size=3)
        name = f"s{i:02d}-{source_names[source]}" + (f"-v{variant}" if variant else "")
        specs.append(
            SubjectSpec(
                index=i,
                name=name,
                source=source,
                variant=variant,
                mirror=variant % 2 == 1,
                skin_gain=tuple(float(g) for g in skin),
                hair_gain=None if hair is None else tuple(float(g) for g in hair),
                face_fraction=float(rng.uniform(0.34, 0.46)),
                face_x=float(rng.uniform(0.45, 0.55)),
                face_y=float(rng.uniform(0.40, 0.46)),
                face_distance_m=float(rng.uniform(0.40, 0.55)),
                background_distance_m=float(rng.uniform(1.2, 2.2)),
                flash_offset_m=(baseline * math.cos(angle), baseline * math.sin(angle)),
                studio_key=(float(key), -0.6),
                flash_white_balance=tuple(float(v) for v in np.array([0.88, 1.0, 1.14]) + jitter),
                studio_white_balance=tuple(
                    float(v) for v in np.array([1.08, 1.0, 0.86]) + jitter[::-1]
                ),
            )
        )
    return specs


def make_pose_specs(
    subject: SubjectSpec,
    poses: int,
    seed: int,
    width: int,
    height: int,
    max_rotation_deg: float,
    max_scale: float,
    max_shift_frac: float,
    max_shear: float,
) -> list[PoseSpec]:
    """Poses of one subject, each with its own stream (seed, subject, pose)."""
    specs = []
    for j in range(poses):
        rng = np.random.default_rng([seed, 2, subject.index, j])
        misalignment = Misalignment(
            rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
            scale=float(1 + rng.uniform(-max_scale, max_scale)),
            shear=float(rng.uniform(-max_shear, max_shear)),
            shift_x=float(rng.uniform(-max_shift_frac, max_shift_frac) * width),
            shift_y=float(rng.uniform(-max_shift_frac, max_shift_frac) * height),
        )
        specs.append(
            PoseSpec(
                index=j,
                name=f"p{j}",
                shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03))),
                zoom=float(rng.uniform(0.95, 1.05)),
                roll_deg=float(rng.uniform(-6, 6)),
                misalignment=misalignment,
            )
        )
    return specs


# ----------------------------------------------------------------------------------- render
def render_pair(
    source: Source,
    subject: SubjectSpec,
    pose: PoseSpec,
    width: int,
    height: int,
    noise_sigma: float,
    seed: int,
    flash: bool = True,
) -> RenderedPair:
    """Render one flash/studio pair of ``subject`` in ``pose`` at width x height.

    With ``flash=False`` the flash shot is lit like the studio one (no fall-off, shadow,
    highlights or colour cast), which makes both images directly comparable in tests.
    """
    matrix = pose.misalignment.matrix(width, height)
    inverse = cv2.invertAffineTransform(matrix)
    # The studio shot sees a slightly different part of the scene: render a canvas that covers
    # both views, so the misaligned studio image has real content up to its borders.
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
    )
    seen = corners @ inverse.T
    pad_x = int(math.ceil(max(0.0, -seen[:, 0].min(), seen[:, 0].max() - (width - 1)))) + 4
    pad_y = int(math.ceil(max(0.0, -seen[:, 1].min(), seen[:, 1].max() - (height - 1)))) + 4
    scene = _frame_scene(source, subject, pose, width, height, pad_x, pad_y, seed)

    studio_canvas = _studio_light(scene, subject)
    if flash:
        flash_canvas = _flash_light(scene, subject, width)
    else:
        flash_canvas = studio_canvas.copy()
    fx, fy, fw, fh = scene.face
    flash_img = flash_canvas[pad_y : pad_y + height, pad_x : pad_x + width]
    if noise_sigma > 0:
        rng = np.random.default_rng([seed, 3, subject.index, pose.index])
        flash_img = flash_img + rng.standard_normal(flash_img.shape, dtype=np.float32) * np.float32(
            noise_sigma
        )
    studio_aligned = studio_canvas[pad_y : pad_y + height, pad_x : pad_x + width]
    # studio(q) = scene(M^-1 q): canvas pixel = M^-1 q + pad.
    to_canvas = inverse.copy()
    to_canvas[:, 2] += (pad_x, pad_y)
    studio = cv2.warpAffine(
        studio_canvas,
        to_canvas,
        (width, height),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return RenderedPair(
        flash=np.ascontiguousarray(flash_img.clip(0, 1), dtype=np.float32),
        studio=studio.clip(0, 1).astype(np.float32),
        studio_aligned=np.ascontiguousarray(studio_aligned.clip(0, 1), dtype=np.float32),
        matrix=matrix,
        face=(fx - pad_x, fy - pad_y, fw, fh),
    )


@dataclass
class _Scene:
    albedo: np.ndarray  # linear RGB
    person: np.ndarray
    skin: np.ndarray  # skin of the head (where shine goes)
    depth: np.ndarray  # metres
    normal: tuple[np.ndarray, np.ndarray, np.ndarray]  # unit (x, y, z), z towards the camera
    centre: tuple[float, float]  # principal point (canvas px)
    face: tuple[float, float, float, float]  # centre x, centre y, width, height (canvas px)
    oil: np.ndarray  # smooth [0, 1] texture: where skin shines more


def _frame_scene(
    source: Source,
    subject: SubjectSpec,
    pose: PoseSpec,
    width: int,
    height: int,
    pad_x: int,
    pad_y: int,
    seed: int,
) -> _Scene:
    cw, ch = width + 2 * pad_x, height + 2 * pad_y
    fcx, fcy, fw, fh = source.face
    image, person, skin, hair = source.image, source.person, source.skin, source.hair
    theta = math.radians(pose.roll_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # Source px per output px. The rolled canvas must fit inside the photo: a tightly cropped
    # portrait gets a larger face instead of mirrored borders.
    extent = (abs(cos) * cw + abs(sin) * ch, abs(sin) * cw + abs(cos) * ch)
    scale = fw / (subject.face_fraction * pose.zoom * width)
    scale = min(scale, image.shape[1] / extent[0], image.shape[0] / extent[1])
    if scale > 1.5:
        # Shrinking a lot: area-average first so the warp does not alias.
        factor = 1.0 / scale
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image, person, skin, hair = (
            cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (image, person, skin, hair)
        )
        fcx, fcy, fw, fh = fcx * factor, fcy * factor, fw * factor, fh * factor
        scale = min(scale * factor, image.shape[1] / extent[0], image.shape[0] / extent[1])
    rot = np.array([[cos, -sin], [sin, cos]])
    mirror = np.diag([-1.0 if subject.mirror else 1.0, 1.0])
    linear = scale * rot @ mirror  # canvas offset -> source offset
    # Where the face should land, then the canvas centre's place in the photo, moved (if need
    # be) so that the canvas stays inside the photo; the face lands where that puts it.
    centre = np.array([(cw - 1) / 2, (ch - 1) / 2])
    wanted = np.array(
        [
            (subject.face_x + pose.shift[0]) * width + pad_x,
            (subject.face_y + pose.shift[1]) * height + pad_y,
        ]
    )
    face_src = np.array([fcx, fcy])
    half = scale * np.array(extent) / 2
    limit = np.array([image.shape[1], image.shape[0]], dtype=np.float64) - 0.5 - half
    centre_src = np.clip(
        face_src + linear @ (centre - wanted), np.minimum(-0.5 + half, limit), limit
    )
    to_source = np.hstack([linear, (centre_src - linear @ centre)[:, None]])
    target = centre + np.linalg.solve(linear, face_src - centre_src)

    def warp(a: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.warpAffine(
            a,
            to_source,
            (cw, ch),
            flags=interpolation | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )

    srgb = warp(image, cv2.INTER_CUBIC).clip(0, 1)
    person = warp(person, cv2.INTER_LINEAR)
    skin = warp(skin, cv2.INTER_LINEAR)
    hair = warp(hair, cv2.INTER_LINEAR)

    albedo = _to_linear(srgb)
    skin_gain = np.asarray(subject.skin_gain, np.float32)
    albedo = albedo * (1 + skin[..., None] * (skin_gain - 1))
    if subject.hair_gain is not None:
        hair_gain = np.asarray(subject.hair_gain, np.float32)
        albedo = albedo * (1 + hair[..., None] * (hair_gain - 1))
    albedo = albedo.clip(0, 1)

    # Depth proxy and normals: head ellipsoid, body cylinder, flat background.
    face_w, face_h = fw / scale, fh / scale
    cx, cy = target
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    # Head axes: the photo's upright axes as they appear in the rolled canvas (R(theta)).
    dx, dy = xx - cx, yy - cy
    ux = (cos * dx - sin * dy) / (0.8 * face_w)
    uy = (sin * dx + cos * dy + 0.15 * face_h) / (1.1 * face_h)
    r2 = ux * ux + uy * uy
    head = (1 - _smoothstep(0.75, 1.05, np.sqrt(r2))) * person
    nz_head = np.sqrt(np.clip(1 - r2, 0.05, 1))
    hx = cos * ux + sin * uy
    hy = -sin * ux + cos * uy
    bx = np.clip((xx - cx) / (2.6 * face_w), -0.85, 0.85)
    nz_body = np.sqrt(1 - bx * bx)

    # Albedo gradients as gentle bump detail (nose, eye sockets, folds catch the light); the
    # Sobel kernel's 8x gain is divided out, the height scale grows with the face.
    lum = cv2.GaussianBlur(albedo.mean(axis=2), (0, 0), max(1.0, face_w / 60))
    bump = 0.03 * face_w / 8
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) * bump
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3) * bump
    nx = head * hx + (person - head) * bx * 0.8 - person * gx
    ny = head * hy - person * gy
    nz = head * nz_head + (person - head) * nz_body + (1 - person)
    norm = 1 / (np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6)
    normal = (nx * norm, ny * norm, nz * norm)

    d_face = subject.face_distance_m
    depth_head = d_face + _HEAD_RADIUS_M * (1 - nz_head)
    depth_body = d_face + 0.08 + 0.12 * (1 - nz_body)
    depth = (1 - person) * subject.background_distance_m + (
        head * depth_head + (person - head) * depth_body
    )

    rng = np.random.default_rng([seed, 4, subject.index])
    oil = cv2.resize(
        rng.uniform(0, 1, size=(8, 6)).astype(np.float32), (cw, ch), interpolation=cv2.INTER_CUBIC
    ).clip(0, 1)
    # T-zone (forehead and nose) shines most.
    t_zone = np.exp(-(((xx - cx) / (0.18 * face_w)) ** 2)) + np.exp(
        -(((yy - cy + 0.35 * face_h) / (0.2 * face_h)) ** 2)
    )
    oil = (0.35 + 0.65 * oil) * (0.4 + 0.6 * t_zone.clip(0, 1))
    return _Scene(
        albedo=albedo,
        person=person,
        skin=skin * head,
        depth=depth.astype(np.float32),
        normal=tuple(n.astype(np.float32) for n in normal),
        centre=((cw - 1) / 2, (ch - 1) / 2),
        face=(float(cx), float(cy), float(face_w), float(face_h)),
        oil=oil.astype(np.float32),
    )


def _flash_light(scene: _Scene, subject: SubjectSpec, width: int) -> np.ndarray:
    """Point light beside the lens: inverse square, Lambert, Blinn-Phong, hard shadow."""
    ch, cw = scene.depth.shape
    focal = _FOCAL_FRACTION * width
    z = scene.depth
    # Scene point in camera coordinates (metres; x right, y down, z into the scene).
    px = (np.arange(cw, dtype=np.float32)[None, :] - np.float32(scene.centre[0])) / focal * z
    py = (np.arange(ch, dtype=np.float32)[:, None] - np.float32(scene.centre[1])) / focal * z
    lx, ly = subject.flash_offset_m
    # Unit vectors from the point to the light (l) and to the camera (v), z towards the camera.
    lvx, lvy = lx - px, ly - py
    dist2 = lvx * lvx + lvy * lvy + z * z
    inv = 1 / np.sqrt(dist2)
    lvx, lvy, lvz = lvx * inv, lvy * inv, z * inv
    inv = 1 / np.sqrt(px * px + py * py + z * z)
    vx, vy, vz = -px * inv, -py * inv, z * inv
    nx, ny, nz = scene.normal
    cos = np.clip(nx * lvx + ny * lvy + nz * lvz, 0, 1)
    irradiance = np.float32(subject.face_distance_m**2) / dist2  # 1 on the face, 1/d^2 elsewhere

    # Hard shadow: the person's silhouette projected from the flash onto the background plane
    # lands shifted by f * offset * (1/d_bg - 1/d_person) pixels (opposite the flash).
    d_edge = subject.face_distance_m + _HEAD_RADIUS_M
    k = focal * (1 / subject.background_distance_m - 1 / d_edge)
    shift = np.float32([[1, 0, k * lx], [0, 1, k * ly]])
    # A small flash casts a hard edge: harden the feathered silhouette before shifting it.
    hard = _smoothstep(0.4, 0.6, scene.person)
    occluder = cv2.warpAffine(hard, shift, (cw, ch), borderMode=cv2.BORDER_REPLICATE)
    shadow = cv2.GaussianBlur(occluder, (0, 0), 1.0) * (1 - scene.person)
    direct = irradiance * cos * (1 - shadow)

    hx, hy, hz = lvx + vx, lvy + vy, lvz + vz
    n_dot_h = np.clip((nx * hx + ny * hy + nz * hz) / np.sqrt(hx * hx + hy * hy + hz * hz), 0, 1)
    shine = 0.3 * scene.skin * scene.oil * n_dot_h**60  # oily skin: tight, bright
    gloss = 0.06 * scene.person * n_dot_h**12  # clothes and hair: weak, broad
    specular = (shine + gloss) * irradiance * (cos > 0)

    ambient = 0.04
    flash_wb = np.asarray(subject.flash_white_balance, np.float32)
    linear = (scene.albedo * (direct + ambient)[..., None] + specular[..., None]) * flash_wb
    return _to_srgb(linear)


def _studio_light(scene: _Scene, subject: SubjectSpec) -> np.ndarray:
    """Large soft key light and fill: even, no fall-off, no hard shadow, warm."""
    kx, ky = subject.studio_key
    kz = 1.6
    norm = math.sqrt(kx * kx + ky * ky + kz * kz)
    nx, ny, nz = scene.normal
    n_dot_k = (nx * kx + ny * ky + nz * kz) / norm
    wrap = (n_dot_k + 0.6) / 1.6  # wrapped Lambert: soft terminator
    light = 0.78 + 0.22 * wrap.clip(0, 1)
    # A gentle brightness gradient across the backdrop, from the key side.
    ch, cw = scene.depth.shape
    ramp = np.linspace(-1, 1, cw, dtype=np.float32)[None, :] * np.float32(0.06 * kx)
    light = light + (1 - scene.person) * ramp
    studio_wb = np.asarray(subject.studio_white_balance, np.float32)
    return _to_srgb(scene.albedo * light[..., None] * studio_wb)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.power(np.clip(srgb, 0, 1), np.float32(2.2))


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.power(np.clip(linear, 0, 1), np.float32(1 / 2.2)).astype(np.float32)


# --------------------------------------------------------------------------------- generate
def generate_demo(
    out_dir: str | Path,
    *,
    n_subjects: int = 6,
    poses: int = 2,
    width: int = 768,
    height: int = 1024,
    seed: int = 0,
    portraits_dir: str | Path | None = None,
    max_rotation_deg: float = 3.0,
    max_scale: float = 0.03,
    max_shift_frac: float = 0.02,
    max_shear: float = 0.02,
    noise_sigma: float = 0.01,
    flash: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> DemoSummary:
    """Write ``<subject>/<pose>_flash.jpg``, ``<pose>_studio.jpg``, truth.csv, contact_sheet.png.

    ``out_dir`` must be empty or absent; with ``overwrite`` a previous demo folder (one holding
    truth.csv) is replaced. ``flash=False`` lights the flash shot like the studio one (tests);
    ``progress`` shows a progress bar. Returns what was written, with each pair's matrix.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: not empty (use overwrite to replace a demo)")
        if not (out_dir / "truth.csv").is_file():
            raise FileExistsError(f"{out_dir}: not a demo folder (no truth.csv); not replacing it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if portraits_dir is None:
        sources, skipped = list(default_prepared_sources())[:n_subjects], []
    else:
        raw_sources, skipped = folder_sources(portraits_dir, limit=n_subjects)
        sources = [prepare_source(name, image) for name, image in raw_sources]
    subjects = make_subject_specs([s.name for s in sources], n_subjects, seed)

    limits = (max_rotation_deg, max_scale, max_shift_frac, max_shear)
    work = [
        (subject, pose)
        for subject in subjects
        for pose in make_pose_specs(subject, poses, seed, width, height, *limits)
    ]
    pairs, rows, thumbs = [], [], []
    for subject, pose in tqdm(work, desc="demo", unit="pair", disable=not progress):
        rendered = render_pair(
            sources[subject.source], subject, pose, width, height, noise_sigma, seed, flash=flash
        )
        folder = out_dir / subject.name
        flash_path = write_image(folder / f"{pose.name}_flash.jpg", rendered.flash)
        studio_path = write_image(folder / f"{pose.name}_studio.jpg", rendered.studio)
        m = rendered.matrix
        pairs.append(
            DemoPair(
                subject.name,
                pose.name,
                flash_path,
                studio_path,
                m,
                pose.misalignment,
                rendered.face,
            )
        )
        rows.append(
            {
                "subject": subject.name,
                "pose": pose.name,
                "flash": flash_path.relative_to(out_dir).as_posix(),
                "studio": studio_path.relative_to(out_dir).as_posix(),
                "width": width,
                "height": height,
                "a": m[0, 0],
                "b": m[0, 1],
                "tx": m[0, 2],
                "c": m[1, 0],
                "d": m[1, 1],
                "ty": m[1, 2],
                **asdict(pose.misalignment),
                **dict(zip(("face_x", "face_y", "face_w", "face_h"), rendered.face, strict=True)),
            }
        )
        thumbs.append((f"{subject.name} {pose.name}", rendered.flash, rendered.studio))

    pd.DataFrame(rows, columns=list(TRUTH_COLUMNS)).to_csv(
        out_dir / "truth.csv", index=False, float_format="%.12g"
    )
    write_image(out_dir / "contact_sheet.png", contact_sheet(thumbs, columns=2 * poses))
    return DemoSummary(
        out_dir=out_dir,
        pairs=pairs,
        subjects=subjects,
        sources=[s.name for s in sources],
        faces_not_found=[s.name for s in sources if not s.face_detected],
        skipped_portraits=skipped,
    )


def contact_sheet(
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], columns: int = 4, thumb_width: int = 144
) -> np.ndarray:
    """A grid of flash | studio thumbnails with labels, as uint8 RGB."""
    if not pairs:
        return np.zeros((8, 8, 3), np.uint8)
    h0, w0 = pairs[0][1].shape[:2]
    tw, th = thumb_width, max(1, round(thumb_width * h0 / w0))
    cells = []
    for label, flash_img, studio_img in pairs:
        for kind, img in (("flash", flash_img), ("studio", studio_img)):
            cell = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            cell = (cell.clip(0, 1) * 255).round().astype(np.uint8)
            cell[:26] = (cell[:26] * 0.35).astype(np.uint8)  # dark band: labels stay legible
            for line, text in enumerate((label, kind)):
                cv2.putText(
                    cell,
                    text,
                    (3, 10 + 11 * line),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.3,
                    (255, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
            cells.append(cell)
    rows = math.ceil(len(cells) / columns)
    gap = 4
    sheet = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 255, dtype=np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = cell
    return sheet


__all__ = [
    "DemoPair",
    "DemoSummary",
    "Misalignment",
    "PoseSpec",
    "RenderedPair",
    "Source",
    "SubjectSpec",
    "contact_sheet",
    "default_prepared_sources",
    "default_sources",
    "folder_sources",
    "generate_demo",
    "make_pose_specs",
    "make_subject_specs",
    "prepare_source",
    "render_pair",
]
