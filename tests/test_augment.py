"""The paper's 20x paired augmentation: names, geometry shared by flash and studio, stage."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from helpers.stagetools import file_hashes, run_stage
from skimage import data as skdata

from pipeline.augment import (
    IDENTITY_VARIANT,
    INDEX_COLUMNS,
    augment_dataset,
    augment_pair,
    identity_pair,
    variant_matrices,
    variant_matrix,
    variant_name,
)
from pipeline.config import AugmentParams
from pipeline.io import read_csv, read_image, read_mask, write_csv, write_image, write_mask
from pipeline.training.data import DataIndexError, PairDataset

SIZE = 96
BOX = (30, 70, 66, 34)  # (top, right, bottom, left): 36 px face box centred at (51.5, 47.5)
CENTRE = (51.5, 47.5)  # the box centre in pixel-centre coordinates: ((34+70-1)/2, (30+66-1)/2)

EXPECTED_NAMES = [
    f"rot{r}_{mode}_{flip}"
    for r in ("-20", "-10", "+0", "+10", "+20")
    for mode in ("full", "face")
    for flip in ("orig", "flip")
]


def _photo(side: int = SIZE, seed: int | None = None) -> np.ndarray:
    image = skdata.astronaut().astype(np.float32) / 255.0
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    if seed is not None:  # a different "studio" picture: same scene, other light and noise
        rng = np.random.default_rng(seed)
        image = np.clip(0.6 * image[..., ::-1] + 0.2 + rng.normal(0, 0.02, image.shape), 0, 1)
    return image.astype(np.float32)


def _marked(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Dim ``image`` and add a bright Gaussian marker (sigma 1.5 px) centred at (x, y)."""
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
    blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return np.clip(0.3 * image + blob[..., None], 0, 1).astype(np.float32)


def _marker_at(image: np.ndarray) -> tuple[float, float]:
    """Centroid of the marker: pixels clearly brighter than the dimmed background (<= 0.3)."""
    weight = np.clip(image.mean(axis=2) - 0.35, 0, None)
    ys, xs = np.nonzero(weight)
    w = weight[ys, xs]
    return float((xs * w).sum() / w.sum()), float((ys * w).sum() / w.sum())


def test_exactly_twenty_named_variants():
    flash = _photo()
    variants = augment_pair(flash, flash.copy(), BOX)
    assert [name for name, _, _, _ in variants] == EXPECTED_NAMES
    assert len(variants) == 20
    for _, f, s, valid in variants:
        assert f.shape == s.shape == (SIZE, SIZE, 3)
        assert f.dtype == np.float32 and valid.shape == (SIZE, SIZE) and valid.dtype == bool
    assert variant_name(-0.0, "full", "orig") == IDENTITY_VARIANT
    assert variant_name(7.5, "face", "flip") == "rot+7.5_face_flip"


def test_twenty_distinct_variants():
    flash = _photo()
    images = [f for _, f, _, _ in augment_pair(flash, _photo(seed=1), BOX)]
    for i in range(20):
        for j in range(i):
            assert np.abs(images[i] - images[j]).mean() > 0.01, (
                EXPECTED_NAMES[i],
                EXPECTED_NAMES[j],
            )


def test_identical_images_stay_identical_in_every_variant():
    flash = _photo()
    for name, f, s, _ in augment_pair(flash, flash.copy(), BOX):
        assert np.array_equal(f, s), name


