"""Tests of the synthetic flash/studio generator (pipeline/datasets/demo/)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.config import DemoParams
from pipeline.datasets.demo import (
    Misalignment,
    PoseSpec,
    Source,
    default_prepared_sources,
    default_sources,
    generate_demo,
    make_pose_specs,
    make_subject_specs,
    render_pair,
)
from pipeline.datasets.truth import read_truth
from pipeline.faces.detect import detect_faces
from pipeline.io import read_image, write_image

SMALL = {"width": 192, "height": 256}
LIMITS = {"max_rotation_deg": 3.0, "max_scale": 0.03, "max_shift_frac": 0.02, "max_shear": 0.02}


def settings(**changes) -> DemoParams:
    """The demo group with ``changes``, not re-validated: fewer subjects than the pipeline's
    split needs keep these tests fast (the generator itself takes any count)."""
    return DemoParams().model_copy(update=changes)


@pytest.fixture(scope="module")
def sources():
    """The two default portraits, prepared once (face box, person/skin/hair maps)."""
    return default_prepared_sources()


def _interior_error(moved: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    return float(np.abs(moved - reference)[valid].mean())


def _valid_after_warp(matrix: np.ndarray, width: int, height: int, margin: int = 6) -> np.ndarray:
    """Flash pixels whose studio partner lies inside the studio image (away from its border)."""
    ones = np.zeros((height, width), np.float32)
    ones[margin:-margin, margin:-margin] = 1
    back = cv2.warpAffine(
        ones, matrix, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return back > 0.5


def test_misalignment_matrix_convention():
    """M maps the flash centre to centre + shift; its linear part is R(theta) s Shear."""
    mis = Misalignment(rotation_deg=2.0, scale=1.02, shear=0.01, shift_x=5.0, shift_y=-3.0)
    m = mis.matrix(101, 201)
    centre = np.array([50.0, 100.0, 1.0])
    np.testing.assert_allclose(m @ centre, [55.0, 97.0], atol=1e-9)
    theta = math.radians(2.0)
    expected = (
        1.02
        * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        @ np.array([[1, 0.01], [0, 1]])
    )
    np.testing.assert_allclose(m[:, :2], expected, atol=1e-12)
    assert np.linalg.det(m[:, :2]) == pytest.approx(1.02**2)


def test_generator_is_deterministic(tmp_path: Path):
    """Two runs with one seed are byte-identical; another seed changes the images."""
    options = {"n_subjects": 2, "poses": 2, "seed": 3, **SMALL}
    generate_demo(tmp_path / "a", settings(**options))
    generate_demo(tmp_path / "b", settings(**options))
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    assert len(files_a) == 2 * 2 * 2 + 2  # 4 pairs + truth.csv + contact_sheet.png
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    generate_demo(tmp_path / "c", settings(**{**options, "seed": 4}))
    assert (tmp_path / "c" / "truth.csv").read_bytes() != (
        tmp_path / "a" / "truth.csv"
    ).read_bytes()
    flash = "s00-astronaut/p0_flash.jpg"
    assert (tmp_path / "c" / flash).read_bytes() != (tmp_path / "a" / flash).read_bytes()


def test_truth_csv_matches_the_written_warps(tmp_path: Path):
    """With the flash and noise off, truth.csv's matrix warps the studio file onto the flash file."""
    summary = generate_demo(
        tmp_path,
        settings(n_subjects=2, poses=2, seed=1, noise_sigma=0.0, **SMALL, **LIMITS),
        flash=False,
    )
    truth = read_truth(tmp_path / "truth.csv")
    assert len(truth) == 4
    w, h = SMALL["width"], SMALL["height"]
    for row, written in zip(truth.itertuples(), summary.pairs, strict=True):
        np.testing.assert_allclose(row.matrix, written.matrix, atol=1e-9)
        # The stored parameters rebuild the stored matrix and respect the limits.
        mis = Misalignment(row.rotation_deg, row.scale, row.shear, row.shift_x, row.shift_y)
        np.testing.assert_allclose(mis.matrix(w, h), row.matrix, atol=1e-9)
        assert abs(row.rotation_deg) <= 3.0 and abs(row.scale - 1) <= 0.03
        assert abs(row.shear) <= 0.02
        assert abs(row.shift_x) <= 0.02 * w and abs(row.shift_y) <= 0.02 * h

        flash = read_image(tmp_path / row.flash)
        studio = read_image(tmp_path / row.studio)
        valid = _valid_after_warp(row.matrix, w, h)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        aligned = cv2.warpAffine(studio, row.matrix, (w, h), flags=flags)
        wrong_way = cv2.warpAffine(
            studio, cv2.invertAffineTransform(row.matrix), (w, h), flags=flags
        )
        error = _interior_error(aligned, flash, valid)
        identity_error = _interior_error(studio, flash, valid)
        wrong_way_error = _interior_error(wrong_way, flash, valid)
        # JPEG (q95) and two interpolations leave ~0.01; a wrong matrix leaves 5-10x that.
        assert error < 0.02
        assert error < 0.4 * identity_error
        assert error < 0.4 * wrong_way_error


