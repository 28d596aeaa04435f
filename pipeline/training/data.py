"""Torch dataset of the processed flash/studio pairs (``data/processed/index.csv``).

Each item is ``(flash, studio, valid)``: float32 CHW tensors in [0, 1] of one augmented pair and
its (1, H, W) validity mask (1 where the crop shows the photo, 0 on padding, which training loss
and evaluation metrics leave out). The index is written by the augment stage with columns split,
pair_id, subject, variant, flash, studio and (optional) mask; image paths in it are relative to
the repository root (or absolute). Without a mask every pixel is valid.

On-the-fly variants (``augment.materialise: false``): a row with a ``matrix`` (and
``border_mode``) names the pair's crop, not its variant; the item is then warped here by the
augment stage's own :func:`pipeline.augment.warp_variant` and rounded to 8 bits as the stored
PNGs are, so it is bit-identical to the materialised variant. A cached dataset then holds each
crop once (1/20 of the variants' memory) and warps per item.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.augment import BORDER_MODES, to_uint8, warp_variant
from pipeline.io import read_image, read_mask, uint8_to_float

INDEX_COLUMNS = ("split", "pair_id", "subject", "variant", "flash", "studio")
MASK_COLUMN = "mask"
"""Optional column of the index: the validity mask PNG of the pair (empty: all valid)."""
MATRIX_COLUMN = "matrix"
"""Optional column: the variant's 2x3 forward matrix (6 numbers) to warp the crop with."""


class DataIndexError(ValueError):
    """The processed index or one of its images cannot be used; the message names the file."""


