"""Photo files for enhance (pipeline/enhance/files.py): inputs, outputs, metadata, alpha."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipeline.enhance.files import (
    EnhanceError,
    expand_inputs,
    keeps_alpha,
    plan_outputs,
    source_metadata,
    write_output,
)
from pipeline.io import read_alpha, read_image, write_image


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
    # HEIC/HEIF (read, not written): a .jpg of the same name, in --out-dir or beside it.
    heic = [tmp_path / "IMG_1.HEIC", sub / "IMG_2.heif"]
    assert plan_outputs(heic, None, tmp_path / "out") == [
        tmp_path / "out" / "IMG_1.jpg",
        tmp_path / "out" / "IMG_2.jpg",
    ]
    assert plan_outputs(heic, None, None) == [tmp_path / "IMG_1.jpg", sub / "IMG_2.jpg"]
    (sub / "IMG_2.jpg").write_bytes(b"x")
    with pytest.raises(EnhanceError, match="IMG_2.jpg: exists"):
        plan_outputs(heic, None, None)
    with pytest.raises(EnhanceError, match="exactly one"):
        plan_outputs([heic[0], found[0]], None, None)  # beside: HEIF inputs only


@pytest.mark.parametrize("bits", [8, 16])
def test_alpha_round_trips_exactly(tmp_path: Path, bits: int) -> None:
    """An alpha channel written beside the colour comes back as it was (8 and 16 bits), with
    the EXIF orientation applied like the colour's; types without alpha leave it out."""
    rng = np.random.default_rng(4)
    image = rng.random((12, 16, 3)).astype(np.float32)
    scale = 65535 if bits == 16 else 255
    alpha = (np.rint(rng.random((12, 16)) * scale) / scale).astype(np.float32)
    out = write_output(tmp_path / "a.png", image, {"bits": bits}, alpha)
    np.testing.assert_allclose(read_alpha(out), alpha, atol=0.5 / scale)
    np.testing.assert_allclose(read_image(out), image, atol=0.5 / scale + 1e-6)
    assert keeps_alpha("x.webp") and not keeps_alpha("x.JPG")
    jpeg = write_output(tmp_path / "a.jpg", image, {}, alpha)
    assert read_alpha(jpeg) is None
    with pytest.raises(ValueError, match="does not match"):
        write_output(tmp_path / "b.png", image, {}, alpha[:4])
    # EXIF orientation 6 (stored sideways): alpha is turned upright with the colour.
    stored = np.dstack([np.rint(image * 255), np.rint(alpha * 255)]).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = tmp_path / "sideways.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(stored, 1)), "RGBA").save(
        sideways, exif=exif.tobytes()
    )
    assert read_image(sideways).shape == (12, 16, 3)
    np.testing.assert_allclose(read_alpha(sideways), np.rint(alpha * 255) / 255, atol=1e-6)
    assert read_alpha(tmp_path / "a.jpg") is None
