"""Face detection (pipeline/faces/detect.py): tilted faces found once, no false faces.

The scenes are the shared portraits made harder the way real selfies are (tests/helpers/facescenes.py):
the face 10 to 20 % of a cluttered canvas's height, rotated, some with a hand over the chin or a
cheek. A handful of conditions run here; benchmarks/bench_faces.py --table runs the full grid
(every condition, each detector setting) and prints the detection-rate table.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers.facescenes import make_scene, matches

from pipeline.faces import detect
from pipeline.faces.detect import find_faces
from pipeline.faces.geometry import box_centre
from pipeline.faces.nms import same_face
from pipeline.io import read_image

PORTRAITS = ("celebahq_ref_male_012712.jpg", "celebahq_ref_female_030321.jpg")


@pytest.fixture(scope="module")
def portraits(request) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Two CelebA-HQ portraits (1024 px) with their upright HOG face boxes."""
    from conftest import shared_path

    found = []
    for name in PORTRAITS:
        image = read_image(shared_path("portraits", name))
        faces = find_faces(image, "hog", max_side=400)
        assert len(faces) == 1, name
        found.append((image, faces[0].box))
    return found


def _centre(face: detect.Face) -> tuple[float, float]:
    cx, cy = box_centre(face.box)
    return cx - 0.5, cy - 0.5  # edge -> pixel-centre coordinates (the scenes' convention)


@pytest.mark.parametrize(
    ("which", "roll", "fraction", "occluder"),
    [
        (0, 30.0, 0.12, "none"),
        (1, -30.0, 0.15, "cheek"),
        (0, -45.0, 0.2, "chin"),
        (1, 45.0, 0.1, "none"),
        (0, 60.0, 0.15, "none"),
    ],
    ids=["30-small", "-30-cheek", "-45-chin", "45-smallest", "60"],
)
def test_auto_finds_the_tilted_face_once_with_its_roll(portraits, which, roll, fraction, occluder):
    image, box = portraits[which]
    scene = make_scene(
        image, box, face_fraction=fraction, roll=roll, occluder=occluder, seed=int(roll) + 100
    )
    faces = find_faces(scene.image)
    assert len(faces) == 1, faces
    (face,) = faces
    assert matches(_centre(face), face.box[2] - face.box[0], scene)
    # The eye line's tilt: within a few degrees of the truth, counter-clockwise positive.
    assert face.roll == pytest.approx(roll, abs=8.0)


def test_turned_copies_find_what_upright_hog_misses(portraits, monkeypatch):
    """60 degrees of roll: upright HOG finds nothing; the turned copies do, and the search
    stops at the first turn that finds a face."""
    image, box = portraits[0]
    scene = make_scene(image, box, face_fraction=0.15, roll=60.0, seed=160)
    assert find_faces(scene.image, "hog") == []
    turns = []
    original = detect._hog

    def spy(small, upsample, angle, *args):
        turns.append(angle)
        return original(small, upsample, angle, *args)

    monkeypatch.setattr(detect, "_hog", spy)
    (face,) = find_faces(scene.image)
    assert face.path == "hog_rotated"
    assert turns[0] == 0.0 and turns[-1] in detect.ROTATED_ANGLES and len(turns) <= 5
    assert matches(_centre(face), face.box[2] - face.box[0], scene)


