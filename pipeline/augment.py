"""The paper's 20x paired augmentation (Section 4), with albumentations.

Per pair: rotations (default -20, -10, 0, 10, 20 degrees) about the face-box centre, times
{the whole crop, the crop to the face box rescaled to full size}, times {as is, mirrored}:
5 x 2 x 2 = 20 variants. Each variant is ONE fixed affine matrix (rotation, zoom and mirror
folded together, so each output pixel is interpolated once) applied by ONE albumentations
transform (:class:`FixedAffine`) to the flash image and the studio image alike: the two
images of a variant share their geometry exactly. Nothing is random.

Variant names: ``rot<signed degrees>_<full|face>_<orig|flip>``, e.g. ``rot-20_full_orig``,
``rot+10_face_flip``, ``rot+0_full_orig`` (the identity). Positive angles turn the picture
counter-clockwise on screen (OpenCV's ``getRotationMatrix2D`` convention).

The crop's validity mask (True where the crop holds photo pixels) goes through the same
matrix, as albumentations' ``mask`` target: a rotated variant's corners, which no photo pixel
reaches, are invalid too. With the default constant border, invalid pixels are exactly 0 in
both images (never mirrored copies of the face), and training and evaluation leave them out.

``augment.materialise: false`` writes the crop once and each variant's matrix in the index; the
loader warps with the same :func:`warp_variant` (20x less disk, the same pixels; issue 24).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

# albumentations asks PyPI for a newer version at import: a network call (and a warning
# offline) in every stage run. Pipelines must not depend on the network: switch it off.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
from albumentations.augmentations.geometric import functional as fgeometric  # noqa: E402

from pipeline.config import AugmentParams
from pipeline.faces.geometry import Box
from pipeline.io import image_size, read_image, read_mask, write_image, write_mask
from pipeline.parallel import parallel_map

_AUGMENT = AugmentParams()  # the group's defaults: the paper's rotations and border
DEFAULT_ROTATIONS = tuple(_AUGMENT.rotations)
MODES = ("full", "face")
FLIPS = ("orig", "flip")
IDENTITY_VARIANT = "rot+0_full_orig"

BORDER_MODES = {
    "constant": cv2.BORDER_CONSTANT,  # black, and masked as invalid
    "reflect": cv2.BORDER_REFLECT_101,  # mirror without repeating the edge pixel
    "replicate": cv2.BORDER_REPLICATE,  # repeat the edge pixel
}
# A warped mask pixel is valid when invalid source pixels weigh less than this in it.
_VALID_TOLERANCE = 1e-3


def _warp(
    array: np.ndarray,
    matrix: np.ndarray,
    output_shape: tuple[int, int],
    interpolation: int,
    border_mode: int,
) -> np.ndarray:
    return fgeometric.warp_affine(
        array,
        matrix,
        interpolation=interpolation,
        fill=0,
        border_mode=border_mode,
        output_shape=output_shape,
    )


class FixedAffine(A.DualTransform):
    """Albumentations transform applying one fixed 2x3 forward matrix (source -> output).

    Albumentations' own ``Affine`` rotates about the image centre and translates by whole
    pixels only, so it cannot rotate about an arbitrary face centre; this transform takes
    the matrix itself and otherwise behaves like ``Affine`` (same warp function and border
    handling) on images. Masks (float, 1 = valid) are warped bilinearly with a zero border
    whatever ``border_mode`` is: padding is never valid.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        border_mode: int = cv2.BORDER_CONSTANT,
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        forward = np.asarray(matrix, dtype=np.float64)
        if forward.shape != (2, 3) or not np.all(np.isfinite(forward)):
            raise ValueError(f"expected a finite 2x3 matrix, got {np.asarray(matrix).tolist()}")
        self.matrix = np.vstack([forward, [0.0, 0.0, 1.0]])
        self.border_mode = border_mode
        self.interpolation = interpolation

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """The fixed matrix; the output keeps the input's height and width."""
        return {"matrix": self.matrix, "output_shape": params["shape"][:2]}

    def apply(
        self, img: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any
    ) -> np.ndarray:
        """Warp an image (flash or studio) with the fixed matrix."""
        return _warp(img, matrix, output_shape, self.interpolation, self.border_mode)

    def apply_to_mask(
        self, mask: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any
    ) -> np.ndarray:
        """Warp a float validity mask: bilinear, zero outside (padding is never valid)."""
        return _warp(mask, matrix, output_shape, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT)


