"""Harder face scenes made from the shared portraits, the way real selfies are hard.

A portrait is shrunk so that its face box (the upright HOG box, brows to chin) is a given
fraction of the canvas height, optionally partly covered by a skin-toned "hand" (over the chin
or a cheek, with a forearm running out of the picture), rotated about the face centre by the
roll angle, and pasted with a soft vignette onto a cluttered background (random colour field,
rectangles, discs, lines and text). Everything derives from one seed: the same arguments give
the same pixels. Used by tests/test_faces_detect.py and benchmarks/bench_faces.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CANVAS = (800, 600)
"""Default canvas (height, width): detection copies are at most 800 px, so larger canvases
would show the detector the same image."""

OCCLUDERS = ("none", "chin", "cheek")


@dataclass(frozen=True)
class Scene:
    """A made-up photo and where its face is: centre (x, y) in pixel coordinates (pixel
    centres at integers), face box height in pixels, roll in degrees (counter-clockwise on
    screen, OpenCV's convention)."""

    image: np.ndarray
    centre: tuple[float, float]
    face_height: float
    roll: float


def clutter(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A busy float32 RGB background: smooth colour field, shapes, lines, text, sensor noise."""
    coarse = rng.random((6, 8, 3)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # Drawn in 8 bits: OpenCV draws text on 8-bit images only.
    image = np.ascontiguousarray(np.clip(40 + 180 * field, 0, 255).astype(np.uint8))
    side = max(height, width)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        x, y = int(rng.integers(width)), int(rng.integers(height))
        size = int(rng.integers(side // 40, side // 6))
        if kind == 0:
            corner = (x + size, y + int(size * rng.uniform(0.3, 2)))
            cv2.rectangle(image, (x, y), corner, colour, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            end = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, size=5))
            cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, size / 60, colour, 2)
    noisy = image.astype(np.float32) / 255 + rng.normal(0.0, 0.01, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 1)


def _soft_ellipse(shape: tuple[int, int], centre, axes, angle: float = 0.0) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(
        mask,
        (round(centre[0] * 16), round(centre[1] * 16)),
        (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16))),
        angle,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        4,
    )
    blur = max(1.0, 0.08 * min(axes))
    return cv2.GaussianBlur(mask, (0, 0), blur)


def add_hand(portrait: np.ndarray, box, where: str, rng: np.random.Generator) -> np.ndarray:
    """A skin-toned hand over the chin or a cheek of ``box`` (top, right, bottom, left), with a
    forearm down to the bottom edge; shaded, with knuckle creases. Returns a new image."""
    top, right, bottom, left = box
    bw, bh = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2
    # Skin colour from the face's own centre, a little varied (another person's hand).
    patch = portrait[
        int(cy - 0.1 * bh) : int(cy + 0.1 * bh), int(cx - 0.1 * bw) : int(cx + 0.1 * bw)
    ]
    skin = np.median(patch.reshape(-1, 3), axis=0) * rng.uniform(0.9, 1.08, 3)
    height, width = portrait.shape[:2]
    if where == "chin":
        centre, axes, tilt = (cx + 0.05 * bw, bottom - 0.02 * bh), (0.42 * bw, 0.2 * bh), 0.0
        arm_x = cx + 0.05 * bw
    elif where == "cheek":
        centre, axes, tilt = (left + 0.12 * bw, top + 0.72 * bh), (0.2 * bw, 0.36 * bh), -15.0
        arm_x = left + 0.05 * bw
    else:
        raise ValueError(f"unknown occluder {where!r}; use one of {OCCLUDERS}")
    alpha = _soft_ellipse((height, width), centre, axes, tilt)
    arm = np.zeros((height, width), np.float32)
    half = 0.22 * bw
    corners = np.array(
        [
            [arm_x - half, centre[1]],
            [arm_x + half, centre[1]],
            [arm_x + 1.6 * half, height],
            [arm_x - 1.2 * half, height],
        ]
    )
    cv2.fillConvexPoly(arm, np.round(corners * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    alpha = np.maximum(alpha, cv2.GaussianBlur(arm, (0, 0), max(1.0, 0.03 * bw)))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = 0.85 + 0.25 * np.clip((xx - centre[0]) / (2 * axes[0]) + 0.5, 0, 1)  # lit from one side
    hand = skin[None, None, :] * shade[..., None]
    for k in (-1, 0, 1):  # knuckle creases: thin darker lines across the hand
        y = int(centre[1] + k * 0.35 * axes[1])
        x0, x1 = int(centre[0] - 0.7 * axes[0]), int(centre[0] + 0.7 * axes[0])
        cv2.line(
            hand, (x0, y), (x1, y), tuple(float(v) for v in 0.8 * skin), max(1, int(0.01 * bw))
        )
    hand = hand + rng.normal(0.0, 0.01, hand.shape).astype(np.float32)
    return np.clip(portrait * (1 - alpha[..., None]) + hand * alpha[..., None], 0, 1)


def make_scene(
    portrait: np.ndarray,
    box,
    *,
    face_fraction: float,
    roll: float,
    occluder: str = "none",
    seed: int = 0,
    canvas: tuple[int, int] = CANVAS,
) -> Scene:
    """A cluttered ``canvas`` photo holding ``portrait`` with its face box (``box``: the
    upright HOG box, top, right, bottom, left) ``face_fraction`` of the canvas height, rotated
    by ``roll`` degrees about the face centre, with an optional hand (``occluder``)."""
    if occluder not in OCCLUDERS:
        raise ValueError(f"unknown occluder {occluder!r}; use one of {OCCLUDERS}")
    rng = np.random.default_rng(seed)
    height, width = canvas
    image = clutter(height, width, rng)
    top, right, bottom, left = box
    scale = face_fraction * height / (bottom - top)
    source = portrait if occluder == "none" else add_hand(portrait, box, occluder, rng)
    ph, pw = source.shape[:2]
    small = cv2.resize(
        source, (max(1, round(pw * scale)), max(1, round(ph * scale))), interpolation=cv2.INTER_AREA
    )
    sh, sw = small.shape[:2]
    # Soft vignette over the whole portrait: its edges fade into the clutter.
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    r = np.maximum(np.abs(xx - (sw - 1) / 2) / (sw / 2), np.abs(yy - (sh - 1) / 2) / (sh / 2))
    alpha = np.clip((1.0 - r) / 0.12, 0, 1)
    face = np.array([(left + right) / 2 * scale - 0.5, (top + bottom) / 2 * scale - 0.5])
    # Rotate about the face centre into a square big enough for the rotated portrait.
    diag = int(np.ceil(np.hypot(sh, sw))) + 4
    matrix = cv2.getRotationMatrix2D((float(face[0]), float(face[1])), roll, 1.0)
    matrix[:, 2] += diag / 2 - face
    rgba = np.dstack([small, alpha])
    turned = cv2.warpAffine(rgba, matrix, (diag, diag), flags=cv2.INTER_LINEAR, borderValue=0)
    # The face centre lands at (diag/2, diag/2) of ``turned``: place it in the middle band.
    cx = rng.uniform(0.3, 0.7) * width
    cy = rng.uniform(0.3, 0.6) * height
    x0, y0 = round(cx - diag / 2), round(cy - diag / 2)
    out = image.copy()
    # Paste the part of the turned portrait that falls on the canvas.
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(width, x0 + diag), min(height, y0 + diag)
    part = turned[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    a = part[..., 3:4]
    out[dy0:dy1, dx0:dx1] = out[dy0:dy1, dx0:dx1] * (1 - a) + part[..., :3] * a
    centre = (x0 + diag / 2, y0 + diag / 2)
    return Scene(out.astype(np.float32), centre, face_fraction * height, roll)


def matches(face_centre, face_height: float, scene: Scene) -> bool:
    """True when a detection centred at ``face_centre`` with box height ``face_height`` is the
    scene's face: centre within 0.35 face heights, size within a factor of 2."""
    distance = np.hypot(face_centre[0] - scene.centre[0], face_centre[1] - scene.centre[1])
    ratio = face_height / scene.face_height
    return bool(distance < 0.35 * scene.face_height and 0.5 < ratio < 2.0)