def test_render_pair_physics(sources):
    """Studio warps back onto its aligned render; the flash darkens the background, cools,
    adds the requested noise."""
    w, h = 240, 320
    subject = make_subject_specs([s.name for s in sources], 1, seed=0)[0]
    pose = make_pose_specs(subject, 1, 0, w, h, **LIMITS)[0]
    clean = render_pair(sources[0], subject, pose, w, h, noise_sigma=0.0, seed=0)
    valid = _valid_after_warp(clean.matrix, w, h)
    back = cv2.warpAffine(
        clean.studio, clean.matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    assert _interior_error(back, clean.studio_aligned, valid) < 0.015
    assert _interior_error(clean.studio, clean.studio_aligned, valid) > 0.04

    # Face centre vs the top corners (background behind the head).
    fx, fy = round(clean.face[0]), round(clean.face[1])
    face = (slice(fy - 8, fy + 8), slice(fx - 8, fx + 8))
    corners = np.concatenate(
        [clean.flash[:30, :30].reshape(-1, 3), clean.flash[:30, -30:].reshape(-1, 3)]
    )
    corners_studio = np.concatenate(
        [
            clean.studio_aligned[:30, :30].reshape(-1, 3),
            clean.studio_aligned[:30, -30:].reshape(-1, 3),
        ]
    )
    flash_ratio = corners.mean() / clean.flash[face].mean()
    studio_ratio = corners_studio.mean() / clean.studio_aligned[face].mean()
    assert flash_ratio < 0.75 * studio_ratio  # inverse-square fall-off darkens the background
    blue_red = lambda img: img[..., 2].mean() / img[..., 0].mean()  # noqa: E731
    assert blue_red(clean.flash) > 1.1 * blue_red(clean.studio_aligned)  # cooler flash

    noisy = render_pair(sources[0], subject, pose, w, h, noise_sigma=0.02, seed=0)
    inside = (clean.flash > 0.05) & (clean.flash < 0.95)  # away from clipping
    assert np.std((noisy.flash - clean.flash)[inside]) == pytest.approx(0.02, rel=0.1)
    np.testing.assert_array_equal(noisy.studio, clean.studio)  # studio shot: no sensor noise


def _synthetic_scene(skin: bool = True):
    """A hand-made source (flat albedo: person 0.7, background 0.4, an elliptic head and a
    torso), a frontal subject and a pose without roll, zoom, shift or misalignment."""
    h, w = 600, 480
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    head = ((xx - 240) / 70) ** 2 + ((yy - 220) / 90) ** 2 < 1
    torso = (yy > 290) & (np.abs(xx - 240) < 150)
    person = cv2.GaussianBlur((head | torso).astype(np.float32), (0, 0), 1.5)
    face = ((xx - 240) / 55) ** 2 + ((yy - 225) / 70) ** 2 < 1
    image = np.repeat((0.4 + 0.3 * person)[..., None], 3, axis=2)
    source = Source(
        name="synthetic",
        image=image,
        face=(240.0, 220.0, 120.0, 150.0),
        face_detected=True,
        person=person,
        skin=face.astype(np.float32) if skin else np.zeros_like(person),
        hair=np.zeros_like(person),
    )
    subject = dataclasses.replace(
        make_subject_specs(["synthetic"], 1, seed=0)[0],
        face_fraction=0.4,
        face_x=0.5,
        face_y=0.42,
        face_distance_m=0.45,
        background_distance_m=1.6,
        flash_offset_m=(0.06, 0.0),  # 6 cm right of the lens
    )
    pose = PoseSpec(0, "p0", (0.0, 0.0), 1.0, 0.0, Misalignment(0.0, 1.0, 0.0, 0.0, 0.0))
    return source, subject, pose


@pytest.mark.parametrize("side", [1, -1], ids=["flash-right", "flash-left"])
def test_flash_casts_a_hard_shadow_opposite_the_flash(side: int):
    """Flash 6 cm beside the lens: the head's hard shadow falls on the background on the other
    side, f * offset * (1/d_edge - 1/d_background) = 180 * 0.06 * (1/0.54 - 1/1.6) = 13.2 px
    wide at 240 px; the background past it and on the flash side is lit."""
    source, subject, pose = _synthetic_scene()
    subject = dataclasses.replace(subject, flash_offset_m=(side * 0.06, 0.0))
    pair = render_pair(source, subject, pose, 240, 320, noise_sigma=0.0, seed=0)
    fy = round(pair.face[1])
    rows = slice(fy - 10, fy + 10)
    # Flash / studio per column: the albedo cancels (person 0.7, background 0.4), the studio
    # light is even, so what is left is the flash's light, shadow included.
    studio = pair.studio_aligned[rows].mean(axis=2)
    ratio = (pair.flash[rows].mean(axis=2) / studio).mean(axis=0)
    person = studio.mean(axis=0) > 0.8 * studio.max()
    left, right = int(np.argmax(person)), 239 - int(np.argmax(person[::-1]))
    if side < 0:  # mirror, so the shadow side is always "before the edge"
        ratio, left, right = ratio[::-1], 239 - right, 239 - left
    lit = ratio[right + 20 : right + 30].mean()  # background on the flash side
    beyond = ratio[left - 30 : left - 20].mean()  # shadow side, past the shadow
    assert lit == pytest.approx(beyond, rel=0.1)
    in_shadow = ratio[left - 25 : left] < (lit + ratio[left - 9 : left - 4].min()) / 2
    assert ratio[left - 9 : left - 4].mean() < 0.75 * lit
    assert in_shadow.sum() == pytest.approx(13.2, abs=2)


def test_flash_adds_shine_on_the_skin_only():
    """Oily skin shines under the flash (Blinn-Phong, n^60): brighter on the face with the
    skin map than without; identical elsewhere, and the studio shot never shines."""
    source, subject, pose = _synthetic_scene(skin=True)
    shiny = render_pair(source, subject, pose, 240, 320, noise_sigma=0.0, seed=0)
    matte_source = _synthetic_scene(skin=False)[0]
    matte = render_pair(matte_source, subject, pose, 240, 320, noise_sigma=0.0, seed=0)
    shine = (shiny.flash - matte.flash).mean(axis=2)
    assert shine.min() >= 0
    assert shine.max() > 0.08
    fx, fy, fw, fh = shiny.face
    y, x = np.unravel_index(np.argmax(shine), shine.shape)
    assert abs(x - fx) < fw / 2 and abs(y - fy) < fh / 2  # the highlight is on the face
    far = np.hypot((np.arange(240)[None] - fx) / fw, (np.arange(320)[:, None] - fy) / fh) > 1
    assert np.abs(shine[far]).max() == 0
    np.testing.assert_array_equal(shiny.studio, matte.studio)


def test_default_demo_faces_are_detectable(tmp_path: Path):
    """The default demo (6 subjects x 2 poses, 768x1024): the crop stage's detector (HOG on an
    800 px copy) finds the face in every image, where truth.csv puts it (the flash) and where
    the misalignment moves it (the studio)."""
    summary = generate_demo(tmp_path, DemoParams())
    assert summary.metrics()["pairs"] == 12 and summary.metrics()["subjects"] == 6
    assert summary.faces_not_found == []
    assert len({s.name for s in summary.subjects}) == 6
    truth = read_truth(tmp_path / "truth.csv")
    for pair, row in zip(summary.pairs, truth.itertuples(), strict=True):
        assert (row.face_x, row.face_y) == pytest.approx(pair.face[:2], abs=1e-6)
        centre = np.array([pair.face[0], pair.face[1], 1.0])
        for path, expected in ((pair.flash, centre[:2]), (pair.studio, pair.matrix @ centre)):
            boxes = detect_faces(read_image(path))
            assert boxes, f"no face found in {path}"
            top, right, bottom, left = boxes[0]
            found = np.array([(left + right) / 2, (top + bottom) / 2])
            assert np.linalg.norm(found - expected) < 0.1 * 768, path
            assert 0.6 < (right - left) / pair.face[2] < 1.6, path


def test_portraits_dir_and_variants(tmp_path: Path):
    """A folder with one portrait gives one source; extra subjects are mirrored variants."""
    folder = tmp_path / "portraits"
    astronaut = default_sources()[0][1]
    write_image(folder / "Ms Collins.png", astronaut)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"")
    summary = generate_demo(
        tmp_path / "out",
        settings(n_subjects=2, poses=1, portraits_dir=str(folder), width=128, height=160),
    )
    assert summary.sources == ["Ms-Collins"]
    assert summary.skipped_portraits == [(str(folder / "broken.jpg"), "zero bytes")]
    first, second = summary.subjects
    assert (first.name, second.name) == ("s00-Ms-Collins", "s01-Ms-Collins-v1")
    assert (first.mirror, second.mirror) == (False, True)
    assert second.skin_gain != (1.0, 1.0, 1.0) and second.hair_gain is not None
    sheet = read_image(tmp_path / "out" / "contact_sheet.png")
    # 2 pairs x (flash, studio) in 2 columns of 144 px thumbnails (3:4 -> 180 px high), 4 px gaps.
    assert sheet.shape == (2 * (180 + 4) + 4, 2 * (144 + 4) + 4, 3)


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path):
    """A non-empty folder that is not a demo is never replaced."""
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_demo(tmp_path, settings(n_subjects=1, poses=1, width=128, height=160))
    with pytest.raises(FileExistsError, match="not a demo folder"):
        generate_demo(
            tmp_path, settings(n_subjects=1, poses=1, width=128, height=160), overwrite=True
        )
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_demo_defaults_are_the_params_group():
    """`deepflash demo` without options renders what params.yaml's defaults would."""
    options = {p.name: p.default for p in cli.commands["demo"].params if p.name != "out_dir"}
    options.pop("force")
    assert options == {name: getattr(DemoParams(), name) for name in options}


def test_cli_demo(tmp_path: Path):
    """`deepflash demo OUT --subjects N` writes N subjects x poses pairs and truth.csv."""
    out = tmp_path / "demo"
    args = [
        "demo",
        str(out),
        "--subjects",
        "2",
        "--poses",
        "1",
        "--width",
        "128",
        "--height",
        "160",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    truth = read_truth(out / "truth.csv")
    assert list(truth["subject"]) == ["s00-astronaut", "s01-grace-hopper"]
    assert (out / "s01-grace-hopper" / "p0_studio.jpg").is_file()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "not empty" in again.output
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