def test_known_variants():
    flash = _photo()
    variants = {name: f for name, f, _, _ in augment_pair(flash, flash, BOX)}
    # Identity and pure mirror are exact (whole-pixel samples).
    assert np.array_equal(variants["rot+0_full_orig"], flash)
    np.testing.assert_allclose(variants["rot+0_full_flip"], flash[:, ::-1], atol=1e-6)
    # The face variant is the square around the face box (36 px) scaled to the whole crop.
    top, right, bottom, left = BOX
    square = cv2.resize(flash[top:bottom, left:right], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    assert np.abs(variants["rot+0_face_orig"] - square).mean() < 0.01
    assert np.abs(variants["rot+0_face_flip"] - square[:, ::-1]).mean() < 0.01


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate"])
def test_rotated_corners_are_masked_and_constant_by_default(border):
    """The rotated variants' corners hold no photo pixel: masked whatever the border mode;
    with the constant border (the default) exactly 0, never mirrored content."""
    flash = _photo()
    out = {n: (f, v) for n, f, _, v in augment_pair(flash, flash, BOX, border_mode=border)}
    image, valid = out["rot+20_full_orig"]
    assert not valid[:3, :3].any() and valid[40:60, 40:60].all()
    assert 0.8 < valid.mean() < 0.95  # a 20 degree turn about the face centre loses ~12 %
    assert out["rot+0_full_orig"][1].all() and out["rot+0_full_flip"][1].all()
    if border == "constant":
        assert np.all(image[~valid] == 0.0)
    else:
        assert image[:3, :3].max() > 0.05


def test_crop_mask_goes_through_every_variant():
    """A crop padded on its left 20 columns (mask False): in every variant a pixel is valid
    only if the matrix takes it from valid crop pixels; the zoomed face variants that stay
    inside the face box are all valid."""
    flash = _photo()
    crop_valid = np.ones((SIZE, SIZE), bool)
    crop_valid[:, :20] = False
    flash[:, :20] = 0.0
    matrices = dict(variant_matrices(BOX, SIZE, SIZE))
    for name, f, _, valid in augment_pair(flash, flash, BOX, valid=crop_valid):
        assert np.all(f[~valid] == 0.0), name
        # Map each valid output pixel back: it must come from column >= 20 (within the
        # bilinear kernel's reach, 1 px).
        inverse = cv2.invertAffineTransform(matrices[name])
        ys, xs = np.nonzero(valid)
        source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        assert source_x.min() >= 19.0 - 1e-6, name
        if "_face_" in name and name.startswith("rot+0"):
            assert valid.all(), name  # the 36 px face box lies in columns 34-70
    name, _, _, valid = identity_pair(flash, flash, crop_valid)[0]
    assert valid is crop_valid


def test_marker_lands_at_the_same_place_in_flash_and_studio():
    """Different pictures, same marker spot: every variant puts both markers in one place,
    which is where the variant's matrix says."""
    spot = (62.0, 38.0)  # inside the face box, off its centre: rotation moves it
    flash = _marked(_photo(), *spot)
    studio = _marked(_photo(seed=3), *spot)
    matrices = dict(variant_matrices(BOX, SIZE, SIZE))
    for name, f, s, _ in augment_pair(flash, studio, BOX):
        in_flash, in_studio = np.array(_marker_at(f)), np.array(_marker_at(s))
        assert np.hypot(*(in_flash - in_studio)) < 0.05, name
        expected = matrices[name] @ np.array([*spot, 1.0])
        zoom = SIZE / 36 if "_face_" in name else 1.0
        assert np.hypot(*(in_flash - expected)) < 0.1 * zoom, (name, in_flash, expected)


def test_rotation_is_about_the_face_centre_counter_clockwise():
    # The face centre is a fixed point of the full variants and goes to the middle of the
    # face variants; a point to its right moves up for positive angles (y points down).
    cx, cy = CENTRE
    for angle in (-20.0, -10.0, 10.0, 20.0):
        full = variant_matrix(angle, "full", "orig", BOX, SIZE, SIZE)
        np.testing.assert_allclose(full @ [cx, cy, 1.0], [cx, cy], atol=1e-9)
        face = variant_matrix(angle, "face", "orig", BOX, SIZE, SIZE)
        np.testing.assert_allclose(face @ [cx, cy, 1.0], [(SIZE - 1) / 2] * 2, atol=1e-9)
        theta = np.deg2rad(angle)
        moved = full @ [cx + 10.0, cy, 1.0]
        np.testing.assert_allclose(moved, [cx + 10 * np.cos(theta), cy - 10 * np.sin(theta)])
        flipped = variant_matrix(angle, "full", "flip", BOX, SIZE, SIZE) @ [cx, cy, 1.0]
        np.testing.assert_allclose(flipped, [SIZE - 1 - cx, cy], atol=1e-9)


def test_reruns_are_identical_and_inputs_untouched():
    flash, studio = _photo(), _photo(seed=2)
    before = flash.copy(), studio.copy()
    first = augment_pair(flash, studio, BOX)
    second = augment_pair(flash, studio, BOX)
    for (n1, f1, s1, v1), (n2, f2, s2, v2) in zip(first, second, strict=True):
        assert n1 == n2 and f1.tobytes() == f2.tobytes() and s1.tobytes() == s2.tobytes()
        assert np.array_equal(v1, v2)
    assert np.array_equal(flash, before[0]) and np.array_equal(studio, before[1])


def test_identity_pair_and_errors():
    flash = _photo()
    [(name, f, s, valid)] = identity_pair(flash, flash)
    assert name == IDENTITY_VARIANT and f is flash and s is flash and valid.all()
    assert len(augment_pair(flash, flash, BOX, rotations=[0, 15])) == 8
    with pytest.raises(ValueError, match="shapes differ"):
        augment_pair(flash, flash[:-1], BOX)
    with pytest.raises(ValueError, match="border mode"):
        augment_pair(flash, flash, BOX, border_mode="wrap")
    with pytest.raises(ValueError, match="distinct"):
        augment_pair(flash, flash, BOX, rotations=[10, 10])
    with pytest.raises(ValueError, match="empty face box"):
        augment_pair(flash, flash, (10, 10, 10, 10))
    with pytest.raises(ValueError, match="mask shape"):
        augment_pair(flash, flash, BOX, valid=np.ones((8, 8), bool))


# --------------------------------------------------------------------------- the stage


def _crop_stage_index(root, materialise: bool = True):
    """A crop-stage index made here (3 pairs, 64 px, one with a padded crop) + params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(
        f"augment:\n  splits: [train, val]\n  workers: 2\n  materialise: {str(materialise).lower()}\n"
    )
    faces = root / "data" / "interim" / "faces"
    rows = []
    for k, (pair_id, split) in enumerate([("s1__a", "train"), ("s2__a", "val"), ("s3__a", "test")]):
        flash, studio = f"{faces}/{pair_id}_flash.png", f"{faces}/{pair_id}_studio.png"
        write_image(flash, _photo(64, seed=None if k == 0 else 10 + k))
        write_image(studio, _photo(64, seed=20 + k))
        mask = ""
        if k == 0:  # a crop the crop stage had to pad: its left 8 columns are not the photo
            crop_valid = np.ones((64, 64), bool)
            crop_valid[:, :8] = False
            mask = str(write_mask(faces / f"{pair_id}_mask.png", crop_valid))
        rows.append([pair_id, pair_id.split("__")[0], split, flash, studio, 20, 44, 44, 20, mask])
    with open(faces / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["pair_id", "subject", "split", "flash", "studio"]
            + ["face_top", "face_right", "face_bottom", "face_left", "mask"]
        )
        writer.writerows(rows)
    return faces


def test_augment_stage_end_to_end(tmp_path):
    """Materialised: augmented splits get 20 variants as PNGs, the rest 1."""
    root = tmp_path
    faces = _crop_stage_index(root, materialise=True)

    run = run_stage(root, "augment")
    assert run.returncode == 0, run.stderr
    processed = root / "data" / "processed"
    with open(processed / "index.csv") as handle:
        index = list(csv.DictReader(handle))
    assert tuple(index[0]) == INDEX_COLUMNS
    assert INDEX_COLUMNS == (
        *("split", "pair_id", "subject", "variant", "flash", "studio", "mask"),
        *("matrix", "border_mode"),
    )
    assert all(r["matrix"] == "" for r in index)  # stored pixels
    assert len(index) == 20 + 20 + 1
    assert [r["variant"] for r in index if r["pair_id"] == "s1__a"] == EXPECTED_NAMES
    [test_row] = [r for r in index if r["split"] == "test"]
    assert test_row["variant"] == IDENTITY_VARIANT
    assert test_row["flash"] == "data/processed/test/s3__a__rot+0_full_orig_flash.png"
    # The identity variant is the crop itself, pixel for pixel.
    assert np.array_equal(
        read_image(root / test_row["flash"]), read_image(faces / "s3__a_flash.png")
    )
    for row in index:
        assert (root / row["flash"]).is_file() and (root / row["studio"]).is_file()
    # Masks: the padded crop's columns stay invalid in its identity variant; the test pair,
    # whose crop had no mask, is all valid.
    s1_identity = next(
        r for r in index if r["pair_id"] == "s1__a" and r["variant"] == IDENTITY_VARIANT
    )
    s1_valid = read_mask(root / s1_identity["mask"])
    assert not s1_valid[:, :8].any() and s1_valid[:, 8:].all()
    assert read_mask(root / test_row["mask"]).all()
    assert len(list((processed / "train").glob("*.png"))) == 60
    metrics = json.loads((root / "metrics" / "augment.json").read_text())
    assert metrics == {
        "pairs": 3,
        "pairs_augmented": 2,
        "variants_per_pair": 20,
        "images": 41,
        "images_train": 20,
        "images_val": 20,
        "images_test": 1,
    }
    # A rerun, in this process and without worker processes, writes the very same bytes.
    faces_index = read_csv(faces / "index.csv")
    augment = AugmentParams(splits=["train", "val"], workers=1, materialise=True)
    again = augment_dataset(faces_index, tmp_path / "again", augment)
    assert again.metrics == metrics
    written = {name: h for name, h in file_hashes(processed).items() if name.endswith(".png")}
    assert file_hashes(tmp_path / "again") == written and len(written) == 3 * 41


def test_on_the_fly_variants_are_bit_identical_to_the_materialised_ones(tmp_path):
    """materialise false: the crop once per pair + 20 matrices; the loader's pixels and masks
    equal the materialised PNGs' exactly, cached or not, with 3 files a pair instead of 60."""
    faces = _crop_stage_index(tmp_path / "lazy", materialise=False)
    run = run_stage(tmp_path / "lazy", "augment")
    assert run.returncode == 0, run.stderr
    lazy_index = tmp_path / "lazy" / "data" / "processed" / "index.csv"
    rows = list(csv.DictReader(lazy_index.open()))
    assert len(rows) == 41 and sum(1 for r in rows if r["matrix"]) == 40
    assert rows[0]["flash"] == "data/processed/train/s1__a__crop_flash.png"
    assert {r["flash"] for r in rows if r["pair_id"] == "s1__a"} == {rows[0]["flash"]}
    # 3 files for the padded pair, 2 for the others (their crops had no mask)
    pngs = sorted(p.name for p in (tmp_path / "lazy" / "data" / "processed").rglob("*.png"))
    assert len(pngs) == 3 + 2 + 2
    assert (faces / "s1__a_flash.png").read_bytes() == (
        tmp_path / "lazy" / rows[0]["flash"]
    ).read_bytes()

    stored = augment_dataset(
        read_csv(faces / "index.csv"),
        tmp_path / "stored",
        AugmentParams(splits=["train", "val"], workers=1, materialise=True),
    )
    write_csv(tmp_path / "stored" / "index.csv", stored.index)
    splits = ("train", "val", "test")
    reference = PairDataset(tmp_path / "stored" / "index.csv", splits, size=64)
    for cache in (False, True):
        lazy = PairDataset(lazy_index, splits, root=tmp_path / "lazy", size=64, cache=cache)
        assert [r["variant"] for r in lazy.records] == [r["variant"] for r in reference.records]
        for i in range(len(lazy)):
            for mine, theirs in zip(lazy[i], reference[i], strict=True):
                assert torch.equal(mine, theirs), (cache, lazy.records[i]["variant"])
    # rotated corners and the padded columns are invalid on the fly too
    assert reference[0][2].sum() < 64 * 64  # rot-20_full_orig


def test_a_bad_matrix_cell_names_the_index(tmp_path):
    _crop_stage_index(tmp_path, materialise=False)
    assert run_stage(tmp_path, "augment").returncode == 0
    index = tmp_path / "data" / "processed" / "index.csv"
    table = read_csv(index)
    table.loc[3, "matrix"] = "1 0 0 0 1"
    write_csv(index, table)
    with pytest.raises(DataIndexError, match=r"index.csv: row s1__a rot-20_face_flip: matrix"):
        PairDataset(index, "train", root=tmp_path)
    table.loc[3, "matrix"], table.loc[4, "border_mode"] = table.loc[2, "matrix"], "wrap"
    write_csv(index, table)
    with pytest.raises(DataIndexError, match=r"row s1__a rot-10_full_orig: border_mode 'wrap'"):
        PairDataset(index, "train", root=tmp_path)
