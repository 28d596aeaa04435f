"""`deepflash enhance`: full-resolution relighting of every face, seamless blending, metadata.

The real-photo tests use a tiny DeepFlash model (width 0.0625, 64 px, encoding C) trained in
this module for one epoch on demo pairs by :func:`pipeline.training.loop.train`; the geometry and
blending tests use models whose output is known (a constant), so their answers are exact.
"""

from __future__ import annotations

import csv
import inspect
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from pipeline.cli import main
from pipeline.config import DemoParams, validate_params
from pipeline.datasets.demo import generate_demo
from pipeline.enhance.apply import (
    DEFAULT_FEATHER,
    STAGES,
    EnhanceError,
    EnhanceOptions,
    enhance_file,
    enhance_image,
    enhance_paths,
    face_crops,
    load_enhancer,
    run_model,
)
from pipeline.enhance.blend import face_mask
from pipeline.faces.crop import crop_faces
from pipeline.faces.detect import Face as Detection
from pipeline.faces.detect import detect_faces
from pipeline.faces.geometry import IDENTITY, crop_matrix, square_crop_box
from pipeline.io import read_alpha, read_image, write_image
from pipeline.models import ModelMeta
from pipeline.models.integrity import seal
from pipeline.training.loop import TrainPaths, train

FLASH_PHOTOS = [
    "faid_people014_flash.png",
    "faid_people150_flash.png",
    "redeye_man_flash.jpg",
    "redeye_woman_flash.jpg",
]
META_C = {
    "arch": "constant",
    "width": 1.0,
    "encoding": "C",
    "size": 64,
    "bilateral": {"sigma_s_fraction": 0.03, "sigma_r": 0.4, "mode": "per_channel"},
    "centred": True,
}


class ConstantModel(torch.nn.Module):
    """y = c everywhere: eq. 2 then changes every pixel by exactly 1 - 2c (encodings B, C)."""

    size_multiple = 1

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The constant, in the input's shape."""
        return torch.zeros_like(x) + self.value


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeepFlash model (width 0.0625, 64 px, encoding C) trained 1 epoch on demo pairs."""
    root = tmp_path_factory.mktemp("tiny_model")
    demo = generate_demo(
        root / "raw", DemoParams(n_subjects=3, poses=1, width=192, height=256, seed=0)
    )
    rows = []
    for pair in demo.pairs:
        cropped = crop_faces(read_image(pair.flash), read_image(pair.studio), IDENTITY, size=64)
        pair_id = f"{pair.subject}__{pair.pose}"
        flash = write_image(root / "processed" / f"{pair_id}_flash.png", cropped.flash)
        studio = write_image(root / "processed" / f"{pair_id}_studio.png", cropped.studio)
        split = "val" if pair.subject == demo.pairs[-1].subject else "train"
        rows.append(
            {"split": split, "pair_id": pair_id, "subject": pair.subject, "variant": "r0",
             "flash": str(flash), "studio": str(studio)}
        )  # fmt: skip
    index = root / "processed" / "index.csv"
    with index.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    params = validate_params(
        {
            "data": {"size": 64},
            "model": {"arch": "deepflash", "width": 0.0625},
            "loss": {"encoding": "C"},
            "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "amp": "off", "seed": 0},
        }
    )
    paths = TrainPaths(
        index_csv=index,
        root=root,
        model_file=root / "model.pt",
        checkpoint_dir=root / "checkpoints",
        metrics_file=None,
        plots_file=None,
    )
    train(params, paths, progress=False)
    return root / "model.pt"


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> tuple[torch.nn.Module, dict, torch.device]:
    """The tiny trained model loaded for inference on the CPU."""
    return load_enhancer(tiny_model_path, "cpu")


def _far_from_faces(shape: tuple[int, ...], faces: list) -> np.ndarray:
    """True where no face's mask region reaches."""
    far = np.ones(shape[:2], bool)
    for face in faces:
        x0, y0, x1, y1 = face.region
        far[y0:y1, x0:x1] = False
    return far


