"""Seeded choices of the demo: who each subject is, each pose, and the studio misalignment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
