"""The crop stage over a dataset (pipeline/faces/dataset.py, stages/crop.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers.stagetools import file_hashes, run_stage
from skimage import data as skdata

from pipeline.config import AugmentParams, CropParams
from pipeline.faces.dataset import INDEX_COLUMNS, crop_dataset, crop_options, registration_matrix
from pipeline.faces.geometry import IDENTITY, place_crop
from pipeline.io import read_image, read_mask, write_image


def _astronaut(side: int) -> np.ndarray:
    image = skdata.astronaut().astype(np.float32) / 255.0
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no registration result (run the register stage)"),
        ('{"status": "rejected", "reason": "MI fell"}', "registration rejected: MI fell"),
        ("{not json", "unreadable registration (JSONDecodeError: "),
        ('{"status": "ok"}', "unreadable registration (KeyError: 'matrix')"),
        ('{"matrix": [[1, 0], [0, 1]]}', "registration matrix is not a finite 2x3 matrix"),
        ('{"matrix": [[1, 0, NaN], [0, 1, 0]]}', "registration matrix is not a finite 2x3"),
        ('{"matrix": [[1, 2, 0], [2, 4, 0]]}', "registration matrix is degenerate"),
    ],
    ids=["missing", "rejected", "not-json", "no-matrix", "2x2", "nan", "singular"],
)
def test_unusable_registrations_are_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    matrix, why = registration_matrix(path)
    assert matrix is None and why.startswith(reason), why


def test_usable_registration_matrix(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"status": "identity_fallback", "matrix": [[1, 0, 2.5], [0, 1, -1]]}')
    matrix, why = registration_matrix(path)
    assert why == "" and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, [[1, 0, 2.5], [0, 1, -1]])


def test_crop_options_map_the_params_group_and_the_rotations_range():
    options = crop_options(CropParams(), [-20.0, -10.0, 0.0, 10.0, 20.0])
    assert options == {
        "detector": "auto",
        "detect_max_side": 800,
        "upsample": 1,
        "cnn_max_side": 400,
        "margin": 0.4,
        "min_margin": 0.0,
        "pad_mode": "constant",
        "on_missing": "center",
        "upright_range": (-20.0, 20.0),
    }
    assert crop_options(CropParams(), [30.0, -5.0])["upright_range"] == (-5.0, 30.0)


def test_crop_stage_end_to_end(tmp_path, monkeypatch):
    """Manifest + registration JSONs made here; every kind of pair, run twice."""
    root = tmp_path
    (root / "params.yaml").write_text("data:\n  size: 64\ncrop:\n  workers: 2\n")
    raw = root / "raw"
    flash = _astronaut(640)
    matrix = cv2.getRotationMatrix2D((320.0, 300.0), 2.0, 1.02)
    matrix[:, 2] += (6.0, -4.0)
    write_image(raw / "a_flash.png", flash)
    write_image(raw / "a_studio.png", cv2.warpAffine(flash, matrix, (640, 640)))
    write_image(raw / "b_flash.png", np.full((200, 300, 3), 0.5, np.float32))  # no face
    write_image(raw / "b_studio.png", np.full((200, 300, 3), 0.6, np.float32))
    (raw / "empty_flash.jpg").write_bytes(b"")
    pairs = {
        "s1__a": ("train", "a_flash.png", "a_studio.png", "ok", matrix),
        "s2__b": ("val", "b_flash.png", "b_studio.png", "identity_fallback", IDENTITY),
        "s3__empty": ("test", "empty_flash.jpg", "a_studio.png", "ok", IDENTITY),
        "s4__rej": ("train", "a_flash.png", "a_studio.png", "rejected", IDENTITY),
        "s5__noreg": ("train", "a_flash.png", "a_studio.png", None, None),
    }
    registered = root / "data" / "interim" / "registered"
    registered.mkdir(parents=True)
    with open(root / "data" / "interim" / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair_id", "subject", "pose", "split", "flash_path", "studio_path"])
        for pair_id, (split, f, s, status, m) in pairs.items():
            subject, pose = pair_id.split("__")
            writer.writerow([pair_id, subject, pose, split, f"raw/{f}", f"raw/{s}"])
            if status is not None:
                record = {"pair_id": pair_id, "matrix": np.asarray(m).tolist(), "status": status}
                record["reason"] = "MI did not improve" if status == "rejected" else ""
                (registered / f"{pair_id}.json").write_text(json.dumps(record))

    run = run_stage(root, "crop")
    assert run.returncode == 0, run.stderr
    faces = root / "data" / "interim" / "faces"
    with open(faces / "index.csv") as handle:
        index = {row["pair_id"]: row for row in csv.DictReader(handle)}
    assert sorted(index) == ["s1__a", "s2__b"]
    assert tuple(index["s1__a"]) == INDEX_COLUMNS
    assert INDEX_COLUMNS[:5] == ("pair_id", "subject", "split", "flash", "studio")
    assert INDEX_COLUMNS[5:] == ("face_top", "face_right", "face_bottom", "face_left", "mask")
    assert index["s1__a"]["split"] == "train" and index["s2__b"]["subject"] == "s2"
    # The registered studio crop matches the flash crop (the stage used the matrix).
    a_flash = read_image(root / index["s1__a"]["flash"])
    a_studio = read_image(root / index["s1__a"]["studio"])
    assert a_flash.shape == (64, 64, 3)
    assert np.abs(a_flash - a_studio).mean() < 0.01
    assert read_mask(root / index["s1__a"]["mask"]).all()  # the astronaut's square fits
    record = json.loads((faces / "s1__a.json").read_text())
    assert record["method"] == "detected" and record["angle"] == 0.0
    face = record["faces"][0]
    assert face["path"] == "hog" and abs(face["roll"]) < 10
    assert record["crop"] == list(place_crop(tuple(face["box"]), 640, 640, 0.4))
    assert json.loads((faces / "s2__b.json").read_text())["method"] == "center"
    with open(faces / "rejected.csv") as handle:
        rejected = {row["file"]: row["reason"] for row in csv.DictReader(handle)}
    assert rejected == {
        "raw/empty_flash.jpg": "zero bytes",
        str(
            Path("data/interim/registered/s4__rej.json")
        ): "registration rejected: MI did not improve",
        str(Path("data/interim/registered/s5__noreg.json")): (
            "no registration result (run the register stage)"
        ),
    }
    metrics = json.loads((root / "metrics" / "crop.json").read_text())
    assert metrics == {
        "pairs": 5,
        "cropped": 2,
        "detected": 1,
        "detected_hog": 1,
        "detected_hog_rotated": 0,
        "detected_cnn": 0,
        "fallback": 1,
        "rejected": 3,
        "multiple_faces": 0,
        "rotated": 0,
        "padded": 0,
    }
    # A rerun, in this process and without worker processes, writes the very same bytes.
    manifest = pd.read_csv(root / "data/interim/manifest.csv", dtype=str)
    monkeypatch.chdir(root)
    again = crop_dataset(
        manifest,
        "data/interim/registered",
        tmp_path / "again",
        CropParams(workers=1),
        size=64,
        rotations=AugmentParams().rotations,
    )
    assert again.metrics == metrics
    written = {name: digest for name, digest in file_hashes(faces).items() if name.startswith("s")}
    assert file_hashes(tmp_path / "again") == written and len(written) == 2 * 4