def _union_mask(shape: tuple[int, ...], faces: list, feather: float) -> np.ndarray:
    """Sum of every face's blend mask over the whole photo."""
    weight = np.zeros(shape[:2], np.float32)
    for face in faces:
        weight += face_mask(shape[:2], face.crop, (0, 0), feather, face.angle, face.centre)
    return weight


def _edge_step(change: np.ndarray, weight: np.ndarray) -> float:
    """Largest |change| on a masked pixel that touches an unmasked one: the seam height."""
    inside = weight > 0
    outside = ~inside
    touches = np.zeros_like(inside)
    touches[1:] |= outside[:-1]
    touches[:-1] |= outside[1:]
    touches[:, 1:] |= outside[:, :-1]
    touches[:, :-1] |= outside[:, 1:]
    ring = inside & touches
    return float(np.abs(change[ring]).max()) if ring.any() else 0.0


# --------------------------------------------------------------------------- known models


def test_constant_model_changes_by_exactly_mask_times_one_minus_2c() -> None:
    """Encoding B with y = 0.4: out - x = 0.2 * mask at full resolution, 0 elsewhere, bit-exact."""
    rng = np.random.default_rng(1)
    image = (0.3 + 0.2 * rng.random((240, 320, 3))).astype(np.float32)  # never clips
    box = (80, 200, 160, 120)
    meta = {**META_C, "encoding": "B"}
    out, faces = enhance_image(image, ConstantModel(0.4), meta, boxes=[box], feather=0.3)
    (face,) = faces
    assert face.crop == square_crop_box(box, 0.4)
    weight = face_mask(image.shape[:2], face.crop, feather=0.3)
    np.testing.assert_allclose(
        out - image, np.repeat(0.2 * weight[..., None], 3, axis=2), atol=2e-6
    )
    untouched = weight == 0
    assert untouched.any()
    assert np.array_equal(out[untouched], image[untouched])
    assert out.dtype == np.float32 and out is not image


def test_uint8_photo_gives_the_float_photos_faces_and_result_in_8_bits() -> None:
    """enhance_image on a photo's uint8 pixels finds the faces of its float twin (x / 255) and
    returns exactly the float result as the writer quantises it; far pixels are untouched."""
    import skimage.data

    pixels = np.ascontiguousarray(skimage.data.astronaut())
    meta = {**META_C, "encoding": "B", "arch": "deepflash", "size": 64}
    as_float = pixels / np.float32(255)
    out_f, faces_f = enhance_image(as_float, ConstantModel(0.4), meta)
    out_u8, faces_u8 = enhance_image(pixels, ConstantModel(0.4), meta)
    assert faces_u8 == faces_f and len(faces_f) >= 1
    assert out_u8.dtype == np.uint8
    assert np.array_equal(out_u8, cv2.convertScaleAbs(out_f, alpha=255.0))
    far = _far_from_faces(pixels.shape, faces_u8)
    assert np.array_equal(out_u8[far], pixels[far]) and not np.array_equal(out_u8, pixels)


def test_encoding_a_resizes_the_output_up() -> None:
    """Encoding A: the network's image (here a constant 0.7) replaces the face, blended by the mask."""
    image = np.full((128, 160, 3), 0.25, np.float32)
    meta = {**META_C, "encoding": "A"}
    out, faces = enhance_image(image, ConstantModel(0.7), meta, boxes=[(40, 100, 90, 50)])
    weight = face_mask(image.shape[:2], faces[0].crop)
    np.testing.assert_allclose(
        out, np.repeat(0.25 + 0.45 * weight[..., None], 3, axis=2), atol=2e-6
    )


