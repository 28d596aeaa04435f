"""Tests of the image and JSON reader/writer (pipeline/io.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.io import (
    ImageReadError,
    image_size,
    is_image_name,
    read_csv,
    read_image,
    read_json,
    read_stage_table,
    safe_name,
    write_csv,
    write_image,
    write_json,
    write_rejected,
)


def _asymmetric(width: int = 40, height: int = 24) -> np.ndarray:
    """uint8 RGB with no symmetry, so every flip and rotation gives a different array."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:4, :8] = 255  # top-left block
    image[-3:, -10:, 0] = 200  # bottom-right red bar
    image[5:10, 20:22, 2] = 255  # blue mark right of centre
    image[..., 1] = np.arange(width, dtype=np.uint8)[None, :] * 3  # horizontal ramp
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int, suffix: str):
    """Every EXIF orientation 1-8 gives the same pixels and size as ImageOps.exif_transpose."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    Image.fromarray(_asymmetric()).save(path, exif=exif)
    with Image.open(path) as pil:
        reference = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"), np.float32) / 255
    image = read_image(path)
    assert image.dtype == np.float32 and image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image, reference)
    assert image_size(path) == (reference.shape[1], reference.shape[0])
    upright = (40, 24) if orientation <= 4 else (24, 40)
    assert image_size(path) == upright


def test_16_bit_grey_png_keeps_every_level(tmp_path: Path):
    """16-bit grey PNG: value v reads as v / 65535, also when the image is dark (all <= 255)."""
    levels = np.array([[0, 1, 255, 1000, 40000, 65535]], np.uint16).repeat(3, axis=0)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    image = read_image(tmp_path / "grey16.png")
    assert image.shape == (3, 6, 3)
    np.testing.assert_allclose(image[..., 0] * 65535, levels, atol=0.02)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    dark = np.array([[0, 3, 200]], np.uint16)  # 16-bit data that happens to stay below 256
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    np.testing.assert_allclose(
        read_image(tmp_path / "dark16.png")[0, :, 0] * 65535, dark[0], atol=0.01
    )


def test_16_bit_pgm_maxval_65535_even_when_dark(tmp_path: Path):
    """A 16-bit PGM (Pillow mode "I") with small values is scaled by 65535, not 255."""
    path = tmp_path / "dark.pgm"
    path.write_bytes(b"P5\n3 1\n65535\n" + np.array([0, 100, 255], ">u2").tobytes())
    np.testing.assert_allclose(read_image(path)[0, :, 0] * 65535, [0, 100, 255], atol=0.01)


def test_16_bit_rgb_png_keeps_every_level_in_rgb_order(tmp_path: Path):
    """16-bit colour PNG (Pillow would drop to 8 bits): exact values, RGB (not BGR) order."""
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 30001, 65535
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1])
    np.testing.assert_allclose(
        read_image(tmp_path / "rgb16.png")[1, 2] * 65535, [100, 30001, 65535], atol=0.02
    )
    rgba = np.dstack([rgb, np.full((2, 3), 7, np.uint16)])
    assert cv2.imwrite(str(tmp_path / "rgba16.png"), rgba[..., [2, 1, 0, 3]])
    image = read_image(tmp_path / "rgba16.png")
    assert image.shape == (2, 3, 3)
    np.testing.assert_allclose(image[0, 0] * 65535, [100, 30001, 65535], atol=0.02)


def test_write_image_16_bit_round_trip(tmp_path: Path):
    """write_image(bits=16) and read_image agree to 1/65535."""
    rng = np.random.default_rng(0)
    image = rng.random((5, 7, 3)).astype(np.float32)
    write_image(tmp_path / "x.png", image, bits=16)
    np.testing.assert_allclose(read_image(tmp_path / "x.png"), image, atol=1 / 65535)
    write_image(tmp_path / "y.png", image)  # 8 bits
    np.testing.assert_allclose(read_image(tmp_path / "y.png"), image, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "CMYK"])
def test_modes_become_rgb(tmp_path: Path, mode: str):
    """Grey, grey+alpha, RGBA, palette, 1-bit and CMYK all read as 3-channel RGB in [0, 1]."""
    base = Image.fromarray(_asymmetric())
    converted = base.quantize(8) if mode == "P" else base.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    converted.save(path)
    image = read_image(path)
    assert image.shape == (24, 40, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    with Image.open(path) as pil:
        expected = np.asarray(pil.convert("RGB"), np.float32) / 255
    np.testing.assert_array_equal(image, expected)
    if mode in ("L", "LA", "1"):
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
    if mode == "RGBA":  # alpha dropped, colour kept exactly
        np.testing.assert_array_equal(image, _asymmetric().astype(np.float32) / 255)


def test_bad_files_raise_image_read_error_with_reason(tmp_path: Path):
    """Zero bytes, truncated JPEG/PNG, not an image, missing file, too many pixels."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello, not a PNG")
    cases = {empty: "zero bytes", text: "not an image", tmp_path / "missing.jpg": "file not found"}
    for suffix in (".jpg", ".png"):
        full = tmp_path / f"full{suffix}"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        cases[cut] = "truncated file"
    for path, reason in cases.items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        assert info.value.reason.startswith(reason), (path, info.value.reason)
        assert str(path) in str(info.value)
    for path in (empty, text):
        with pytest.raises(ImageReadError):
            image_size(path)
    assert image_size(tmp_path / "cut.png") == (64, 64)  # header intact: size still known
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(tmp_path / "full.png", max_pixels=64 * 64 - 1)
    assert read_image(tmp_path / "full.png", max_pixels=64 * 64).shape == (64, 64, 3)


