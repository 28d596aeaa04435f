"""The face crop of a pair (pipeline/faces/crop.py): one warp per image, no invented pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.facescenes import make_scene
from PIL import Image, ImageOps
from skimage import data as skdata

from pipeline.faces.crop import NoFaceError, crop_faces, crop_pair, crop_pair_files
from pipeline.faces.detect import find_faces
from pipeline.faces.geometry import (
    IDENTITY,
    box_area,
    box_centre,
    crop_matrix,
    nominal_face_box,
    place_crop,
    square_crop_box,
)
from pipeline.faces.resample import resample
from pipeline.io import ImageReadError, read_image

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


def _assert_no_invented_pixels(result, photo: np.ndarray, size: int) -> None:
    """Padded pixels are masked and exactly 0; every valid pixel is the photo's own content
    (what the edge-padded resample gives there, which never reaches past the photo)."""
    assert result.valid.dtype == bool and result.valid.shape == (size, size)
    assert np.all(result.flash[~result.valid] == 0.0)
    assert np.all(result.studio[~result.valid] == 0.0)
    own = resample(photo, crop_matrix(result.crop, size, result.angle), size, "edge")
    np.testing.assert_array_equal(result.flash[result.valid], own[result.valid])


# --------------------------------------------------------------------------- the pair


def test_identical_images_give_identical_crops():
    image = _astronaut()
    flash, studio, valid = crop_pair(image, image.copy(), IDENTITY, (100, 40, 300), 128)
    assert flash.shape == studio.shape == (128, 128, 3)
    assert flash.dtype == np.float32 and valid.all()
    assert np.array_equal(flash, studio)


def test_composed_warp_undoes_a_known_registration():
    """Studio = flash warped by M; cropping the studio with M must give the flash crop."""
    flash = _astronaut(1024)
    # M maps a flash pixel to the matching studio pixel: rotation 3 deg, scale 1.05, shift.
    matrix = cv2.getRotationMatrix2D((500.0, 480.0), 3.0, 1.05)
    matrix[:, 2] += (12.0, -7.0)
    studio = cv2.warpAffine(flash, matrix, (1024, 1024), flags=cv2.INTER_CUBIC)
    crop = (150, 120, 600)
    flash_crop, studio_crop, valid = crop_pair(flash, studio, matrix, crop, 256)
    assert valid.all()
    diff = np.abs(flash_crop - studio_crop)
    # Left: the synthetic warp's own interpolation and the anti-alias filter acting on
    # slightly different grids: 0.0008 on average, 0.007 at the 99th percentile (measured).
    assert diff.mean() < 0.002
    assert np.percentile(diff, 99) < 0.02
    # Without the registration the same crop is far off: the test can tell.
    unregistered = crop_pair(flash, studio, IDENTITY, crop, 256)[1]
    assert np.abs(flash_crop - unregistered).mean() > 5 * diff.mean()


def test_studio_leaving_its_photo_is_masked_for_both_images():
    """A registration that moves the studio by 30 px: where the studio crop leaves the studio
    photo the pair is invalid, and both images are 0 there, though the flash has pixels."""
    flash = _astronaut(256)
    shift = np.array([[1.0, 0.0, 30.0], [0.0, 1.0, 0.0]])
    flash_crop, studio_crop, valid = crop_pair(flash, flash, shift, (0, 0, 256), 256)
    assert valid[:, :225].all() and not valid[:, 227:].any()
    assert np.all(flash_crop[:, 227:] == 0.0) and np.all(studio_crop[:, 227:] == 0.0)


# --------------------------------------------------------------------------- no invented pixels


def test_yaleb_crops_contain_no_mirrored_content(shared_data):
    """Extended Yale B: the face fills the 168x192 photo. The crop shifts and shrinks the
    square first; what padding remains is masked and constant (before: reflect padding
    showed a mosaic of four half-faces around the real one)."""
    folders = sorted((shared_data / "yaleb" / "CroppedYale").iterdir())
    assert len(folders) == 19
    padded = 0
    for folder in folders:
        path = folder / f"{folder.name}_P00A+000E+00.pgm"
        photo = read_image(path)
        result = crop_faces(photo, photo, IDENTITY, size=64)
        _assert_no_invented_pixels(result, photo, 64)
        assert result.valid.mean() > 0.8, path.name  # shrunk first: little padding left
        padded += not result.valid.all()
    assert padded > 0  # some crops needed padding: the check above was exercised


def test_demo_portrait_cropped_tight_contains_no_mirrored_content():
    """The demo's default portrait (scikit-image's astronaut) cut tight through the face: the
    square cannot fit, so it is shifted and shrunk and the rest masked; the reflect mode that
    used to be the default would have mirrored the face into that area."""
    photo = skdata.astronaut().astype(np.float32) / 255.0
    top, right, bottom, left = find_faces(photo, "hog")[0].box  # the astronaut, 90 px
    tight = np.ascontiguousarray(photo[top + 25 : bottom + 5, left - 30 : right + 30])
    result = crop_faces(tight, tight, IDENTITY, size=64)
    assert result.method == "detected"
    assert not result.valid.all() and result.valid.mean() > 0.6
    _assert_no_invented_pixels(result, tight, 64)
    mirrored = crop_pair(tight, tight, IDENTITY, result.crop, 64, "reflect")[0]
    assert np.abs(mirrored[~result.valid]).mean() > 0.1  # what reflect would have shown


def test_tilted_face_is_cropped_upright(shared_data):
    """A face rolled 40 degrees (beyond the augmentation's +-20): the crop turns with it, and
    in the crop the face is upright and centred."""
    portrait = read_image(shared_data / "portraits" / "celebahq_ref_female_030321.jpg")
    (face,) = find_faces(portrait, "hog", max_side=400)
    scene = make_scene(portrait, face.box, face_fraction=0.2, roll=40.0, seed=4)
    result = crop_faces(scene.image, scene.image, IDENTITY, size=128)
    assert result.angle == pytest.approx(40.0, abs=6.0)
    again = find_faces(result.flash, "hog")
    assert len(again) == 1 and abs(again[0].roll) < 8.0
    assert np.hypot(*np.subtract(box_centre(again[0].box), (64, 64))) < 12
    # Within the augmentation's range the crop stays upright, as before.
    kept = crop_faces(scene.image, scene.image, IDENTITY, size=128, upright_range=(-45, 45))
    assert kept.angle == 0.0


# --------------------------------------------------------------------------- real portraits


def test_no_face_falls_back_to_the_centre_or_rejects():
    blank = np.full((240, 320, 3), 0.5, np.float32)
    result = crop_faces(blank, blank, IDENTITY, size=64, detector="hog", on_missing="center")
    assert result.method == "center" and result.angle == 0.0
    assert result.crop == (40, 0, 240) and result.valid.all()
    assert result.face_box == nominal_face_box(64, 0.4)
    assert result.faces == []
    with pytest.raises(NoFaceError, match="no face found"):
        crop_faces(blank, blank, IDENTITY, size=64, detector="hog", on_missing="reject")


def test_the_largest_of_two_faces_is_chosen(shared_data):
    """Two known faces pasted into one canvas at 160 px and 360 px: the big one wins."""
    face = read_image(shared_data / "portraits" / "celebahq_ref_female_015248.jpg")
    canvas = np.full((600, 900, 3), 0.4, np.float32)
    canvas[40:200, 60:220] = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    canvas[200:560, 480:840] = cv2.resize(face, (360, 360), interpolation=cv2.INTER_AREA)
    result = crop_faces(canvas, canvas, IDENTITY, size=64)
    assert len(result.faces) == 2
    big, small = (f.box for f in result.faces)
    assert box_area(big) > 3 * box_area(small)
    cx, cy = box_centre(big)
    assert 480 < cx < 840 and 200 < cy < 560
    assert result.crop == place_crop(big, 900, 600, 0.4)


def test_every_single_person_portrait_gives_one_face_and_a_512_crop_holding_it(shared_data):
    """All 111 single-person portraits (40 CelebA-HQ, 71 press and cropped photos): exactly one
    face, a 512x512 crop with the face box inside it (detection on a 400 px copy)."""
    paths = [
        path
        for path in sorted((shared_data / "portraits").iterdir())
        if path.name not in GROUP_PHOTOS | {EMPTY_FILE}
    ]
    assert len(paths) == 111
    for path in paths:
        image = _reduced(path, 400)
        result = crop_faces(image, image, IDENTITY, size=512, detect_max_side=400)
        assert result.method == "detected" and len(result.faces) == 1, (path.name, result.faces)
        assert result.flash.shape == (512, 512, 3)
        top, right, bottom, left = result.face_box
        assert -1 <= left < right <= 513 and -1 <= top < bottom <= 513, path.name
        if path.name.startswith("celebahq_"):
            # Aligned CelebA-HQ: the face near the middle, a fair part of the frame.
            height, width = image.shape[:2]
            cx, cy = box_centre(result.faces[0].box)
            face_width = (result.faces[0].box[1] - result.faces[0].box[3]) / width
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
    # The face box sits whole inside the crop (up to rounding: the square is placed in whole
    # photo pixels, k crop px each); centred unless the square had to move into the photo.
    k = size / result.crop[2]
    assert -k <= left < right <= size + k and -k <= top < bottom <= size + k
    if result.crop == square_crop_box(result.faces[0].box, 0.4):
        assert box_centre(result.face_box) == pytest.approx((size / 2, size / 2), abs=k / 2 + 0.5)
    # And the detector finds the face again in the 512 px crop, where the box says.
    again = find_faces(result.flash, "hog", max_side=256)
    assert len(again) >= 1
    assert np.hypot(*np.subtract(box_centre(again[0].box), box_centre(result.face_box))) < 48


def test_zero_byte_image_is_refused_cleanly(shared_data, tmp_path):
    empty = shared_data / "portraits" / EMPTY_FILE
    assert empty.stat().st_size == 0
    with pytest.raises(ImageReadError) as info:
        crop_pair_files("p", empty, empty, IDENTITY, tmp_path, size=64)
    assert info.value.reason == "zero bytes"
    assert not any(tmp_path.iterdir())
