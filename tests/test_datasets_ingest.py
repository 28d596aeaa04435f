"""Tests of the raw-layout readers, validation, split and the ingest stage (pipeline/datasets)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.datasets.ingest import (
    MANIFEST_COLUMNS,
    DatasetError,
    build_manifest,
    ingest_metrics,
    read_dataset,
    reject_problem,
    split_sizes,
    split_subjects,
)
from pipeline.datasets.records import Pair
from pipeline.io import read_image

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ helpers
def _image(path: Path, width: int = 96, height: int = 128, mode: str = "RGB", **save) -> Path:
    """A small deterministic test image (gradient + a bright block), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx + yy) % 256], 2
    )
    rgb[: height // 4, : width // 4] = 255
    img = Image.fromarray(rgb.astype(np.uint8))
    if mode == "P":
        img = img.quantize(16)
    elif mode == "I;16":
        img = Image.fromarray((yy * 500).astype(np.uint16))
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, **save)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height but holds almost no data (a bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _tree_digest(root: Path) -> str:
    """Hash of every entry under root: path, kind, content or link target, mtime."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top) / name
            info = path.lstat()
            digest.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                digest.update(b"L" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(b"F" + path.read_bytes() + str(info.st_mtime_ns).encode())
            else:
                digest.update(b"D")
    return digest.hexdigest()


# Good pairs and the reason each bad input must be rejected with (substring).
GOOD = {"alice/p0", "alice/p1", "bob/p0", "carol/p0", "dave/p0", "kate/p0"}
BAD = {
    "bob/p1_flash.jpg": "truncated file",
    "bob/p1_studio.jpg": "partner rejected (flash p1_flash.jpg: truncated file)",
    "carol/p1_studio.jpg": "zero bytes",
    "carol/p1_flash.jpg": "partner rejected (studio p1_studio.jpg: zero bytes)",
    "dave/p1_flash.jpg": "not an image",
    "dave/p1_studio.jpg": "partner rejected (flash p1_flash.jpg: not an image",
    "erin/p0_flash.jpg": "flash image without studio partner (expected erin/p0_studio.<ext>)",
    "erin/p1_studio.jpg": "studio image without flash partner",
    "frank/p0_flash.jpg": "2 files claim the flash image of pair frank/p0",
    "frank/p0_flash.png": "2 files claim the flash image of pair frank/p0",
    "frank/p0_studio.jpg": "pair frank/p0 rejected: several files claim its flash image",
    "gina/p0_flash.jpg": "aspect mismatch: flash 96x128 (0.750) vs studio 128x96 (1.333)",
    "gina/p0_studio.jpg": "aspect mismatch",
    "hank/p0_flash.jpg": "too small: 48x64, shorter side < min_side 64",
    "hank/p0_studio.jpg": "too small: 48x64",
    "ivan/p0_flash.png": "decompression bomb: 40000x40000 = 1600000000 pixels",
    "ivan/p0_studio.jpg": "partner rejected (flash p0_flash.png: decompression bomb",
    "lena/p0_flash.png": "unreadable (broken data stream",
    "lena/p0_studio.jpg": "partner rejected (flash p0_flash.png: unreadable",
    "judy/p0_flash.jpg": "symlink leaves the raw folder",
    "judy/p0_studio.jpg": "partner rejected (flash p0_flash.jpg: symlink leaves the raw folder",
    "alice/IMG_0001.jpg": "name is neither <pose>_flash.<ext> nor <pose>_studio.<ext>",
    "escape": "symlink leaves the raw folder",
}


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """A `pairs` folder mixing six good pairs with every kind of bad input."""
    root = tmp_path / "raw"
    _image(root / "alice/p0_flash.jpg")
    _image(root / "alice/p0_studio.jpg")
    _image(root / "alice/p1_flash.png", mode="I;16")  # 16-bit grey
    _image(root / "alice/p1_studio.png", mode="P")  # palette
    (root / "alice/notes.txt").write_text("ignored: not an image, not a pair name")
    _image(root / "alice/IMG_0001.jpg")
    for name in ("bob", "carol", "dave"):
        _image(root / f"{name}/p0_flash.jpg")
        _image(root / f"{name}/p0_studio.png", mode="RGBA")
    good = _image(root / "bob/p1_flash.jpg").read_bytes()
    (root / "bob/p1_flash.jpg").write_bytes(good[: len(good) // 2])
    _image(root / "bob/p1_studio.jpg")
    _image(root / "carol/p1_flash.jpg")
    (root / "carol/p1_studio.jpg").write_bytes(b"")
    (root / "dave/p1_flash.jpg").write_text("this is a text file, not a JPEG")
    _image(root / "dave/p1_studio.jpg")
    _image(root / "erin/p0_flash.jpg")
    _image(root / "erin/p1_studio.jpg")
    _image(root / "frank/p0_flash.jpg")
    _image(root / "frank/p0_flash.png")
    _image(root / "frank/p0_studio.jpg")
    _image(root / "gina/p0_flash.jpg", 96, 128)
    _image(root / "gina/p0_studio.jpg", 128, 96)
    _image(root / "hank/p0_flash.jpg", 48, 64)
    _image(root / "hank/p0_studio.jpg", 48, 64)
    _png_header_only(root / "ivan/p0_flash.png", 40000, 40000)
    _image(root / "ivan/p0_studio.jpg", 128, 128)
    corrupt = bytearray(_image(root / "lena/p0_flash.png").read_bytes())
    start = corrupt.index(b"IDAT") + 20  # complete file, garbled compressed pixel data
    corrupt[start : start + 40] = bytes(b ^ 0x55 for b in corrupt[start : start + 40])
    (root / "lena/p0_flash.png").write_bytes(bytes(corrupt))
    _image(root / "lena/p0_studio.jpg")
    outside = _image(tmp_path / "outside/photo.jpg")
    (root / "judy").mkdir()
    (root / "judy/p0_flash.jpg").symlink_to(outside)
    _image(root / "judy/p0_studio.jpg")
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    # EXIF orientation 6: stored landscape 128x96, upright portrait 96x128.
    exif = Image.Exif()
    exif[0x0112] = 6
    _image(root / "kate/p0_flash.jpg", 128, 96, exif=exif)
    _image(root / "kate/p0_studio.jpg", 96, 128)
    # Top-level files (a demo's truth.csv and contact sheet) are not pairs: ignored.
    (root / "truth.csv").write_text("subject,pose\n")
    _image(root / "contact_sheet.png")
    return root


# -------------------------------------------------------------------------------- pairs
def test_every_bad_input_rejected_with_its_reason_good_pairs_kept(raw: Path, tmp_path: Path):
    """Each bad case is listed with its reason; the six good pairs of the folder are kept."""
    before = _tree_digest(raw)
    result = read_dataset(raw, "pairs", derived_dir=tmp_path / "derived")
    assert {f"{p.subject}/{p.pose}" for p in result.pairs} == GOOD
    reasons = {Path(r.file).relative_to(raw).as_posix(): r.reason for r in result.rejected}
    assert set(reasons) == set(BAD)
    for file, expected in BAD.items():
        assert expected in reasons[file], (file, reasons[file])
    assert len(result.rejected_pairs) == 11  # bob/p1 ... lena/p0; IMG_0001 and escape cost none
    assert result.reject_fraction == pytest.approx(11 / 17)
    assert _tree_digest(raw) == before  # the raw folder was only read


def test_pair_records_sizes_after_orientation_and_conversion(raw: Path):
    """EXIF-rotated JPEG gives the upright size; 16-bit grey, palette and RGBA are accepted."""
    result = read_dataset(raw, "pairs")
    by_id = {p.pair_id: p for p in result.pairs}
    kate = by_id["kate__p0"]
    assert (kate.width, kate.height) == (96, 128)  # stored as 128x96 with orientation 6
    assert read_image(kate.flash_path).shape == (128, 96, 3)
    alice = by_id["alice__p1"]
    assert (alice.width, alice.height, alice.studio_width, alice.studio_height) == (
        96,
        128,
        96,
        128,
    )
    assert alice.flash_path == (raw / "alice/p1_flash.png").as_posix()
    assert all(p.source == "pairs" for p in result.pairs)


def test_manifest_split_and_metrics(raw: Path):
    """Manifest columns as documented in pipeline/datasets/ingest.py; one split per subject; metrics count it all."""
    result = read_dataset(raw, "pairs")
    manifest = build_manifest(result.pairs, 0.7, 0.15, seed=0)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["pair_id"].is_unique and list(manifest["pair_id"]) == sorted(
        manifest["pair_id"]
    )
    assert (manifest.groupby("subject")["split"].nunique() == 1).all()
    metrics = ingest_metrics(result, manifest)
    # 5 subjects: val round(0.75) = 1, test round(0.75) = 1, train the other 3.
    assert metrics["subjects"] == 5
    assert (metrics["subjects_train"], metrics["subjects_val"], metrics["subjects_test"]) == (
        3,
        1,
        1,
    )
    assert metrics["train"] + metrics["val"] + metrics["test"] == metrics["pairs"] == 6
    assert (metrics["rejected"], metrics["rejected_files"]) == (11, len(BAD))
    problem = reject_problem(result, 0.5)
    # One reason per lost pair (its own, not the partner's echo), the ten most common.
    assert problem == (
        "11 of 17 pairs rejected (65%) > max_reject_fraction 50%. Reasons: 1 x truncated file; "
        "1 x zero bytes; 1 x not an image; 1 x flash image without studio partner; "
        "1 x studio image without flash partner; 1 x 2 files claim the flash image; "
        "1 x aspect mismatch; 1 x too small; 1 x decompression bomb; "
        "1 x symlink leaves the raw folder; 1 other reason(s). See the rejected list for files."
    )
    assert reject_problem(result, 0.7) is None


def test_missing_folder_and_unknown_layout(tmp_path: Path):
    """Whole-folder problems raise DatasetError naming the folder or the allowed layouts."""
    with pytest.raises(DatasetError, match="raw folder not found"):
        read_dataset(tmp_path / "nope", "pairs")
    with pytest.raises(DatasetError, match="allowed: pairs, faid, yaleb"):
        read_dataset(tmp_path, "zip")
    with pytest.raises(DatasetError, match="inside the raw folder"):
        read_dataset(tmp_path, "yaleb", derived_dir=tmp_path / "derived")


# -------------------------------------------------------------------------------- split
@pytest.mark.parametrize(
    ("n", "val", "expected"),
    [(0, 0.15, (0, 0, 0)), (1, 0.15, (1, 0, 0)), (2, 0.15, (1, 0, 1)), (3, 0.15, (1, 1, 1)),
     (6, 0.15, (4, 1, 1)), (19, 0.15, (13, 3, 3)), (10, 0.0, (7, 0, 3))],
)  # fmt: skip
def test_split_sizes(n: int, val: float, expected: tuple[int, int, int]):
    """Train gets >= 1; with >= 3 subjects val (ratio > 0) and test get >= 1."""
    assert split_sizes(n, 0.7, val) == expected


def test_split_is_subject_level_seeded_and_changes_with_seed():
    """Every pose of a subject lands in one split; a seed gives one split, another seed another."""
    found = [
        Pair(f"s{i:02d}__p{k}", f"s{i:02d}", f"p{k}", "f.jpg", "s.jpg", 96, 128, 96, 128, "pairs")
        for i in range(20)
        for k in range(3)
    ]
    m0 = build_manifest(found, 0.7, 0.15, seed=0)
    assert (m0.groupby("subject")["split"].nunique() == 1).all()
    per_split = m0.groupby("split")["subject"].nunique().to_dict()
    assert per_split == {"train": 14, "val": 3, "test": 3}
    assert build_manifest(found, 0.7, 0.15, seed=0).equals(m0)
    m1 = build_manifest(found, 0.7, 0.15, seed=1)
    assert not m1["split"].equals(m0["split"])
    assert m1.drop(columns="split").equals(m0.drop(columns="split"))  # only the split changes
    subjects = [f"s{i:02d}" for i in range(20)]
    assert split_subjects(subjects, 0.7, 0.15, 0) == split_subjects(
        reversed(subjects), 0.7, 0.15, 0
    )


def test_the_yaleb_profile_trains_every_non_test_person_and_keeps_the_test_people():
    """params-yaleb.yaml's split: 16 train, no val, 3 test of the 19 shared people, and the
    test people are those of the earlier 13/3/3 split (README, "Extended Yale B" compares the
    two person by person, so they must be the same people)."""
    from pipeline.config import override_args

    args = override_args(Path(__file__).resolve().parents[1] / "params-yaleb.yaml")
    pairs = dict(a.split("=", 1) for a in args if a != "-S")
    train, val = float(pairs["ingest.train"]), float(pairs["ingest.val"])
    assert split_sizes(19, train, val) == (16, 0, 3)
    people = [f"yaleB{i:02d}" for i in range(1, 21) if i != 14]  # the 19 shared people
    now = split_subjects(people, train, val, 0)
    before = split_subjects(people, 0.7, 0.15, 0)
    assert sorted(p for p, s in now.items() if s == "test") == ["yaleB02", "yaleB10", "yaleB17"]
    assert {p for p, s in now.items() if s == "test"} == {
        p for p, s in before.items() if s == "test"
    }
    assert {p for p, s in now.items() if s == "train"} == {
        p for p, s in before.items() if s in ("train", "val")
    }


# --------------------------------------------------------------------------------- faid
def test_faid_layout(tmp_path: Path):
    """`*_flash` pairs with `*_ambient` (or `*_noflash`) in its folder; each pair is a subject."""
    root = tmp_path / "faid"
    _image(root / "People_001_flash.png")
    _image(root / "People_001_ambient.png")
    _image(root / "Rooms/People_002_flash.jpg")
    _image(root / "Rooms/People_002_ambient.jpg")
    _image(root / "redeye_3_flash.jpg")
    _image(root / "redeye_3_noflash.jpg")  # public flash/no-flash samples' naming
    _image(root / "People_003_flash.png")
    _image(root / "People_004_noflash.png")
    _image(root / "People_005.png")
    before = _tree_digest(root)
    result = read_dataset(root, "faid")
    assert [(p.subject, p.pose, p.source) for p in result.pairs] == [
        ("People_001", "0", "faid"),
        ("Rooms-People_002", "0", "faid"),
        ("redeye_3", "0", "faid"),
    ]
    assert result.pairs[2].studio_path == (root / "redeye_3_noflash.jpg").as_posix()
    reasons = {Path(r.file).name: r.reason for r in result.rejected}
    assert reasons == {
        "People_003_flash.png": "flash image without ambient partner (expected <name>_ambient.<ext>)",
        "People_004_noflash.png": "ambient image without flash partner (expected <name>_flash.<ext>)",
        "People_005.png": (
            "name is neither <name>_flash.<ext> nor <name>_ambient.<ext> (or <name>_noflash.<ext>)"
        ),
    }
    assert _tree_digest(root) == before


# -------------------------------------------------------------------------------- yaleb
LIGHTS = ["P00A+000E+20", "P00A-020E+10"]


def _pgm(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = (np.arange(168 * 192).reshape(192, 168) % 50 + value).astype(np.uint8)
    Image.fromarray(grey).save(path)
    return path


def test_yaleb_layout_synthetic(tmp_path: Path):
    """Flash = camera-axis light; studio = mean of the lights found; gaps recorded or rejected."""
    root = tmp_path / "CroppedYale"
    _pgm(root / "yaleB01/yaleB01_P00A+000E+00.pgm", 10)
    _pgm(root / "yaleB01/yaleB01_P00A+000E+20.pgm", 100)
    _pgm(root / "yaleB01/yaleB01_P00A-020E+10.pgm", 140)
    _pgm(root / "yaleB01/yaleB01_P00A+050E+00.pgm", 250)  # not a studio light: ignored
    _pgm(root / "yaleB02/yaleB02_P00A+000E+00.pgm", 10)
    _pgm(root / "yaleB02/yaleB02_P00A-020E+10.pgm", 60)  # one light missing: kept
    _pgm(root / "yaleB03/yaleB03_P00A+000E+00.pgm", 10)  # no light at all: rejected
    _pgm(root / "yaleB04/yaleB04_P00A+000E+20.pgm", 10)  # no flash: rejected
    before = _tree_digest(root)
    derived = tmp_path / "derived"
    result = read_dataset(root, "yaleb", derived_dir=derived, yaleb_studio_lights=LIGHTS)
    assert [p.pair_id for p in result.pairs] == ["yaleB01__P00", "yaleB02__P00"]
    pair = result.pairs[0]
    assert pair.flash_path == (derived / "yaleB01__P00_flash.png").as_posix()
    assert (pair.width, pair.height, pair.source) == (168, 192, "yaleb")
    base = np.arange(168 * 192).reshape(192, 168) % 50
    np.testing.assert_allclose(read_image(pair.flash_path)[..., 0] * 255, base + 10, atol=0.01)
    np.testing.assert_allclose(read_image(pair.studio_path)[..., 1] * 255, base + 120, atol=0.01)
    np.testing.assert_allclose(
        read_image(result.pairs[1].studio_path)[..., 2] * 255, base + 60, atol=0.01
    )
    reasons = {Path(r.file).name: (r.reason, r.pair) for r in result.rejected}
    assert reasons == {
        "yaleB02_P00A+000E+20.pgm": (
            "studio light P00A+000E+20 missing (left out of the mean)",
            None,
        ),
        "yaleB03_P00A+000E+20.pgm": (
            "studio light P00A+000E+20 missing (left out of the mean)",
            None,
        ),
        "yaleB03_P00A-020E+10.pgm": (
            "studio light P00A-020E+10 missing (left out of the mean)",
            None,
        ),
        "yaleB03": ("no usable studio light among P00A+000E+20, P00A-020E+10", "yaleB03/P00"),
        "yaleB04_P00A+000E+00.pgm": (
            "flash image (light on the camera axis) missing",
            "yaleB04/P00",
        ),
    }
    assert result.missing_lights == 3
    assert _tree_digest(root) == before


def test_yaleb_shared_gives_one_pair_per_person(tmp_path: Path, shared_data: Path):
    """The real cropped Extended Yale B: exactly one pair per person, studio = mean of lights."""
    root = shared_data / "yaleb" / "CroppedYale"
    if not root.is_dir():
        pytest.skip(f"shared test data not available: {root}")
    people = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("yaleB"))
    lights = ["P00A+000E+20", "P00A-020E+10", "P00A+020E+10", "P00A-035E+15", "P00A+035E+15"]
    result = read_dataset(root, "yaleb", derived_dir=tmp_path, yaleb_studio_lights=lights)
    assert [p.subject for p in result.pairs] == people
    assert len({p.pair_id for p in result.pairs}) == len(people) == 19
    assert all((p.width, p.height) == (168, 192) for p in result.pairs)
    first = result.pairs[0]
    stack = [read_image(root / first.subject / f"{first.subject}_{light}.pgm") for light in lights]
    np.testing.assert_allclose(
        read_image(first.studio_path), np.mean(stack, axis=0), atol=0.5 / 255 + 1e-6
    )
    flash_raw = read_image(root / first.subject / f"{first.subject}_P00A+000E+00.pgm")
    np.testing.assert_array_equal(read_image(first.flash_path), flash_raw)
    manifest = build_manifest(result.pairs, 0.7, 0.15, seed=0)
    assert manifest.groupby("split")["subject"].nunique().to_dict() == {
        "train": 13,
        "val": 3,
        "test": 3,
    }


# -------------------------------------------------------------------------------- stage
def _run_stage(
    workdir: Path, raw_dir: Path, max_reject_fraction: float, monkeypatch, seed: int = 0
) -> int:
    params = {
        "data": {"raw_dir": str(raw_dir), "layout": "pairs"},
        "ingest": {"max_reject_fraction": max_reject_fraction, "seed": seed},
    }
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(workdir)
    spec = importlib.util.spec_from_file_location("stage_ingest", REPO / "stages" / "ingest.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    return stage.main()


def test_stage_fails_on_too_many_rejects_but_writes_the_list(
    raw: Path, tmp_path: Path, monkeypatch, capsys
):
    """11 of 17 pairs rejected > 50%: exit 1 with a summary, rejected.csv written, no manifest."""
    work = tmp_path / "work"
    work.mkdir()
    before = _tree_digest(raw)
    assert _run_stage(work, raw, 0.5, monkeypatch) == 1
    assert "11 of 17 pairs rejected (65%) > max_reject_fraction 50%" in capsys.readouterr().err
    rejected = pd.read_csv(work / "reports/rejected.csv")
    assert list(rejected.columns) == ["file", "reason"] and len(rejected) == len(BAD)
    by_file = dict(zip(rejected["file"], rejected["reason"], strict=True))
    assert by_file[(raw / "carol/p1_studio.jpg").as_posix()] == "zero bytes"
    assert not (work / "data/interim/manifest.csv").exists()
    assert (work / "data/interim/derived/README.txt").is_file()

    assert _run_stage(work, raw, 0.7, monkeypatch) == 0
    manifest = pd.read_csv(work / "data/interim/manifest.csv")
    assert tuple(manifest.columns) == MANIFEST_COLUMNS and len(manifest) == 6
    assert set(manifest["split"]) == {"train", "val", "test"}
    metrics = yaml.safe_load((work / "metrics/ingest.json").read_text())
    assert (metrics["pairs"], metrics["rejected"], metrics["subjects"]) == (6, 11, 5)
    assert _tree_digest(raw) == before


def test_stage_seed_changes_only_the_split(raw: Path, tmp_path: Path, monkeypatch):
    """`dvc exp run -S ingest.seed=1`: same pairs, paths and sizes; another subject split."""
    manifests = []
    for seed in (0, 1):
        work = tmp_path / f"seed{seed}"
        work.mkdir()
        assert _run_stage(work, raw, 0.7, monkeypatch, seed=seed) == 0
        manifests.append(pd.read_csv(work / "data/interim/manifest.csv"))
    seed0, seed1 = manifests
    pd.testing.assert_frame_equal(seed0.drop(columns="split"), seed1.drop(columns="split"))
    # 5 subjects (3 train, 1 val, 1 test either way): seed 0 holds out alice and bob,
    # seed 1 carol and dave.
    held_out = [
        dict(m.loc[m["split"] != "train", ["subject", "split"]].drop_duplicates().values)
        for m in manifests
    ]
    assert held_out == [{"alice": "val", "bob": "test"}, {"carol": "val", "dave": "test"}]


def test_empty_folder_fails_with_no_usable_pair(tmp_path: Path):
    """Nothing to pair: the stage's summary says so whatever max_reject_fraction is."""
    result = read_dataset(tmp_path, "pairs")
    assert result.pairs == [] and result.reject_fraction == 1.0
    assert reject_problem(result, 1.0) == (
        "no usable pair (0 rejected). Reasons: no pair images found. "
        "See the rejected list for files."
    )