def test_no_false_faces_on_noise_flat_and_non_portrait_images(shared_data, monkeypatch):
    """Every path runs on a face-less photo (upright, four turns, the CNN) and finds nothing."""
    rng = np.random.default_rng(0)
    images = {
        "noise": rng.random((240, 320, 3), dtype=np.float32),
        "flat": np.full((240, 320, 3), 0.5, np.float32),
        "blurred noise": cv2.GaussianBlur(rng.random((300, 300, 3), dtype=np.float32), (0, 0), 4),
    }
    itk = sorted((shared_data / "registration_itk").glob("*.png"))
    for path in itk[:: max(1, len(itk) // 4)]:  # MRI slices: head-shaped, but not faces
        images[path.name] = read_image(path)
    cnn_calls = []
    original = detect._cnn
    monkeypatch.setattr(detect, "_cnn", lambda *a: cnn_calls.append(1) or original(*a))
    for name, image in images.items():
        assert find_faces(image) == [], name
    assert len(cnn_calls) == len(images)  # the last resort did run, and found nothing


def test_upright_roll_and_sign_convention(shared_data):
    """An upright portrait has a roll near 0; turned counter-clockwise on screen by 25 degrees
    (cv2.getRotationMatrix2D), its face reports about +25."""
    image = read_image(shared_data / "portraits" / "celebahq_ref_female_030321.jpg")
    small = cv2.resize(image, (400, 400), interpolation=cv2.INTER_AREA)
    (upright,) = find_faces(small, "hog")
    assert upright.path == "hog" and abs(upright.roll) < 4.0
    turn = cv2.getRotationMatrix2D((199.5, 199.5), 25.0, 1.0)
    turned = cv2.warpAffine(small, turn, (400, 400), borderMode=cv2.BORDER_REFLECT)
    (face,) = find_faces(turned)
    assert face.roll == pytest.approx(25.0 + upright.roll, abs=4.0)


def test_detection_boxes_are_in_input_coordinates(shared_data):
    # The photo blown up 2x (each pixel a 2x2 block): with max_side 745 the detector sees the
    # very same 745x465 copy both times (the area-average undoes the blow-up exactly), so the
    # boxes must come back exactly 2x in the big photo's pixels.
    image = read_image(shared_data / "portraits" / "deepface_img27.jpg")  # 745x465
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    small_faces = find_faces(image, max_side=745)
    big_faces = find_faces(big, max_side=745)
    assert len(small_faces) == len(big_faces) == 1
    assert big_faces[0].box == tuple(2 * v for v in small_faces[0].box)


@pytest.mark.parametrize(
    ("name", "min_faces"),
    [("deepface_couple.jpg", 2), ("deepface_selfie-many-people.jpg", 3),
     ("facenet_data_multiface.jpg", 5)],
)  # fmt: skip
def test_group_photos_keep_every_face_and_no_duplicates(shared_data, name, min_faces):
    faces = find_faces(read_image(shared_data / "portraits" / name))
    assert len(faces) >= min_faces
    for i, a in enumerate(faces):
        for b in faces[i + 1 :]:
            assert not same_face(a.box, b.box), (a, b)


def test_cnn_detector_finds_a_face_with_a_hog_sized_box(shared_data):
    image = read_image(shared_data / "portraits" / "celebahq_ref_male_012712.jpg")
    (cnn,) = find_faces(image, "cnn", cnn_max_side=300)
    (hog,) = find_faces(image, "hog", max_side=400)
    assert cnn.path == "cnn" and abs(cnn.roll) < 6.0
    # Moved by CNN_BOX_OFFSET, the CNN's box is about the HOG box the crop margin expects.
    ratio = (cnn.box[2] - cnn.box[0]) / (hog.box[2] - hog.box[0])
    assert 0.8 < ratio < 1.25
    assert np.hypot(*np.subtract(box_centre(cnn.box), box_centre(hog.box))) < 0.15 * (
        hog.box[2] - hog.box[0]
    )


def test_bad_arguments_are_refused():
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="unknown face detector"):
        find_faces(image, "haar")
    with pytest.raises(ValueError, match="max_side"):
        find_faces(image, max_side=0)
    assert find_faces(np.zeros((0, 10, 3), np.float32)) == []
    assert Path(detect.__file__).name == "detect.py"


def test_saved_hog_detector_finds_what_dlibs_own_finds(portraits, tmp_path, monkeypatch):
    """The HOG detector read back from its saved copy (the cold-start cache, written on first
    use) finds the same faces, boxes, rolls and scores, as dlib's built-in one; a photo that
    HOG finds a face on never loads the CNN."""
    import dlib

    image, _ = portraits[0]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = detect._hog_detector
    cached.cache_clear()
    detect._cnn_detector.cache_clear()
    try:
        first = find_faces(image)  # builds dlib's detector and saves it
        (saved,) = (tmp_path / "deepflash").glob("frontal_face_detector-*.svm")
        cached.cache_clear()
        again = find_faces(image)  # reads the saved copy
        assert detect._cnn_detector.cache_info().currsize == 0
        monkeypatch.setattr(detect, "_hog_detector", dlib.get_frontal_face_detector)
        builtin = find_faces(image)
    finally:
        cached.cache_clear()  # the next test loads from the usual cache
    assert saved.stat().st_size > 0
    assert len(builtin) == 1 and builtin[0].path == "hog"
    assert first == again == builtin
