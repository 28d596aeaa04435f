"""Physically motivated lighting of one demo pair: flash at the lens vs soft studio light.

Flash: a point light beside the lens, inverse-square fall-off, Lambert + Blinn-Phong shading
with shine on the skin, a hard shadow behind the head, cooler white balance, sensor noise.
Studio: soft, even, warmer light. The studio shot is then misaligned by a known affine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.datasets.demo.sources import Source
from pipeline.datasets.demo.specs import PoseSpec, SubjectSpec

_FOCAL_FRACTION = 0.75  # phone main camera: focal length ~0.75 x image width (~67 deg FOV)


_HEAD_RADIUS_M = 0.09  # half a head width, metres: depth of the head ellipsoid


@dataclass
class RenderedPair:
    """One rendered pair (float32 sRGB HxWx3) and the studio misalignment matrix."""

    flash: np.ndarray
    studio: np.ndarray  # misaligned: what the demo writes
    studio_aligned: np.ndarray  # pixel-aligned with the flash image (before the misalignment)
    matrix: np.ndarray  # 2x3, flash pixel -> studio pixel
    face: tuple[float, float, float, float]  # face centre x, y, width, height in flash px


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