def test_json_round_trip_numpy_and_atomic(tmp_path: Path):
    """write_json handles numpy and Path values, sorts keys, leaves no temporary file."""
    path = write_json(
        tmp_path / "sub" / "m.json", {"b": np.float32(0.5), "a": np.arange(3), "p": Path("x")}
    )
    assert read_json(path) == {"a": [0, 1, 2], "b": 0.5, "p": "x"}
    assert list(json.loads(path.read_text())) == ["a", "b", "p"]
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_image_size_reads_only_the_png_header(tmp_path: Path, monkeypatch):
    """image_size never decodes a PNG (Pillow's PNG getexif() would): bombs stay cheap."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_asymmetric()).save(tmp_path / "rotated.png", exif=exif)
    Image.fromarray(_asymmetric()).save(tmp_path / "plain.png")
    from PIL import PngImagePlugin

    decoded = []
    original = PngImagePlugin.PngImageFile.load

    def recording_load(self):
        decoded.append(self.filename)
        return original(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", recording_load)
    assert image_size(tmp_path / "rotated.png") == (24, 40)  # orientation 6 from the header
    assert image_size(tmp_path / "plain.png") == (40, 24)
    assert decoded == []
    assert read_image(tmp_path / "rotated.png").shape == (40, 24, 3)
    assert decoded  # read_image does decode


def test_truncated_files_fail_even_when_pillow_is_told_to_accept_them(tmp_path: Path, monkeypatch):
    """face_recognition sets ImageFile.LOAD_TRUNCATED_IMAGES = True on import; read_image
    must still refuse truncated data (and leave the global setting as it found it)."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for suffix in (".jpg", ".png"):
        full = tmp_path / f"full{suffix}"
        Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(ImageReadError, match="truncated file"):
            read_image(cut)
        assert read_image(full).shape == (64, 64, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_names_and_rejected_list(tmp_path: Path):
    """Image extensions case-insensitively; safe names; the (file, reason) CSV, quoted."""
    assert is_image_name(Path("a/IMG_1.JPG")) and is_image_name("x.pgm")
    assert not is_image_name("notes.txt") and not is_image_name("jpg")
    assert safe_name("Ms Collins (2).png") == "Ms-Collins-2-.png"
    assert safe_name("s01_P00A+000E+00") == "s01_P00A+000E+00"
    assert safe_name("..") == "x" and safe_name(".hidden") == "hidden" and safe_name("/") == "x"
    path = write_rejected(tmp_path / "r" / "rejected.csv", [("a,b.jpg", "zero bytes")])
    assert path.read_text() == 'file,reason\n"a,b.jpg",zero bytes\n'
    assert write_rejected(tmp_path / "empty.csv", []).read_text() == "file,reason\n"


def test_write_image_is_atomic(tmp_path: Path, monkeypatch):
    """A failing encoder leaves the old file as it was and no temporary file beside it."""
    old = write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    before = old.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(old, np.ones((4, 4, 3), np.float32))
    monkeypatch.undo()
    assert old.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    for bits in (8, 16):  # Pillow and OpenCV paths: the new bytes replace the old ones
        write_image(old, np.ones((4, 4, 3), np.float32), bits=bits)
        assert read_image(old).min() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(ValueError, match="unknown file extension"):
        write_image(tmp_path / "a.xyz", np.zeros((4, 4, 3), np.float32))


def test_csv_tables_keep_every_cell_as_text(tmp_path: Path):
    """read_csv's one dtype rule: ids such as "007" and "NA" stay themselves, empty is ""."""
    import pandas as pd

    table = pd.DataFrame({"pair_id": ["007", "NA"], "width": [768, 1024], "reason": ["", "x"]})
    path = write_csv(tmp_path / "t" / "index.csv", table)
    assert path.read_text() == "pair_id,width,reason\n007,768,\nNA,1024,x\n"
    back = read_csv(path)
    assert back.to_dict("list") == {
        "pair_id": ["007", "NA"],
        "width": ["768", "1024"],
        "reason": ["", "x"],
    }
    with pytest.raises(FileNotFoundError, match=r"absent.csv: not found \(run the ingest stage"):
        read_stage_table(tmp_path / "absent.csv", "ingest")
    assert read_stage_table(path, "ingest").equals(back)


def test_heic_reads_upright_with_its_exif_and_icc(tmp_path: Path):
    """A HEIC photo (pillow-heif, lossless RGB) stored sideways with EXIF orientation 6 reads as
    the upright pixels, like the same photo as a PNG; a HEIC named .jpg opens too."""
    from PIL import ImageCms
    from pillow_heif import register_heif_opener

    from pipeline.io import open_image

    register_heif_opener()
    upright = _asymmetric(64, 48)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "photo.heic"
    lossless = {"quality": -1, "chroma": 444, "matrix_coefficients": 0}  # RGB, no YCbCr
    Image.fromarray(stored).save(path, exif=exif.tobytes(), icc_profile=icc, **lossless)
    image = read_image(path)
    assert image.shape == (48, 64, 3) and image_size(path) == (64, 48)
    np.testing.assert_array_equal(image, upright / np.float32(255))
    with open_image(path) as pil:
        assert pil.format == "HEIF" and pil.info["icc_profile"] == icc
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes(path.read_bytes())
    np.testing.assert_array_equal(read_image(misnamed), image)
