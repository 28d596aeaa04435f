"""pipeline/align/dataset.py: the register stage over a folder. Suspect pairs are flagged with a
reason and rejected, genuine pairs are kept, and the per-pair files have the same bytes on
every run (no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from pipeline.align.dataset import (
    TIMING_KEYS,
    register_dataset,
    register_pair,
    registration_metrics,
    rejected_rows,
)
from pipeline.align.geometry import grid_error
from pipeline.align.synthetic import pair_rng, synthetic_pair
from pipeline.config import DemoParams, RegisterParams
from pipeline.datasets.ingest import DEFAULT_YALEB_LIGHTS
from pipeline.faces.dataset import registration_matrix
from pipeline.io import read_image, write_image

PORTRAITS = [
    "celebahq_ref_female_036619.jpg",
    "celebahq_ref_male_012712.jpg",
    "deepface_img2.jpg",
    "deepface_img11.jpg",
    "deepface_img20.jpg",
    "celebahq_ref_female_063109.jpg",
    "gfpgan_whole_imgs_00.jpg",
    "celebahq_ref_male_094805.jpg",
]


def manifest(rows: list[tuple[str, Path | str, Path | str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(p, str(f), str(s)) for p, f, s in rows], columns=["pair_id", "flash_path", "studio_path"]
    )


def write_pair(folder: Path, pair_id: str, flash: np.ndarray, studio: np.ndarray) -> tuple:
    flash_path, studio_path = folder / f"{pair_id}_flash.png", folder / f"{pair_id}_studio.png"
    write_image(flash_path, flash)
    write_image(studio_path, studio)
    return pair_id, flash_path, studio_path


def test_a_folder_with_three_bad_pairs(tmp_path: Path) -> None:
    """Genuine synthetic pairs of 8 shared portraits (in-range motion, strong flash-like
    relighting) and three made-up bad pairs: the studio image of another person, the flash
    image turned by 90 degrees, a constant image. Each bad pair is rejected with a reason,
    every genuine pair is kept and within 0.5 px."""
    raw = tmp_path / "raw"
    rows, truths = [], {}
    for i, name in enumerate(PORTRAITS):
        image = read_image(shared_path("portraits", name))
        flash, studio, truth = synthetic_pair(image, pair_rng(0, name), max_side=320)
        rows.append(write_pair(raw, f"g{i}", flash, studio))
        truths[f"g{i}"] = truth
    a = cv2.resize(
        read_image(shared_path("portraits", "celebahq_ref_female_015248.jpg")), (320, 320)
    )
    b = cv2.resize(
        read_image(shared_path("portraits", "celebahq_ref_female_030321.jpg")), (320, 320)
    )
    rows.append(write_pair(raw, "other_person", a, b))
    rows.append(write_pair(raw, "turned_90", a, np.ascontiguousarray(np.rot90(a))))
    rows.append(write_pair(raw, "constant", a, np.full_like(a, 0.5)))
    out = tmp_path / "registered"
    records = register_dataset(manifest(rows), out, RegisterParams(workers=1))
    by_id = {r["pair_id"]: r for r in records}
    for pair_id, truth in truths.items():
        r = by_id[pair_id]
        assert r["status"] == "ok" and r["suspect"] == [], (pair_id, r["reason"])
        size = tuple(r["fixed_size"])
        assert grid_error(np.array(r["matrix"]), truth, size) < 0.5
    for pair_id in ("other_person", "turned_90"):
        r = by_id[pair_id]
        assert r["status"] == "rejected" and r["reason"].startswith("suspect: ")
        kinds = {reason.split(":")[0] for reason in r["suspect"]}
        # The faces disagree, and MI lies far below the folder's (8 genuine pairs: enough).
        assert "mi_outlier" in kinds and kinds & {
            "faces_disagree",
            "face_missing",
            "landmarks_disagree",
            "different_person",
        }
    assert by_id["constant"]["status"] == "rejected"
    assert by_id["constant"]["reason"] == "flat_image: moving image has no contrast"
    saved = json.loads((out / "turned_90.json").read_text())
    assert saved["status"] == "rejected" and saved["suspect"] == by_id["turned_90"]["suspect"]
    assert not set(TIMING_KEYS) & set(saved)
    # The crop stage reads these files: it skips the suspect pairs and says why.
    matrix, why = registration_matrix(out / "turned_90.json")
    assert matrix is None and why.startswith("registration rejected: suspect: ")
    assert registration_matrix(out / "g0.json")[0] is not None
    listed = dict(rejected_rows(records, manifest(rows)))
    assert set(listed) == {
        str(raw / f"{p}_studio.png") for p in ("other_person", "turned_90", "constant")
    }
    assert listed[str(raw / "constant_studio.png")] == (
        "pair constant: flat_image: moving image has no contrast"
    )
    metrics = registration_metrics(records, manifest(rows), {})
    assert (metrics["pairs"], metrics["ok"], metrics["rejected"], metrics["suspect"]) == (
        11,
        8,
        3,
        2,
    )
    assert set(metrics["suspect_pairs"]) == {"other_person", "turned_90"}
    # Kept instead of rejected: the same reasons, recorded; the crop stage would use them.
    kept = register_dataset(
        manifest(rows[-3:-1]), None, RegisterParams(workers=1, on_suspect="keep")
    )
    assert all(r["status"] != "rejected" for r in kept)
    assert all("suspect (kept): " in r["reason"] and r["suspect"] for r in kept)


def test_real_flash_pairs_are_kept_and_rerun_gives_the_same_bytes(tmp_path: Path) -> None:
    names = [("faid_people014", "png"), ("faid_people150", "png")]
    names += [("redeye_man", "jpg"), ("redeye_woman", "jpg")]
    rows = [
        (
            n,
            shared_path("flash_pairs", f"{n}_flash.{e}"),
            shared_path("flash_pairs", f"{n}_noflash.{e}"),
        )
        for n, e in names
    ]
    first = register_dataset(manifest(rows), tmp_path / "a", RegisterParams(workers=1))
    assert [r["status"] for r in first] == ["ok", "ok", "identity_fallback", "ok"]
    assert all(r["suspect"] == [] for r in first)
    assert all(r["faces"]["reason"] == "" and r["faces"]["flash_box"] for r in first)
    register_dataset(manifest(rows), tmp_path / "b", RegisterParams(workers=1))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 8  # 4 JSON records + 4 previews
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_yale_b_pairs_are_all_kept(tmp_path: Path) -> None:
    """Every Yale B person: on-axis light vs the mean of 8 directions (the ingest's studio)."""
    rows = []
    for folder in sorted(shared_path("yaleb", "CroppedYale").iterdir()):
        person = folder.name
        flash = read_image(folder / f"{person}_P00A+000E+00.pgm")
        lights = DEFAULT_YALEB_LIGHTS
        studio = np.mean([read_image(folder / f"{person}_{light}.pgm") for light in lights], 0)
        rows.append(write_pair(tmp_path, person, flash, studio))
    # Two worker processes: the parallel path (fresh forkserver workers) runs here.
    records = register_dataset(manifest(rows), None, RegisterParams(workers=2))
    assert len(records) == 19
    flagged = {r["pair_id"]: r["reason"] for r in records if r["status"] != "ok" or r["suspect"]}
    assert flagged == {}


def test_demo_pairs_are_kept_with_the_tiny_e2e_settings(tmp_path: Path) -> None:
    """The e2e profile's demo (3 subjects, 256x320) and register settings: nothing rejected."""
    from pipeline.datasets.demo.generate import generate_demo

    demo = DemoParams(n_subjects=3, poses=2, width=256, height=320)
    summary = generate_demo(tmp_path / "demo", demo)
    truth = pd.read_csv(tmp_path / "demo" / "truth.csv", dtype=str)
    rows = [
        (f"{t.subject}__{t.pose}", tmp_path / "demo" / t.flash, tmp_path / "demo" / t.studio)
        for t in truth.itertuples()
    ]
    params = RegisterParams(max_side=128, iterations=30, levels=2, workers=1)
    records = register_dataset(manifest(rows), None, params)
    assert len(records) == 6 == len(summary.pairs)
    assert [r["status"] for r in records if r["status"] == "rejected"] == []


def test_register_pair_refuses_unusable_files_with_the_reason(tmp_path: Path) -> None:
    image = cv2.resize(read_image(shared_path("portraits", "deepface_img2.jpg")), (128, 96))
    write_image(tmp_path / "f.png", image)
    record = register_pair("a__p0", tmp_path / "f.png", tmp_path / "f.png", tmp_path / "out")
    assert record["status"] == "ok" and record["pair_id"] == "a__p0"
    # Three 128x96 panels (flash | aligned studio | checkerboard) with 4 px gaps.
    assert read_image(tmp_path / "out" / "previews" / "a__p0.jpg").shape == (96, 3 * 128 + 8, 3)
    (tmp_path / "bad.png").write_bytes(b"")
    bad = register_pair("b__p0", tmp_path / "f.png", tmp_path / "bad.png", tmp_path / "out")
    assert bad["status"] == "rejected" and "bad.png" in bad["reason"]
    assert "zero bytes" in bad["reason"]
    write_image(tmp_path / "tiny.png", np.ones((10, 10, 3), np.float32))
    tiny = register_pair("c__p0", tmp_path / "f.png", tmp_path / "tiny.png", None)
    assert tiny["status"] == "rejected" and "too small" in tiny["reason"]


def test_registration_metrics_residual_against_known_truth() -> None:
    """Residual error in metrics/register.json: 0 for the true matrix, the shift for identity."""
    frame = pd.DataFrame(
        [
            {"pair_id": p, "subject": p[0], "pose": "0", "width": 100, "height": 80}
            | {"studio_width": 100, "studio_height": 80}
            for p in ("a__0", "b__0")
        ]
    )
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 4.0]])
    truth = {("a", "0"): shift, ("b", "0"): shift}
    timings = {"iterations": 10, "seconds": 0.2, "cpu_seconds": 0.2, "face_seconds": 0.1}
    records = [
        {"pair_id": "a__0", "status": "ok", "reason": "", "matrix": shift.tolist()}
        | {"mi_before": 0.1, "mi_after": 0.5, "suspect": []}
        | timings,
        {"pair_id": "b__0", "status": "identity_fallback", "reason": "mi: not improved"}
        | {"matrix": np.eye(2, 3).tolist(), "mi_before": 0.1, "mi_after": 0.1, "suspect": []}
        | timings
        | {"cpu_seconds": 0.4},
    ]
    metrics = registration_metrics(records, frame, truth)
    assert (metrics["ok"], metrics["identity_fallback"], metrics["failures"]) == (1, 1, 1)
    assert metrics["failure_reasons"] == {"mi": 1}
    assert metrics["median_mi_gain"] == pytest.approx(0.4)
    assert metrics["median_cpu_seconds"] == pytest.approx(0.3)
    assert metrics["max_cpu_seconds"] == pytest.approx(0.4)
    assert metrics["residual_error_px"]["max"] == pytest.approx(5.0)  # |(3, 4)| for identity
    assert metrics["residual_error_px"]["median"] == pytest.approx(2.5)
    assert metrics["unregistered_error_px"]["mean"] == pytest.approx(5.0)