def test_overlapping_faces_blend_to_a_convex_combination() -> None:
    """Two overlapping masks with the same change never double it (weights normalised)."""
    image = np.full((200, 300, 3), 0.5, np.float32)
    boxes = [(60, 140, 140, 60), (60, 200, 140, 120)]
    out, faces = enhance_image(image, ConstantModel(0.35), {**META_C, "encoding": "B"}, boxes=boxes)
    change = out - image
    assert len(faces) == 2
    assert change.max() == pytest.approx(0.3, abs=1e-6)  # 1 - 2 * 0.35, not 0.6 where both overlap
    assert change.min() >= 0.0


class RampModel(torch.nn.Module):
    """y = 0.5 - 0.2 (u - c) / S along the crop's x axis u: with encoding B the change
    1 - 2y = 0.4 (u - c) / S grows along the crop's own x axis."""

    size_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ramp, in the input's shape."""
        size = x.shape[-1]
        u = torch.arange(size, dtype=x.dtype) - (size - 1) / 2.0
        return torch.zeros_like(x) + 0.5 - self.scale * u / size


def test_tilted_face_is_relit_upright_and_turned_back_in_one_warp() -> None:
    """A face rolled 35 degrees (beyond the +-20 the model was trained with) is cropped turned
    upright; the result goes back turned: the change's gradient in the photo runs along the
    face's own x axis, (cos 35, -sin 35), with the slope the crop's scale gives."""
    image = np.full((400, 400, 3), 0.5, np.float32)
    face = Detection((150, 250, 250, 150), 35.0, "hog_rotated", 1.0)
    meta = {**META_C, "encoding": "B", "size": 64}
    out, (found,) = enhance_image(image, RampModel(), meta, boxes=[face], feather=0.3)
    assert found.angle == 35.0 and found.roll == 35.0 and found.path == "hog_rotated"
    weight = face_mask(image.shape[:2], found.crop, (0, 0), 0.3, found.angle, found.centre)
    inner = weight == 1.0
    ys, xs = np.nonzero(inner)
    change = (out - image)[..., 0][inner]
    design = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    (a, b, _), *_ = np.linalg.lstsq(design, change.astype(np.float64), rcond=None)
    assert np.degrees(np.arctan2(-b, a)) == pytest.approx(35.0, abs=0.5)
    side = found.crop[2]
    assert np.hypot(a, b) == pytest.approx(0.4 / side, rel=0.02)  # per photo pixel
    # The upright crop the network saw: the crop matrix turned by the roll.
    crops, (placement,) = face_crops(image, [face], meta)
    np.testing.assert_allclose(
        crop_matrix(placement.crop, 64, 35.0) @ [31.5, 31.5, 1.0],
        [found.crop[0] + side / 2 - 0.5, found.crop[1] + side / 2 - 0.5],
    )
    # Far pixels: bit for bit.
    assert np.array_equal(out[weight == 0], image[weight == 0])


def test_no_face_returns_the_photo_unchanged() -> None:
    """A photo without a face comes back bit-identical, with no faces."""
    image = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (64, 1))[..., None].repeat(3, axis=2)
    out, faces = enhance_image(image, ConstantModel(0.3), META_C)
    assert faces == [] and np.array_equal(out, image)


# --------------------------------------------------------------------------- real flash photos