def variant_name(rotation: float, mode: str, flip: str) -> str:
    """``rot-20_full_orig`` style name of one variant (filesystem-safe)."""
    if mode not in MODES or flip not in FLIPS:
        raise ValueError(f"mode must be one of {MODES} and flip one of {FLIPS}")
    return f"rot{rotation + 0.0:+g}_{mode}_{flip}"  # + 0.0: no "-0"


def variant_matrix(
    rotation: float, mode: str, flip: str, face_box: Box, width: int, height: int
) -> np.ndarray:
    """Forward 2x3 matrix (input pixel -> output pixel) of one variant.

    ``full``: rotate the crop about the face-box centre. ``face``: rotate about the centre,
    and scale the square around the face box (side = the box's longer side) up to the
    output's shorter side, centred: the face box "rescaled to full size" without changing
    its aspect ratio. ``flip`` then mirrors left-right.
    """
    top, right, bottom, left = face_box
    longer = max(right - left, bottom - top)
    if longer <= 0:
        raise ValueError(f"empty face box {face_box}")
    # Box edges -> pixel-centre coordinates: the box covers left <= x < right.
    centre = ((left + right - 1) / 2.0, (top + bottom - 1) / 2.0)
    if mode == "full":
        zoom, target = 1.0, centre
    elif mode == "face":
        zoom, target = min(width, height) / longer, ((width - 1) / 2.0, (height - 1) / 2.0)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    matrix = cv2.getRotationMatrix2D(centre, float(rotation), zoom)
    matrix[:, 2] += np.subtract(target, centre)
    if flip == "flip":
        mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = (mirror @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    elif flip != "orig":
        raise ValueError(f"unknown flip {flip!r}; use one of {FLIPS}")
    return matrix


def variant_matrices(
    face_box: Box,
    width: int,
    height: int,
    rotations: Sequence[float] = DEFAULT_ROTATIONS,
) -> list[tuple[str, np.ndarray]]:
    """(name, forward matrix) of every variant, in a fixed order: rotation, mode, flip."""
    if len(set(rotations)) != len(rotations) or not rotations:
        raise ValueError(f"rotations must be distinct and non-empty (got {list(rotations)})")
    return [
        (
            variant_name(rotation, mode, flip),
            variant_matrix(rotation, mode, flip, face_box, width, height),
        )
        for rotation in rotations
        for mode in MODES
        for flip in FLIPS
    ]


Variant = tuple[str, np.ndarray, np.ndarray, np.ndarray]
"""(name, flash, studio, valid mask) of one augmented variant."""


def augment_pair(
    flash: np.ndarray,
    studio: np.ndarray,
    box: Box,
    rotations: Sequence[float] = DEFAULT_ROTATIONS,
    border_mode: str = _AUGMENT.border_mode,
    valid: np.ndarray | None = None,
) -> list[Variant]:
    """All variants of a flash/studio crop pair: ``[(name, flash, studio, valid), ...]``.

    ``box`` is the face box (top, right, bottom, left) in the crop's pixels; ``valid`` the
    crop's bool validity mask (None: all valid). With the default rotations there are
    exactly 20 variants. Both images get the same albumentations transform (its image warp;
    the mask its mask warp). A variant's pixel is valid
    when only valid crop pixels reach it; with ``border_mode`` constant its invalid pixels
    are exactly 0 in both images.
    """
    if flash.shape != studio.shape:
        raise ValueError(f"flash and studio shapes differ: {flash.shape} vs {studio.shape}")
    if border_mode not in BORDER_MODES:
        raise ValueError(f"unknown border mode {border_mode!r}; use one of {tuple(BORDER_MODES)}")
    height, width = flash.shape[:2]
    if valid is None:
        valid = np.ones((height, width), bool)
    if valid.shape != (height, width):
        raise ValueError(f"mask shape {valid.shape} differs from the images' {(height, width)}")
    return [
        (name, *warp_variant(flash, studio, valid, matrix, border_mode))
        for name, matrix in variant_matrices(box, width, height, rotations)
    ]


def warp_variant(
    flash: np.ndarray, studio: np.ndarray, valid: np.ndarray, matrix: np.ndarray, border_mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One variant ``(flash, studio, valid)`` of a crop pair: ``matrix`` applied to both images
    and the bool mask by one transform; the augment stage and the on-the-fly loader share it."""
    # The transform's own apply methods, not A.Compose: Compose's per-call checks cost more
    # than the three warps (the loader's item took twice as long), and its output is the same.
    transform = FixedAffine(matrix, border_mode=BORDER_MODES[border_mode])
    shape = flash.shape[:2]
    flash_out = transform.apply(flash, transform.matrix, shape)
    studio_out = transform.apply(studio, transform.matrix, shape)
    mask = transform.apply_to_mask(valid.astype(np.float32), transform.matrix, shape)
    ok = mask >= 1.0 - _VALID_TOLERANCE
    if border_mode == "constant" and not ok.all():
        padded = ~ok[..., None]  # partly padded pixels too: the padded area is constant
        np.copyto(flash_out, 0.0, where=padded)
        np.copyto(studio_out, 0.0, where=padded)
    return flash_out, studio_out, ok


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A variant's 8-bit pixels, stored (PNG) or served (on the fly): write_image's rounding,
    ``clip(rint(image * 255), 0, 255)``, for the values a warp of [0, 1] images gives (>= 0:
    OpenCV's saturating convert rounds half to even like ``np.rint``, 10x faster)."""
    return cv2.convertScaleAbs(image, alpha=255.0)


def matrix_text(matrix: np.ndarray) -> str:
    """A 2x3 matrix as the index's ``matrix`` cell: 6 floats, exact (``repr`` round-trips)."""
    return " ".join(repr(float(v)) for v in np.asarray(matrix, np.float64).ravel())


def identity_pair(
    flash: np.ndarray, studio: np.ndarray, valid: np.ndarray | None = None
) -> list[Variant]:
    """The single un-augmented variant (for splits that are not augmented)."""
    if valid is None:
        valid = np.ones(flash.shape[:2], bool)
    return [(IDENTITY_VARIANT, flash, studio, valid)]


def augment_pair_files(
    pair_id: str,
    flash_path: str | os.PathLike,
    studio_path: str | os.PathLike,
    box: Box,
    out_dir: str | os.PathLike,
    *,
    mask_path: str | os.PathLike | None = None,
    augment: bool = True,
    rotations: Sequence[float] = DEFAULT_ROTATIONS,
    border_mode: str = _AUGMENT.border_mode,
    materialise: bool = True,
) -> list[tuple[str, str, str, str, str, str]]:
    """Read a cropped pair (and its validity mask, when given), write its variants as
    ``<pair_id>__<variant>_{flash,studio,mask}.png``; or, ``materialise=False``, copy the
    crop once as ``<pair_id>__crop_{flash,studio,mask}.png`` and return each variant's
    matrix for the training loader to warp (pipeline/training/data.py).

    ``augment=False`` gives only the identity variant. Returns ``[(variant, flash_png,
    studio_png, mask_png, matrix, border_mode), ...]`` in variant order (matrix and border
    mode empty for stored pixels).
    """
    out_dir = Path(out_dir)
    if not materialise:
        crop = [out_dir / f"{pair_id}__crop_{kind}.png" for kind in ("flash", "studio", "mask")]
        sources = (flash_path, studio_path, mask_path)
        for source, target in zip(sources, crop, strict=True):
            if source:  # the same bytes: DVC's cache then holds them once (cache links)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        paths = (str(crop[0]), str(crop[1]), str(crop[2]) if mask_path else "")
        if not augment:
            return [(IDENTITY_VARIANT, *paths, "", "")]
        width, height = image_size(flash_path)
        return [
            (name, *paths, matrix_text(matrix), border_mode)
            for name, matrix in variant_matrices(box, width, height, rotations)
        ]
    flash, studio = read_image(flash_path), read_image(studio_path)
    valid = read_mask(mask_path) if mask_path else None
    if augment:
        variants = augment_pair(flash, studio, box, rotations, border_mode, valid)
    else:
        variants = identity_pair(flash, studio, valid)
    written = []
    for name, flash_out, studio_out, ok in variants:
        flash_png = write_image(out_dir / f"{pair_id}__{name}_flash.png", to_uint8(flash_out))
        studio_png = write_image(out_dir / f"{pair_id}__{name}_studio.png", to_uint8(studio_out))
        mask_png = write_mask(out_dir / f"{pair_id}__{name}_mask.png", ok)
        written.append((name, str(flash_png), str(studio_png), str(mask_png), "", ""))
    return written


INDEX_COLUMNS = (
    *("split", "pair_id", "subject", "variant", "flash", "studio", "mask"),
    *("matrix", "border_mode"),
)
"""Columns of ``data/processed/index.csv`` (matrix, border_mode: on-the-fly variants only)."""


@dataclass
class AugmentRun:
    """What :func:`augment_dataset` wrote: one index row per variant, and the counts."""

    index: pd.DataFrame
    metrics: dict[str, int]


def _mask_path(row: Any) -> str | None:
    """The row's mask PNG, or None when the index has no mask (column absent or empty)."""
    path = getattr(row, "mask", None)
    return path if isinstance(path, str) and path else None


def _augment_job(job: tuple[Any, ...]) -> list[tuple[str, ...]]:
    """One pair for :func:`augment_dataset` (module level: it runs in worker processes)."""
    pair_id, flash, studio, box, out_dir, options = job
    return augment_pair_files(pair_id, flash, studio, box, out_dir, **options)


def augment_dataset(
    faces: pd.DataFrame,
    out_dir: str | os.PathLike,
    augment: AugmentParams,
    *,
    progress: bool = False,
) -> AugmentRun:
    """Write every pair of the crop stage's index into ``out_dir/<split>/`` (augment contract).

    ``faces`` has the crop index's columns (pair_id, subject, split, flash, studio,
    face_top, face_right, face_bottom, face_left, and ``mask``: the validity mask PNG; an
    index without it counts every pixel valid). Pairs of ``augment.splits`` get every
    variant (``augment.rotations``, ``augment.border_mode``), the others only the identity.
    Pairs run in ``augment.workers`` processes; output paths are ``out_dir`` joined as given
    (relative stays relative).
    """
    splits, rotations = augment.splits, augment.rotations
    jobs = [
        (
            row.pair_id,
            row.flash,
            row.studio,
            (int(row.face_top), int(row.face_right), int(row.face_bottom), int(row.face_left)),
            Path(out_dir) / row.split,
            {
                "mask_path": _mask_path(row),
                "augment": row.split in splits,
                "rotations": tuple(rotations),
                "border_mode": augment.border_mode,
                "materialise": augment.materialise,
            },
        )
        for row in faces.itertuples(index=False)
    ]
    results = zip(
        faces.itertuples(index=False),
        parallel_map(_augment_job, jobs, augment.workers),
        strict=True,
    )
    rows = []
    for row, written in tqdm(
        results, total=len(jobs), desc="augment", unit="pair", disable=not progress
    ):
        rows += [(row.split, row.pair_id, row.subject, *variant) for variant in written]
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    per_split = index["split"].value_counts()
    metrics = {
        "pairs": len(jobs),
        "pairs_augmented": sum(1 for job in jobs if job[5]["augment"]),
        "variants_per_pair": len(rotations) * len(MODES) * len(FLIPS),
        "images": len(index),
        **{f"images_{split}": int(per_split.get(split, 0)) for split in ("train", "val", "test")},
    }
    return AugmentRun(index, metrics)


__all__ = [
    "BORDER_MODES",
    "DEFAULT_ROTATIONS",
    "FLIPS",
    "IDENTITY_VARIANT",
    "INDEX_COLUMNS",
    "MODES",
    "AugmentRun",
    "FixedAffine",
    "augment_dataset",
    "augment_pair",
    "augment_pair_files",
    "identity_pair",
    "matrix_text",
    "to_uint8",
    "variant_matrices",
    "variant_matrix",
    "variant_name",
    "warp_variant",
]
