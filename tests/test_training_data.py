"""Tests of pipeline/training/data.py: the torch Dataset over data/processed/index.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.trainingdata import augmented_set, losses, out_paths, same_state, tiny_params

from pipeline.io import read_image, write_image
from pipeline.training.data import DataIndexError, PairDataset, read_index
from pipeline.training.loop import train

COLUMNS = ["split", "pair_id", "subject", "variant", "flash", "studio"]


def _write_set(root: Path, splits: dict[str, int], size: int = 16, bits: int = 8) -> Path:
    """Processed-like folder with known pixel values; returns the index path."""
    rng = np.random.default_rng(0)
    rows = []
    for split, n in splits.items():
        for i in range(n):
            pair = f"s{i}__p0"
            flash = f"data/processed/{split}/{pair}__v0_flash.png"
            studio = f"data/processed/{split}/{pair}__v0_studio.png"
            write_image(root / flash, rng.random((size, size, 3)), bits=bits)
            write_image(root / studio, rng.random((size, size, 3)), bits=bits)
            rows.append([split, pair, f"s{i}", "v0", flash, studio])
    index = root / "data" / "processed" / "index.csv"
    with index.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return index


def test_items_are_float_chw_in_unit_range_and_match_the_files(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 3, "val": 2})
    data = PairDataset(index, "train", root=tmp_path, size=16)
    assert len(data) == 3
    flash, studio, valid = data[1]
    assert flash.dtype == torch.float32 and flash.shape == (3, 16, 16)
    assert valid.dtype == torch.float32 and torch.equal(valid, torch.ones(1, 16, 16))
    assert studio.shape == (3, 16, 16)
    assert 0.0 <= float(flash.min()) and float(flash.max()) <= 1.0
    expected = read_image(tmp_path / data.records[1]["flash"])
    assert torch.equal(flash, torch.from_numpy(expected).permute(2, 0, 1))
    assert [r["split"] for r in data.records] == ["train"] * 3


def test_splits_filter_and_several_splits(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 3, "val": 2, "test": 1})
    assert len(PairDataset(index, "val", root=tmp_path)) == 2
    assert len(PairDataset(index, ("val", "test"), root=tmp_path)) == 3
    assert len(PairDataset(index, "missing", root=tmp_path)) == 0


def test_cache_is_bit_identical_and_stores_8bit_images_as_bytes(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 4})
    plain = PairDataset(index, "train", root=tmp_path)
    cached = PairDataset(index, "train", root=tmp_path, cache=True)
    # 4 pairs x (2 images x 3 x 16 x 16 bytes + a 16 x 16 bool mask)
    assert cached.cached_bytes == 4 * (2 * 3 * 16 * 16 + 16 * 16)
    assert plain.cached_bytes == 0
    for i in range(4):
        for a, b in zip(plain[i], cached[i], strict=True):
            assert b.dtype == torch.float32
            assert torch.equal(a, b)


def test_cache_keeps_16bit_images_exact_as_float(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 2}, bits=16)
    plain = PairDataset(index, "train", root=tmp_path)
    cached = PairDataset(index, "train", root=tmp_path, cache=True)
    # float32: 16-bit is not bytes; the masks are bool
    assert cached.cached_bytes == 2 * (2 * 3 * 16 * 16 * 4 + 16 * 16)
    assert torch.equal(plain[0][0], cached[0][0])
    # 16 bits really survive: values that are not multiples of 1/255
    assert not torch.equal(torch.round(plain[0][0] * 255) / 255, plain[0][0])


def test_paths_relative_to_the_index_folder_work_too(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    write_image(folder / "a_flash.png", np.full((8, 8, 3), 0.2))
    write_image(folder / "a_studio.png", np.full((8, 8, 3), 0.6))
    index = folder / "index.csv"
    index.write_text(
        "split,pair_id,subject,variant,flash,studio\ntrain,a,s,v,a_flash.png,a_studio.png\n"
    )
    flash, studio, _ = PairDataset(index, "train", root=tmp_path)[0]
    assert float(flash.mean()) == pytest.approx(51 / 255)
    assert float(studio.mean()) == pytest.approx(153 / 255)


def test_wrong_size_names_the_file(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 1}, size=16)
    with pytest.raises(DataIndexError, match=r"s0__p0__v0_flash\.png: 16x16 px, expected 32x32"):
        PairDataset(index, "train", root=tmp_path, size=32)[0]
    with pytest.raises(DataIndexError, match="expected 32x32"):
        PairDataset(index, "train", root=tmp_path, size=32, cache=True)


def test_mismatched_pair_shapes_name_the_studio_file(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 1}, size=16)
    studio = tmp_path / read_index(index)[0]["studio"]
    write_image(studio, np.zeros((8, 8, 3)))
    with pytest.raises(DataIndexError, match=r"_studio\.png: 8x8 px differs .*\(16x16 px\)"):
        PairDataset(index, "train", root=tmp_path)[0]


def test_missing_or_unreadable_image_names_the_file(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 2})
    flash = tmp_path / read_index(index)[1]["flash"]
    flash.unlink()
    with pytest.raises(DataIndexError, match=r"s1__p0__v0_flash\.png: file not found"):
        PairDataset(index, "train", root=tmp_path)[1]
    flash.write_bytes(b"not a png")
    with pytest.raises(DataIndexError, match=r"s1__p0__v0_flash\.png: not an image"):
        PairDataset(index, "train", root=tmp_path, cache=True)


def test_bad_index_files(tmp_path: Path) -> None:
    with pytest.raises(DataIndexError, match="index.csv: processed index not found"):
        PairDataset(tmp_path / "index.csv", "train")
    bad = tmp_path / "index.csv"
    bad.write_text("split,pair_id,flash\ntrain,a,a.png\n")
    with pytest.raises(DataIndexError, match="missing column"):
        read_index(bad)


def test_works_with_a_dataloader(tmp_path: Path) -> None:
    index = _write_set(tmp_path, {"train": 5})
    loader = torch.utils.data.DataLoader(
        PairDataset(index, "train", root=tmp_path, cache=True), batch_size=2
    )
    shapes = [tuple(flash.shape) for flash, _, _ in loader]
    assert shapes == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]


def test_mask_column_gives_the_validity_mask_and_names_bad_files(tmp_path: Path) -> None:
    """The augment stage's mask PNG comes back as a (1, H, W) 0/1 tensor, cached or not; an
    empty mask cell means all valid; a mask of the wrong size names the file."""
    from pipeline.io import write_mask

    index = _write_set(tmp_path, {"train": 2})
    valid = np.ones((16, 16), bool)
    valid[:, :5] = False  # 5 padded columns
    write_mask(tmp_path / "m.png", valid)
    rows = read_index(index)
    rows[0]["mask"], rows[1]["mask"] = "m.png", ""
    with index.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, "mask"])
        writer.writeheader()
        writer.writerows(rows)
    for data in (PairDataset(index, "train", root=tmp_path),
                 PairDataset(index, "train", root=tmp_path, cache=True)):  # fmt: skip
        first, second = data[0][2], data[1][2]
        assert first.shape == (1, 16, 16) and first.dtype == torch.float32
        assert float(first.sum()) == 16 * 11 and float(first[0, :, :5].max()) == 0.0
        assert torch.equal(second, torch.ones(1, 16, 16))
    write_mask(tmp_path / "m.png", np.ones((8, 8), bool))
    with pytest.raises(DataIndexError, match=r"m\.png: mask 8x8 px differs from its images"):
        PairDataset(index, "train", root=tmp_path)[0]


@pytest.mark.usefixtures("one_torch_thread")
def test_training_on_on_the_fly_variants_gives_the_materialised_weights(tmp_path: Path) -> None:
    """Same seed, 2 epochs of 2 steps: bit-identical weights and losses whether the augment
    stage stored the 20 variants as PNGs or the loader warps them from the crop."""
    results = {}
    for materialise in (True, False):
        data = tmp_path / f"data_{materialise}"
        index = augmented_set(data, materialise)
        assert len(read_index(index)) == 60
        params = tiny_params(train={"max_images_per_epoch": 8})
        out = out_paths(data, tmp_path / f"out_{materialise}")
        results[materialise] = train(params, out, progress=False)
    stored, lazy = results[True], results[False]
    assert same_state(stored.model.state_dict(), lazy.model.state_dict())
    assert losses(stored.history) == losses(lazy.history)
    assert [h["images"] for h in lazy.history] == [8, 8]