@pytest.mark.parametrize("name", FLASH_PHOTOS)
def test_real_flash_photo_size_far_pixels_and_seam(name: str, tiny, shared_data: Path) -> None:
    """Real flash photos: same size, far pixels bit-identical, no seam, fine detail kept."""
    model, meta, device = tiny
    image = read_image(shared_data / "flash_pairs" / name)
    # The relighting alone (the red-eye step's own tests: tests/test_enhance_redeye.py).
    out, faces = enhance_image(image, model, meta, device=device, redeye="off")
    assert out.shape == image.shape and out.dtype == np.float32
    assert len(faces) == 1  # one person per photo
    far = _far_from_faces(image.shape, faces)
    assert far.mean() > 0.05, "test needs pixels away from the face"
    assert np.array_equal(out[far], image[far])
    change = (out - image).mean(axis=2)
    weight = _union_mask(image.shape, faces, DEFAULT_FEATHER)
    assert np.abs(change[weight >= 1]).max() > 1e-3, "the face must change"
    assert np.array_equal(change[weight == 0], np.zeros(int((weight == 0).sum()), np.float32))
    # No seam: at the mask's outer edge the change is below one 8-bit level...
    assert _edge_step(change, weight) < 1 / 255
    # ...while pasting with a hard edge would leave a visible step there.
    hard, hard_faces = enhance_image(image, model, meta, feather=0.01, device=device)
    hard_change = (hard - image).mean(axis=2)
    assert _edge_step(hard_change, _union_mask(image.shape, hard_faces, 0.01)) > 3 / 255
    # Eq. 2 at the photo's resolution: out = x + m * (clip(x - 2 * resize(y) + 1) - x), with y
    # resized to the crop's full side (cv2.resize, an independent path): the photo's own
    # pixels pass through, changed only by the smooth upsampled network difference.
    crops, placements = face_crops(image, [f.box for f in faces], meta)
    ys = run_model(model, meta, crops, device)
    assert placements[0].angle == 0.0  # upright photos: an upright crop, as before
    (x0, y0, side), (h, w) = placements[0].crop, image.shape[:2]
    big = cv2.resize(ys[0], (side, side), interpolation=cv2.INTER_LINEAR)
    canvas = np.full_like(image, 0.5)  # y = 0.5: no change
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    canvas[sy0:sy1, sx0:sx1] = big[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    relit = np.clip(image - 2 * canvas + 1, 0, 1)
    np.testing.assert_allclose(out, image + weight[..., None] * (relit - image), atol=1e-5)


def test_bf16_precision_close_to_fp32(tiny, shared_data: Path) -> None:
    """bf16 autocast (opt-in speed) moves pixels by a few 8-bit levels at most, far ones not at all."""
    model, meta, device = tiny
    image = read_image(shared_data / "flash_pairs" / "redeye_man_flash.jpg")
    boxes = detect_faces(image)
    full, faces = enhance_image(image, model, meta, boxes=boxes, device=device)
    fast, _ = enhance_image(image, model, meta, boxes=boxes, device=device, precision="bf16")
    far = _far_from_faces(image.shape, faces)
    assert np.array_equal(fast[far], image[far])
    difference = np.abs(fast - full)
    assert difference.max() < 0.02 and difference.mean() < 0.5 / 255
    with pytest.raises(ValueError, match="precision"):
        enhance_image(image, model, meta, boxes=boxes, precision="fp8")


def test_group_photo_every_face_processed(tiny, shared_data: Path) -> None:
    """A group photo: every detected face gets relit, pixels away from all of them do not."""
    model, meta, device = tiny
    image = read_image(shared_data / "portraits" / "facenet_data_multiface.jpg")
    expected = detect_faces(image)
    assert len(expected) >= 4
    out, faces = enhance_image(image, model, meta, device=device)
    assert sorted(f.box for f in faces) == sorted(expected)
    change = np.abs(out - image).mean(axis=2)
    for top, right, bottom, left in expected:
        assert change[top:bottom, left:right].mean() > 2e-3, (
            f"face {(top, right, bottom, left)} untouched"
        )
    far = _far_from_faces(image.shape, faces)
    assert far.any() and np.array_equal(out[far], image[far])
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_rotated_real_flash_photo_relit_and_the_rest_bit_identical(tiny, shared_data: Path):
    """A shared flash photo turned 35 degrees (a phone held at an angle): the face is found,
    cropped upright (its roll is beyond the model's training rotations), relit and turned
    back; every pixel outside its blend mask keeps its value, and there is no seam."""
    model, meta, device = tiny
    upright = read_image(shared_data / "flash_pairs" / "redeye_man_flash.jpg")
    h, w = upright.shape[:2]
    turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 35.0, 1.0)
    image = np.clip(
        cv2.warpAffine(upright, turn, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT),
        0,
        1,
    )
    out, faces = enhance_image(image, model, meta, device=device)
    (face,) = faces
    assert face.roll == pytest.approx(35.0, abs=6.0) and face.angle == face.roll
    weight = _union_mask(image.shape, faces, DEFAULT_FEATHER)
    change = (out - image).mean(axis=2)
    assert np.abs(change[weight >= 1]).max() > 1e-3, "the face must change"
    assert np.array_equal(out[weight == 0], image[weight == 0])
    assert np.array_equal(
        out[_far_from_faces(image.shape, faces)], image[_far_from_faces(image.shape, faces)]
    )
    assert _edge_step(change, weight) < 1 / 255


