"""Face detection, square crop and the composed (registration o crop o resize) warp."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps
from skimage import data as skdata
from stagetools import file_hashes, run_stage

from pipeline.faces.detect import (
    IDENTITY,
    INDEX_COLUMNS,
    NoFaceError,
    box_area,
    center_crop_box,
    compose,
    crop_dataset,
    crop_faces,
    crop_matrix,
    crop_pair,
    crop_pair_files,
    detect_faces,
    face_box_in_crop,
    nominal_face_box,
    registration_matrix,
    resample,
    square_crop_box,
)
from pipeline.io import ImageReadError, read_image, write_image

# Every single-person portrait of ../shared/data/portraits gets exactly one face (the files
# below hold several people: couples, groups, before/after collages; one file is empty).
GROUP_PHOTOS = {
    "deepface_couple.jpg",
    "deepface_selfie-many-people.jpg",
    "facenet_data_multiface.jpg",
    "gfpgan_whole_imgs_00.jpg",
    "gfpgan_whole_imgs_10045.png",
    "gfpgan_whole_imgs_Blake_Lively.jpg",
}
EMPTY_FILE = "facenet_data_test_images_bradley_cooper_1.jpg"
# Cropped to 512x512 through the whole path (full-resolution read, default 800 px detection):
# the 12.6 MP deepface_img49 (4352x2903), small faces in wide shots (img57: 90 px face in
# 2048 px; img27, img37), a tall portrait (kate_siegel), a tight crop whose square leaves the
# photo (gfpgan Adele), a small 450 px image (aflw) and a 330 px one (img5).
PRESS_PORTRAITS = [
    "deepface_img49.jpg",
    "deepface_img57.jpg",
    "deepface_img27.jpg",
    "deepface_img37.jpg",
    "facenet_data_test_images_kate_siegel_1.jpg",
    "gfpgan_cropped_faces_Adele_crop.png",
    "facealignment_aflw-test.jpg",
    "deepface_img5.jpg",
]


def _reduced(path: Path, side: int) -> np.ndarray:
    """Upright float RGB; a JPEG is decoded at 1/2, 1/4 or 1/8 scale (never below ``side``).

    Only for the tests' speed: detection runs on a copy of at most ``side`` px anyway.
    """
    with Image.open(path) as pil:
        pil.draft("RGB", (side, side))
        return np.asarray(ImageOps.exif_transpose(pil).convert("RGB"), np.float32) / 255


def _astronaut(side: int = 512) -> np.ndarray:
    image = skdata.astronaut().astype(np.float32) / 255.0
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def _centroid(channel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(channel > 1e-4)
    weights = channel[ys, xs]
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


def _box_centre(box) -> tuple[float, float]:
    top, right, bottom, left = box
    return (left + right) / 2.0, (top + bottom) / 2.0


# --------------------------------------------------------------------------- geometry


def test_square_crop_box_known_answers():
    # 200 px box, margin 0.4 on each side -> 360 px square on the same centre (200, 200).
    assert square_crop_box((100, 300, 300, 100), 0.4) == (20, 20, 360)
    # Non-square box: the longer side (200, vertical) sets the square.
    assert square_crop_box((100, 260, 300, 140), 0.4) == (20, 20, 360)
    assert square_crop_box((10, 60, 60, 10), 0.0) == (10, 10, 50)
    assert center_crop_box(168, 192) == (0, 12, 168)
    assert center_crop_box(400, 300) == (50, 0, 300)
    # Photo box -> crop box: the 360 px square becomes 128 px, edges scale by 128/360.
    assert face_box_in_crop((100, 300, 300, 100), (20, 20, 360), 128) == (28, 100, 100, 28)
    # The no-face box is what square_crop_box would have grown into the whole crop.
    assert nominal_face_box(128, 0.4) == (28, 100, 100, 28)
    with pytest.raises(ValueError, match="empty face box"):
        square_crop_box((10, 10, 20, 10), 0.4)


@pytest.mark.parametrize(
    ("crop", "size"),
    [((150, 50, 200), 100), ((120, 40, 250), 100), ((100, 20, 330), 100), ((180, 80, 50), 100)],
    ids=["shrink-2x", "shrink-2.5x", "shrink-3.3x", "enlarge-2x"],
)
def test_crop_moves_a_marker_to_the_predicted_pixel(crop, size):
    # A smooth marker (Gaussian blob, sigma 6 px) centred at flash pixel (203.0, 101.5): its
    # centroid is not biased by the sampling grid, so it pins the geometry to 0.02 px.
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    blob = np.exp(-((xx - 203.0) ** 2 + (yy - 101.5) ** 2) / (2 * 6.0**2))
    image = np.repeat(blob[..., None], 3, axis=2)
    out = resample(image, crop_matrix(crop, size), size)
    x0, y0, side = crop
    s = side / size
    cx, cy = _centroid(out[..., 0])
    assert cx == pytest.approx((203.0 - x0 + 0.5) / s - 0.5, abs=0.02)
    assert cy == pytest.approx((101.5 - y0 + 0.5) / s - 0.5, abs=0.02)
    # Mass is kept: an output pixel is s^2 flash pixels.
    assert out[..., 0].sum() == pytest.approx(blob.sum() / s**2, rel=0.01)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize(
    "crop",
    [(-4, -3, 18), (-25, -20, 60), (-40, -30, 18)],
    ids=["over-the-edge", "larger-than-photo", "off-the-photo"],
)
def test_padding_outside_the_photo_follows_numpy_pad(mode, crop):
    rng = np.random.default_rng(0)
    image = rng.random((10, 12, 3), dtype=np.float32)
    # Scale 1 and whole-pixel offsets: every sample is an exact pixel, so the result must
    # equal numpy.pad's (same mode names and meaning), however far the square reaches.
    x0, y0, side = crop
    out = resample(image, crop_matrix(crop, side), side, pad_mode=mode)
    big = 100
    padded = np.pad(image, ((big, big), (big, big), (0, 0)), mode=mode)
    expected = padded[y0 + big : y0 + big + side, x0 + big : x0 + big + side]
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("side", "period"),
    [(704, 2.0), (704, 2.5), (704, 3.3), (1440, 2.0), (1440, 3.3), (1440, 6.0)],
)
def test_downscaling_is_anti_aliased(side, period):
    # Vertical cosine gratings at 2.7x to 9x the frequency the output can hold (its Nyquist
    # period is 2 * side / 160: 8.8 or 18 source px) must come out an even grey (their mean);
    # sampling the same grid without the filter gives bands of moire. (Just above Nyquist
    # the soft Gaussian lets some through, as any filter that keeps the image sharp does.)
    x = np.arange(1600, dtype=np.float32)
    grating = np.broadcast_to(
        (0.5 + 0.5 * np.cos(2 * np.pi * x / period))[None, :, None], (1600, 1600, 3)
    )
    matrix = crop_matrix((60, 60, side), 160)
    out = resample(grating, matrix, 160)
    assert out.mean() == pytest.approx(0.5, abs=0.01)
    assert out.std() < 0.01
    naive = cv2.warpAffine(
        np.ascontiguousarray(grating),
        matrix,
        (160, 160),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    assert naive.std() > 0.1


def test_identical_images_give_identical_crops():
    image = _astronaut()
    flash, studio = crop_pair(image, image.copy(), IDENTITY, (100, 40, 300), 128)
    assert flash.shape == studio.shape == (128, 128, 3)
    assert flash.dtype == np.float32
    assert np.array_equal(flash, studio)


def test_composed_warp_undoes_a_known_registration():
    """Studio = flash warped by M; cropping the studio with M must give the flash crop."""
    flash = _astronaut(1024)
    # M maps a flash pixel to the matching studio pixel: rotation 3 deg, scale 1.05, shift.
    matrix = cv2.getRotationMatrix2D((500.0, 480.0), 3.0, 1.05)
    matrix[:, 2] += (12.0, -7.0)
    studio = cv2.warpAffine(flash, matrix, (1024, 1024), flags=cv2.INTER_CUBIC)
    crop = (150, 120, 600)
    flash_crop, studio_crop = crop_pair(flash, studio, matrix, crop, 256)
    diff = np.abs(flash_crop - studio_crop)
    # Left: the synthetic warp's own interpolation and the anti-alias filter acting on
    # slightly different grids: 0.0008 on average, 0.007 at the 99th percentile (measured).
    assert diff.mean() < 0.002
    assert np.percentile(diff, 99) < 0.02
    # Without the registration the same crop is far off: the test can tell.
    _, unregistered = crop_pair(flash, studio, IDENTITY, crop, 256)
    assert np.abs(flash_crop - unregistered).mean() > 5 * diff.mean()


def test_composed_warp_is_one_affine_map():
    # compose(outer, inner) applies inner first.
    inner = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -1.0]])
    outer = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 3.0]])
    point = np.array([3.0, 4.0, 1.0])
    expected = outer @ np.append(inner @ point, 1.0)
    np.testing.assert_allclose(compose(outer, inner) @ point, expected)


def test_uint8_input_matches_float_input():
    image = _astronaut()
    as_uint8 = np.rint(image * 255).astype(np.uint8)
    a = resample(as_uint8, crop_matrix((50, 60, 300), 128), 128)
    b = resample(as_uint8.astype(np.float32) / 255, crop_matrix((50, 60, 300), 128), 128)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_matrices_are_refused():
    image = _astronaut(64)
    with pytest.raises(ValueError, match="2x3"):
        resample(image, np.eye(3), 32)
    with pytest.raises(ValueError, match="degenerate"):
        resample(image, np.zeros((2, 3)), 32)
    with pytest.raises(ValueError, match="pad mode"):
        resample(image, IDENTITY, 32, pad_mode="wrap")


# --------------------------------------------------------------------------- detection


def test_no_face_falls_back_to_the_centre_or_rejects():
    blank = np.full((240, 320, 3), 0.5, np.float32)
    assert detect_faces(blank) == []
    result = crop_faces(blank, blank, IDENTITY, size=64, on_missing="center")
    assert result.method == "center"
    assert result.crop == (40, 0, 240)
    assert result.face_box == nominal_face_box(64, 0.4)
    assert result.faces == []
    with pytest.raises(NoFaceError, match="no face found"):
        crop_faces(blank, blank, IDENTITY, size=64, on_missing="reject")


def test_the_largest_of_two_faces_is_chosen(shared_data):
    """Two known faces pasted into one canvas at 160 px and 360 px: the big one wins."""
    face = read_image(shared_data / "portraits" / "celebahq_ref_female_015248.jpg")
    canvas = np.full((600, 900, 3), 0.4, np.float32)
    canvas[40:200, 60:220] = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    canvas[200:560, 480:840] = cv2.resize(face, (360, 360), interpolation=cv2.INTER_AREA)
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert box_area(faces[0]) > 3 * box_area(faces[1])
    cx, cy = _box_centre(faces[0])
    assert 480 < cx < 840 and 200 < cy < 560
    result = crop_faces(canvas, canvas, IDENTITY, size=64)
    assert result.faces[0] == faces[0]
    assert result.crop == square_crop_box(faces[0], 0.4)


def test_every_single_person_portrait_gives_one_face_and_a_512_crop_holding_it(shared_data):
    """All 111 single-person portraits (40 CelebA-HQ, 71 press and cropped photos): exactly one
    face, a 512x512 crop with the face box inside it, centred (detection on a 400 px copy)."""
    paths = [
        path
        for path in sorted((shared_data / "portraits").iterdir())
        if path.name not in GROUP_PHOTOS | {EMPTY_FILE}
    ]
    assert len(paths) == 111
    for path in paths:
        image = _reduced(path, 400)
        result = crop_faces(image, image, IDENTITY, size=512, max_side=400)
        assert result.method == "detected" and len(result.faces) == 1, (path.name, result.faces)
        assert result.flash.shape == (512, 512, 3)
        top, right, bottom, left = result.face_box
        assert 0 <= left < right <= 512 and 0 <= top < bottom <= 512, path.name
        k = 512 / result.crop[2]  # crop px per photo px: the box is placed in whole photo px
        assert _box_centre(result.face_box) == pytest.approx((256, 256), abs=k / 2 + 0.5)
        if path.name.startswith("celebahq_"):
            # Aligned CelebA-HQ: the face near the middle, a fair part of the frame.
            height, width = image.shape[:2]
            cx, cy = _box_centre(result.faces[0])
            face_width = (result.faces[0][1] - result.faces[0][3]) / width
            assert abs(cx / width - 0.5) < 0.1 and abs(cy / height - 0.5) < 0.15, path.name
            assert 0.24 < face_width < 0.68, path.name


@pytest.mark.parametrize("name", PRESS_PORTRAITS)
def test_single_portrait_crop_holds_the_face(shared_data, name):
    image = read_image(shared_data / "portraits" / name)
    size = 512
    result = crop_faces(image, image, IDENTITY, size=size)
    assert result.method == "detected"
    assert len(result.faces) == 1
    assert result.flash.shape == (size, size, 3)
    top, right, bottom, left = result.face_box
    # The face box sits whole inside the crop, centred, 1/1.8 of its side; up to rounding:
    # the square is placed in whole photo pixels (k crop px each), its box rounded again.
    k = size / result.crop[2]
    assert 0 <= left < right <= size and 0 <= top < bottom <= size
    assert _box_centre(result.face_box) == pytest.approx((size / 2, size / 2), abs=k / 2 + 0.5)
    assert max(right - left, bottom - top) == pytest.approx(size / 1.8, abs=k + 1)
    # And the detector finds the face again in the 512 px crop, where the box says.
    again = detect_faces(result.flash, max_side=256)
    assert len(again) >= 1
    assert np.hypot(*np.subtract(_box_centre(again[0]), _box_centre(result.face_box))) < 48


@pytest.mark.parametrize(
    ("name", "min_faces", "region"),
    [
        # (x range, y range) of the hand-checked largest face, as fractions of the photo.
        ("deepface_couple.jpg", 2, ((0.15, 0.45), (0.45, 0.8))),  # her, left, 635 px box
        ("deepface_selfie-many-people.jpg", 3, ((0.55, 0.8), (0.2, 0.5))),  # centre right
        ("facenet_data_multiface.jpg", 5, ((0.0, 1.0), (0.0, 1.0))),  # near-equal faces
    ],
)
def test_group_photo_crops_the_largest_face(shared_data, name, min_faces, region):
    image = read_image(shared_data / "portraits" / name)
    height, width = image.shape[:2]
    result = crop_faces(image, image, IDENTITY, size=64)
    assert len(result.faces) >= min_faces
    areas = [box_area(box) for box in result.faces]
    assert areas == sorted(areas, reverse=True)
    assert result.crop == square_crop_box(result.faces[0], 0.4)
    cx, cy = _box_centre(result.faces[0])
    (x_lo, x_hi), (y_lo, y_hi) = region
    assert x_lo * width < cx < x_hi * width and y_lo * height < cy < y_hi * height


def test_detection_boxes_are_in_input_coordinates(shared_data):
    # The photo blown up 2x (each pixel a 2x2 block): with max_side 745 the detector sees the
    # very same 745x465 copy both times (the area-average undoes the blow-up exactly), so the
    # boxes must come back exactly 2x in the big photo's pixels.
    image = read_image(shared_data / "portraits" / "deepface_img27.jpg")  # 745x465
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    small_faces = detect_faces(image, max_side=745)
    big_faces = detect_faces(big, max_side=745)
    assert len(small_faces) == len(big_faces) == 1
    assert big_faces[0] == tuple(2 * v for v in small_faces[0])


def test_cnn_detector_finds_a_face(shared_data):
    image = read_image(shared_data / "portraits" / "celebahq_ref_male_012712.jpg")
    faces = detect_faces(image, detector="cnn", max_side=200, upsample=0)
    assert len(faces) == 1
    assert abs(_box_centre(faces[0])[0] - 512) < 100


def test_zero_byte_image_is_refused_cleanly(shared_data, tmp_path):
    empty = shared_data / "portraits" / "facenet_data_test_images_bradley_cooper_1.jpg"
    assert empty.stat().st_size == 0
    with pytest.raises(ImageReadError) as info:
        crop_pair_files("p", empty, empty, IDENTITY, tmp_path, size=64)
    assert info.value.reason == "zero bytes"
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- the stage


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
    assert INDEX_COLUMNS[5:] == ("face_top", "face_right", "face_bottom", "face_left")
    assert index["s1__a"]["split"] == "train" and index["s2__b"]["subject"] == "s2"
    # The registered studio crop matches the flash crop (the stage used the matrix).
    a_flash = read_image(root / index["s1__a"]["flash"])
    a_studio = read_image(root / index["s1__a"]["studio"])
    assert a_flash.shape == (64, 64, 3)
    assert np.abs(a_flash - a_studio).mean() < 0.01
    record = json.loads((faces / "s1__a.json").read_text())
    assert record["method"] == "detected" and len(record["faces"]) == 1
    assert record["crop"] == list(square_crop_box(tuple(record["faces"][0]), 0.4))
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
        "fallback": 1,
        "rejected": 3,
        "multiple_faces": 0,
    }
    # A rerun, in this process and without worker processes, writes the very same bytes.
    manifest = pd.read_csv(root / "data/interim/manifest.csv", dtype=str)
    monkeypatch.chdir(root)
    again = crop_dataset(
        manifest, "data/interim/registered", tmp_path / "again", size=64, workers=1
    )
    assert again.metrics == metrics
    written = {name: digest for name, digest in file_hashes(faces).items() if name.startswith("s")}
    assert file_hashes(tmp_path / "again") == written and len(written) == 2 * 3