def read_index(index_csv: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``index.csv`` as dicts; raises :class:`DataIndexError` on a missing file or column."""
    index_csv = Path(index_csv)
    if not index_csv.is_file():
        raise DataIndexError(f"{index_csv}: processed index not found (run the augment stage)")
    with index_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataIndexError(f"{index_csv}: missing column(s) {', '.join(missing)}")
        return list(reader)


def resolve_path(path: str, root: Path, index_dir: Path) -> Path:
    """An index path: absolute as is, else relative to ``root``, else to the index's folder."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate
    if (root / candidate).exists():
        return root / candidate
    # Indexes written by hand next to their images use paths relative to themselves.
    if (index_dir / candidate).exists():
        return index_dir / candidate
    return root / candidate


class PairDataset(Dataset):
    """Flash/studio pairs of one or more splits of the processed index.

    Args:
        index_csv: ``data/processed/index.csv``.
        splits: split name or names to keep (``"train"``, ``("val",)``, ...).
        root: folder the relative image paths start from (the repository root); default: cwd.
        size: expected square side; an image of another shape raises :class:`DataIndexError`.
        cache: decode every image once in the constructor and keep it in memory (as uint8
            when that is lossless). Loading up front, not lazily, lets forked DataLoader
            workers share the decoded arrays instead of each decoding its own copy.
    """

    def __init__(
        self,
        index_csv: str | os.PathLike,
        splits: str | Sequence[str],
        root: str | os.PathLike | None = None,
        size: int | None = None,
        cache: bool = False,
    ) -> None:
        index_csv = Path(index_csv)
        wanted = (splits,) if isinstance(splits, str) else tuple(splits)
        root_dir = Path(root) if root is not None else Path.cwd()
        self.size = size
        self.records: list[dict[str, str]] = [
            row for row in read_index(index_csv) if row["split"] in wanted
        ]
        self.paths: list[tuple[Path, Path]] = [
            (
                resolve_path(row["flash"], root_dir, index_csv.parent),
                resolve_path(row["studio"], root_dir, index_csv.parent),
            )
            for row in self.records
        ]
        self.mask_paths: list[Path | None] = [
            resolve_path(row[MASK_COLUMN], root_dir, index_csv.parent)
            if row.get(MASK_COLUMN)
            else None
            for row in self.records
        ]
        self.matrices: list[np.ndarray | None] = [
            _parse_matrix(row, index_csv) for row in self.records
        ]
        self._cache: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] | None = None
        # on-the-fly rows: their decoded crops and masks by file (uint8 when lossless), once
        self._crops: dict[Path, np.ndarray] | None = None
        if cache:
            self._crops = {}
            self._cache = [
                self._load_pair(i, compact=True) if self.matrices[i] is None else None
                for i in range(len(self.paths))
            ]
            for i in (i for i, matrix in enumerate(self.matrices) if matrix is not None):
                self._crop_mask(i, self._crop(self.paths[i][0]).shape[:2])  # decoded up front:
                self._crop(self.paths[i][1])  # forked DataLoader workers share them

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[i] is None:
            return self._load_pair(i, compact=False)
        flash, studio, valid = self._cache[i]
        return _as_float(flash), _as_float(studio), valid.to(torch.float32)

    @property
    def cached_bytes(self) -> int:
        """Memory held by the in-memory cache (0 without cache)."""
        if self._cache is None:
            return 0
        held = [t for pair in self._cache if pair is not None for t in pair]
        crops = sum(a.nbytes for a in (self._crops or {}).values())
        return crops + sum(t.numel() * t.element_size() for t in held)

    def _load_pair(self, i: int, compact: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flash_path, studio_path = self.paths[i]
        if self.matrices[i] is not None:
            return self._warped_pair(i)
        flash = self._load(flash_path)
        studio = self._load(studio_path)
        if flash.shape != studio.shape:
            raise DataIndexError(
                f"{studio_path}: {studio.shape[1]}x{studio.shape[0]} px differs from its flash "
                f"image {flash_path} ({flash.shape[1]}x{flash.shape[0]} px)"
            )
        valid = torch.from_numpy(self._load_mask(i, flash.shape[:2]))[None]
        if compact:
            return _compact(flash), _compact(studio), valid  # the mask as bool: 1 byte a pixel
        return (
            torch.from_numpy(flash).permute(2, 0, 1).contiguous(),
            torch.from_numpy(studio).permute(2, 0, 1).contiguous(),
            valid.to(torch.float32),
        )

    def _warped_pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The on-the-fly variant of row ``i``: its crop warped by its matrix, as 8 bits."""
        flash_path, studio_path = self.paths[i]
        flash, studio = self._crop(flash_path), self._crop(studio_path)
        if flash.shape != studio.shape:
            raise DataIndexError(f"{studio_path}: {studio.shape} differs from {flash_path}")
        valid = self._crop_mask(i, flash.shape[:2])
        border = self.records[i].get("border_mode") or "constant"
        warped = warp_variant(flash, studio, valid, self.matrices[i], border)
        return (
            _served(to_uint8(warped[0])),
            _served(to_uint8(warped[1])),
            torch.from_numpy(warped[2])[None].float(),
        )

    def _crop(self, path: Path) -> np.ndarray:
        """A crop as read_image gives it, decoded once per file when cached."""
        if self._crops is None:
            return self._load(path)
        if path not in self._crops:
            image = self._load(path)
            as_bytes = np.rint(image * 255.0).astype(np.uint8)
            lossless = np.array_equal(as_bytes.astype(np.float32) / 255.0, image)
            self._crops[path] = as_bytes if lossless else image
        held = self._crops[path]
        # read_image's own conversion: a cached crop gives the same pixels
        return uint8_to_float(held) if held.dtype == np.uint8 else held

    def _crop_mask(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        """Row ``i``'s crop mask, decoded once per file when cached."""
        path = self.mask_paths[i]
        if self._crops is None or path is None:
            return self._load_mask(i, shape)
        if path not in self._crops:
            self._crops[path] = self._load_mask(i, shape)
        return self._crops[path]

    def _load_mask(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        path = self.mask_paths[i]
        if path is None:
            return np.ones(shape, bool)
        try:
            valid = read_mask(path)
        except ValueError as error:  # ImageReadError names the file and the reason
            raise DataIndexError(str(error)) from None
        if valid.shape != shape:
            raise DataIndexError(
                f"{path}: mask {valid.shape[1]}x{valid.shape[0]} px differs from its images "
                f"({shape[1]}x{shape[0]} px)"
            )
        return valid

    def _load(self, path: Path) -> np.ndarray:
        try:
            image = read_image(path)
        except ValueError as error:  # ImageReadError names the file and the reason
            raise DataIndexError(str(error)) from None
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            raise DataIndexError(
                f"{path}: {image.shape[1]}x{image.shape[0]} px, expected {self.size}x{self.size} "
                "(data.size changed since the crop stage ran?)"
            )
        return image


def _parse_matrix(row: dict[str, str], index_csv: Path) -> np.ndarray | None:
    """The row's variant matrix (:func:`pipeline.augment.matrix_text`), None when stored."""
    text = row.get(MATRIX_COLUMN) or ""
    if not text:
        return None
    values = text.split()
    try:
        matrix = np.array([float(v) for v in values], np.float64)
    except ValueError:
        matrix = np.empty(0)
    where = f"{index_csv}: row {row.get('pair_id')} {row.get('variant')}"
    if matrix.shape != (6,) or not np.all(np.isfinite(matrix)):
        raise DataIndexError(f"{where}: matrix {text!r} is not 6 finite numbers")
    border = row.get("border_mode") or "constant"
    if border not in BORDER_MODES:
        raise DataIndexError(f"{where}: border_mode {border!r} is not one of {list(BORDER_MODES)}")
    return matrix.reshape(2, 3)


def _served(pixels: np.ndarray) -> torch.Tensor:
    """8-bit HWC pixels as the float CHW tensor :func:`_as_float` makes of them (the same
    values: x / 255 in float32), turned while still 8 bits (a quarter of the bytes to move)."""
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return torch.from_numpy(uint8_to_float(chw.reshape(-1, chw.shape[2])).reshape(chw.shape))


def _compact(image: np.ndarray) -> torch.Tensor:
    """CHW tensor, uint8 when the float image is exactly an 8-bit image (4x less memory)."""
    scaled = image * 255.0
    as_bytes = np.rint(scaled)
    if np.array_equal(as_bytes.astype(np.float32) / 255.0, image):
        return torch.from_numpy(as_bytes.astype(np.uint8)).permute(2, 0, 1).contiguous()
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def _as_float(tensor: torch.Tensor) -> torch.Tensor:
    # The same division read_image does, so cached and uncached items are bit-identical.
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / 255.0
    return tensor


__all__ = [
    "INDEX_COLUMNS",
    "MASK_COLUMN",
    "MATRIX_COLUMN",
    "DataIndexError",
    "PairDataset",
    "read_index",
    "resolve_path",
]