# --------------------------------------------------------------------------- files, metadata, CLI


def _rotated_jpeg_with_metadata(source: Path, target: Path) -> tuple[np.ndarray, bytes]:
    """Write ``source`` stored sideways with EXIF orientation 6, a camera make and an ICC
    profile; returns the upright pixels (as read_image sees them) and the ICC bytes."""
    upright = np.asarray(Image.open(source).convert("RGB"))
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # orientation 6 rotates it back
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "DeepFlashTestCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(stored).save(target, quality=95, exif=exif.tobytes(), icc_profile=icc)
    return read_image(target), icc


def test_cli_rotated_jpeg_keeps_orientation_exif_and_icc(
    tiny_model_path: Path, shared_data: Path, tmp_path: Path
) -> None:
    """EXIF-rotated JPEG in, upright JPEG out: same displayed size, orientation 1, tags and ICC kept."""
    source = tmp_path / "rotated.jpg"
    upright, icc = _rotated_jpeg_with_metadata(
        shared_data / "flash_pairs" / "redeye_man_flash.jpg", source
    )
    assert upright.shape == (480, 640, 3)  # stored 480 wide x 640 tall, displayed landscape
    assert Image.open(source).size == (480, 640)
    out_jpg, out_png = tmp_path / "out" / "relit.jpg", tmp_path / "relit.png"
    result = CliRunner().invoke(
        main, ["enhance", str(source), "-o", str(out_jpg), "--model", str(tiny_model_path)]
    )
    assert result.exit_code == 0, result.output
    assert "1 enhanced" in result.output
    with Image.open(out_jpg) as pil:
        assert pil.size == (640, 480)  # upright pixels, no rotation left to apply
        exif = pil.getexif()
        assert exif.get(0x0112, 1) == 1
        assert exif.get(0x010F) == "DeepFlashTestCam"
        assert pil.info.get("icc_profile") == icc
    relit = read_image(out_jpg)
    assert relit.shape == upright.shape
    # The face was found upright (HOG finds no sideways face): its region changed.
    model, meta, device = load_enhancer(tiny_model_path, "cpu")
    report = enhance_file(source, out_png, model, meta, device=device)
    assert report.status == "enhanced" and len(report.faces) == 1
    far = _far_from_faces(upright.shape, report.faces)
    png = read_image(out_png)
    assert np.array_equal(png[far], upright[far])  # lossless output: bit-identical far away
    assert np.abs(relit[far] - upright[far]).mean() < 2 / 255  # JPEG re-encoding only
    assert set(report.timings) == set(STAGES)


