"""`deepflash enhance`: full-resolution relighting of every face, seamless blending, metadata.

The real-photo tests use a tiny DeepFlash model (width 0.0625, 64 px, encoding C) trained in
this module for one epoch on demo pairs by :func:`pipeline.training.loop.train`; the geometry and
blending tests use models whose output is known (a constant), so their answers are exact.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from pipeline.cli import main
from pipeline.config import validate_params
from pipeline.datasets.demo import generate_demo
from pipeline.enhance.apply import (
    DEFAULT_FEATHER,
    MASK_AXES,
    STAGES,
    EnhanceError,
    _upsample_to_region,
    enhance_file,
    enhance_image,
    enhance_paths,
    expand_inputs,
    face_crops,
    face_mask,
    load_enhancer,
    mask_region,
    plan_outputs,
    run_model,
    source_metadata,
    write_output,
)
from pipeline.faces.detect import IDENTITY, crop_faces, detect_faces, square_crop_box
from pipeline.io import read_image, write_image
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
    demo = generate_demo(root / "raw", n_subjects=3, poses=1, width=192, height=256, seed=0)
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
        weight += face_mask(shape[:2], face.crop, (0, 0), feather)
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


# --------------------------------------------------------------------------- mask and geometry


def test_face_mask_profile_known_values() -> None:
    """1 inside (1 - F) r, exactly 0 from r on, the quintic smoothstep in between."""
    side, feather = 200, 0.5
    crop = (0, 0, side)
    mask = face_mask((side, side), crop, feather=feather)
    ry = MASK_AXES[1] * side / 2.0
    centre = side // 2  # pixel 100 has centre 100.5: 0.5 px right of and below the crop centre
    column = mask[:, centre]
    rx = MASK_AXES[0] * side / 2.0
    radius = np.hypot((np.arange(side) + 0.5 - side / 2.0) / ry, 0.5 / rx)
    t = np.clip((1 - radius) / feather, 0, 1)
    expected = t**3 * (t * (t * 6 - 15) + 10)
    np.testing.assert_allclose(column, expected, atol=1e-6)
    assert mask[centre, centre] == 1.0
    assert mask[0, 0] == 0.0 and mask[-1, :].max() == 0.0 and mask[:, -1].max() == 0.0
    # Slope bound of the smoothstep: 15/8 per feather width.
    slope = np.abs(np.diff(mask, axis=0)).max()
    assert slope <= 1.875 / (feather * MASK_AXES[0] * side / 2.0) + 1e-6
    with pytest.raises(ValueError, match="feather"):
        face_mask((4, 4), crop, feather=0.0)


def test_mask_region_bounds_the_mask() -> None:
    """Outside mask_region the mask is 0, so enhance never needs to look there."""
    shape = (300, 400)
    crop = (250, -40, 180)  # sticks out of the top and the right side
    x0, y0, x1, y1 = mask_region(crop, shape)
    assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
    full = face_mask(shape, crop)
    outside = np.ones(shape, bool)
    outside[y0:y1, x0:x1] = False
    assert full[outside].max() == 0.0
    assert full[y0:y1, x0:x1].max() == 1.0


def test_upsample_to_region_equals_full_resize() -> None:
    """The one-affine upsampling equals cv2.resize to the crop's side, then cutting the region."""
    rng = np.random.default_rng(0)
    small = rng.random((16, 16, 3)).astype(np.float32)
    crop = (10, 20, 50)
    region = (25, 30, 55, 62)
    full = cv2.resize(small, (50, 50), interpolation=cv2.INTER_LINEAR)
    expected = full[region[1] - 20 : region[3] - 20, region[0] - 10 : region[2] - 10]
    np.testing.assert_allclose(_upsample_to_region(small, crop, region), expected, atol=1e-5)


def test_upsample_to_region_shrinks_small_faces_by_area() -> None:
    """A crop smaller than the network output is area-averaged (no aliasing), then cut."""
    small = np.zeros((64, 64, 3), np.float32)
    small[::2] = 1.0  # finest stripes: point sampling would alias them to all 0 or all 1
    out = _upsample_to_region(small, (5, 7, 16), (5, 7, 21, 23))
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


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
    out, faces = enhance_image(image, model, meta, device=device)
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
    crops, squares = face_crops(image, [f.box for f in faces], meta)
    ys = run_model(model, meta, crops, device)
    (x0, y0, side), (h, w) = squares[0], image.shape[:2]
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


def test_write_output_keeps_metadata_and_16_bit(tmp_path: Path) -> None:
    """PNG output carries EXIF and ICC; a 16-bit PNG source stays 16-bit."""
    image = np.random.default_rng(2).random((20, 30, 3)).astype(np.float32)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 3
    exif[0x0110] = "PhoneModel"
    source = tmp_path / "src.png"
    Image.fromarray((image * 255).astype(np.uint8)).save(
        source, exif=exif.tobytes(), icc_profile=icc
    )
    metadata = source_metadata(source)
    assert metadata["bits"] == 8 and metadata["icc_profile"] == icc
    write_output(tmp_path / "out.png", image, metadata)
    with Image.open(tmp_path / "out.png") as pil:
        assert pil.getexif()[0x0112] == 1 and pil.getexif()[0x0110] == "PhoneModel"
        assert pil.info["icc_profile"] == icc
    np.testing.assert_array_equal(
        read_image(tmp_path / "out.png"), np.rint(image * 255) / np.float32(255)
    )
    deep = tmp_path / "deep.png"
    write_image(deep, image, bits=16)
    assert source_metadata(deep)["bits"] == 16
    write_output(tmp_path / "deep_out.png", image, source_metadata(deep))
    np.testing.assert_allclose(read_image(tmp_path / "deep_out.png"), image, atol=1 / 65535)


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
        skip_no_face=True,
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
    # (pipeline/models/format.py; damaged files: tests/test_format.py).
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


def test_cli_feather_default_matches_library() -> None:
    """The CLI's --feather default is the library's DEFAULT_FEATHER."""
    option = next(p for p in main.commands["enhance"].params if p.name == "feather")
    assert option.default == DEFAULT_FEATHER


def test_expand_inputs_and_plan_outputs(tmp_path: Path) -> None:
    """Files, folders and globs expand to images (sorted, no duplicates); bad plans are refused."""
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.png").write_bytes(b"x")
    found = expand_inputs([str(tmp_path), str(tmp_path / "*.jpg"), str(tmp_path / "**" / "*.png")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b.jpg", "sub/a.png"]
    with pytest.raises(EnhanceError, match="pattern matches no image"):
        expand_inputs([str(tmp_path / "*.tif")])
    with pytest.raises(EnhanceError, match="file not found"):
        expand_inputs([str(tmp_path / "missing.jpg")])
    with pytest.raises(EnhanceError, match="both be written"):
        plan_outputs(found, None, tmp_path / "out")
    with pytest.raises(EnhanceError, match="-o takes one input"):
        plan_outputs(found[:2], tmp_path / "o.jpg", None)
    with pytest.raises(EnhanceError, match="overwrite its input"):
        plan_outputs(found[:1], None, tmp_path)
    with pytest.raises(EnhanceError, match="unsupported output type"):
        plan_outputs(found[:1], tmp_path / "o.gif", None)
    with pytest.raises(EnhanceError, match="exactly one"):
        plan_outputs(found[:1], None, None)
    assert plan_outputs(found[:2], None, tmp_path / "out") == [
        tmp_path / "out" / "a.png",
        tmp_path / "out" / "b.jpg",
    ]


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