def test_heic_photo_is_enhanced_like_its_lossless_twin(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """A HEIC photo (pillow-heif, as phones write them) is relit exactly as the same decoded
    pixels saved as a PNG; `--out-dir` names its output <stem>.jpg, with its ICC profile."""
    import skimage.data
    from pillow_heif import register_heif_opener

    register_heif_opener()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    heic = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(skimage.data.astronaut()).save(heic, quality=80, icc_profile=icc)
    twin = write_image(tmp_path / "twin.png", read_image(heic))  # the decoded pixels, lossless
    model, meta, device = load_enhancer(tiny_model_path, "cpu")
    from_heic = enhance_file(heic, tmp_path / "heic.png", model, meta, device=device)
    from_twin = enhance_file(twin, tmp_path / "twin_out.png", model, meta, device=device)
    assert from_heic.status == from_twin.status == "enhanced"
    assert from_heic.faces == from_twin.faces
    relit = read_image(tmp_path / "heic.png")
    assert np.array_equal(relit, read_image(tmp_path / "twin_out.png"))
    assert not np.array_equal(relit, read_image(twin))
    result = CliRunner().invoke(
        main,
        ["enhance", str(heic), "--out-dir", str(tmp_path / "out"), "--model", str(tiny_model_path)],
    )
    assert result.exit_code == 0, result.output
    assert "1 enhanced" in result.output
    with Image.open(tmp_path / "out" / "IMG_0001.jpg") as pil:
        assert pil.format == "JPEG" and pil.info.get("icc_profile") == icc


def test_cli_folder_no_face_and_bad_image(
    tiny_model_path: Path, shared_data: Path, tmp_path: Path, caplog
) -> None:
    """A folder with a face photo, a face-less photo and a broken file: each gets its outcome."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    face = inputs / "face.png"
    face.write_bytes((shared_data / "flash_pairs" / "faid_people014_flash.png").read_bytes())
    plain = inputs / "plain.jpg"
    write_image(
        plain,
        np.tile(np.linspace(0.2, 0.8, 120, dtype=np.float32), (90, 1))[..., None].repeat(3, 2),
    )
    broken = inputs / "broken.jpg"
    broken.write_text("not a jpeg")
    out_dir = tmp_path / "out"
    args = ["enhance", str(inputs), "--out-dir", str(out_dir), "--model", str(tiny_model_path)]
    with caplog.at_level(logging.WARNING, logger="pipeline.enhance.apply"):
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output  # one photo failed
    assert (
        "1 enhanced" in result.output
        and "1 copied no face" in result.output
        and "1 failed" in result.output
    )
    assert (out_dir / "face.png").is_file()
    assert (out_dir / "plain.jpg").read_bytes() == plain.read_bytes()  # copied byte for byte
    assert not (out_dir / "broken.jpg").exists()
    messages = caplog.text
    assert f"{plain}: no face found; copied unchanged" in messages
    assert str(broken) in messages and "not an image" in messages
    # --skip-no-face: no copy for the face-less photo.
    results = enhance_paths(
        [str(plain)],
        model_path=tiny_model_path,
        out_dir=tmp_path / "skip",
        options=EnhanceOptions(skip_no_face=True),
        progress=False,
    )
    assert [r.status for r in results] == ["skipped_no_face"]
    assert not (tmp_path / "skip" / "plain.jpg").exists()
    # An output folder that cannot be made fails that photo with the reason, no traceback.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    model, meta, device = load_enhancer(tiny_model_path, "cpu")
    report = enhance_file(plain, blocker / "plain.jpg", model, meta, device=device)
    assert report.status == "failed" and f"cannot write {blocker / 'plain.jpg'}" in report.reason


def test_cli_model_errors(tmp_path: Path) -> None:
    """A missing or wrong model file stops before any photo, naming the file and the reason."""
    photo = tmp_path / "p.png"
    write_image(photo, np.zeros((8, 8, 3), np.float32))
    runner = CliRunner()
    missing = tmp_path / "nope.pt"
    result = runner.invoke(
        main, ["enhance", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(missing)]
    )
    assert result.exit_code == 2 and f"{missing}: model file not found" in result.output
    wrong = tmp_path / "wrong.pt"
    wrong.write_text("hello")
    result = runner.invoke(
        main, ["enhance", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(wrong)]
    )
    assert result.exit_code == 2 and f"{wrong}: not a model file" in result.output
    # Sealed files (valid checksum) whose meta is incomplete or names an unknown arch
    # (pipeline/models/format.py; damaged files: tests/test_models_format.py).
    meta = {"arch": "nope", "width": 1.0, "encoding": "C", "size": 64}
    unknown = tmp_path / "unknown.pt"
    payload = {"format": "deepflash-model", "version": 2, "state_dict": {}}
    torch.save(seal({**payload, "meta": ModelMeta.parse(meta).to_dict()}), unknown)
    result = runner.invoke(
        main, ["enhance", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(unknown)]
    )
    assert result.exit_code == 2 and f"{unknown}: unknown arch 'nope'" in result.output
    bare = tmp_path / "bare.pt"
    torch.save(seal({**payload, "meta": {"arch": "deepflash", "width": 0.0625}}), bare)
    result = runner.invoke(
        main, ["enhance", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(bare)]
    )
    assert (
        result.exit_code == 2
        and f"{bare}: model meta lacks options, encoding, size, centred, bilateral, crop"
        in result.output
    )
    result = runner.invoke(
        main,
        [
            "enhance",
            str(tmp_path / "absent.jpg"),
            "-o",
            str(tmp_path / "o.png"),
            "--model",
            str(wrong),
        ],
    )
    assert result.exit_code == 2 and "absent.jpg: file not found" in result.output
    assert not (tmp_path / "o.png").exists()


def test_cli_feather_default_is_the_library_default(monkeypatch, tmp_path: Path) -> None:
    """`deepflash enhance` without --feather blends with the library's own default."""
    seen: dict = {}

    def record(inputs, **kwargs):
        seen.update(kwargs)
        return []

    monkeypatch.setattr("pipeline.enhance.apply.enhance_paths", record)
    result = CliRunner().invoke(main, ["enhance", "x.jpg", "-o", str(tmp_path / "o.jpg")])
    assert result.exit_code == 0, result.output
    assert seen["options"].feather == inspect.signature(enhance_image).parameters["feather"].default


def test_cuda_request_without_cuda_is_a_clear_error(tiny_model_path: Path) -> None:
    """--device cuda on a machine without CUDA says so instead of crashing later."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(EnhanceError, match="CUDA is not available"):
        load_enhancer(tiny_model_path, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_model_path: Path, shared_data: Path) -> None:
    """The same photo on CUDA and on the CPU gives the same result (float tolerance)."""
    image = read_image(shared_data / "flash_pairs" / "redeye_woman_flash.jpg")
    cpu = enhance_image(image, *load_enhancer(tiny_model_path, "cpu")[:2])[0]
    model, meta, device = load_enhancer(tiny_model_path, "cuda")
    gpu = enhance_image(image, model, meta, device=device)[0]
    assert np.abs(cpu - gpu).max() < 2e-3


def test_alpha_channel_kept_or_said_to_be_dropped(
    tiny_model_path: Path, shared_data: Path, tmp_path: Path, caplog
) -> None:
    """A PNG with an alpha channel: a PNG output keeps it bit for bit (colour relit, alpha
    passed through); a JPEG output cannot hold it and the log says so."""
    rgb = np.asarray(Image.open(shared_data / "flash_pairs" / "redeye_woman_flash.jpg"))
    h, w = rgb.shape[:2]
    alpha = np.tile(np.linspace(40, 255, w, dtype=np.float32), (h, 1)).astype(np.uint8)
    source = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(source)
    model, meta, device = load_enhancer(tiny_model_path, "cpu")
    report = enhance_file(source, tmp_path / "out.png", model, meta, device=device)
    assert report.status == "enhanced"
    np.testing.assert_array_equal(read_alpha(tmp_path / "out.png"), alpha / np.float32(255))
    relit = read_image(tmp_path / "out.png")
    assert np.abs(relit - read_image(source)).max() > 2 / 255  # the colour did change
    with caplog.at_level(logging.WARNING, logger="pipeline.enhance.apply"):
        report = enhance_file(source, tmp_path / "out.jpg", model, meta, device=device)
    assert report.status == "enhanced"
    assert "alpha channel dropped: .jpg cannot hold one" in caplog.text
    assert read_alpha(tmp_path / "out.jpg") is None
