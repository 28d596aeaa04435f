"""The model file (pipeline/models/format.py): ModelMeta, deterministic bytes, integrity.

Every reader refuses a damaged file with "model file damaged: <path> (<reason>)": bytes
flipped at the start, the middle and the end of the weights, in the pickle and in the zip
headers; a weight changed inside a well-formed zip (checksum mismatch); the CLI commands that
read a model (enhance, evaluate, export) exit 2 with that line.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers.damage import flip_byte, weight_offsets
from torch import nn

from pipeline.cli import main
from pipeline.config import validate_params
from pipeline.evaluation.evaluate import evaluate_model
from pipeline.io import write_image
from pipeline.models import (
    ModelFileError,
    ModelMeta,
    build_model,
    load_for_inference,
    load_model_file,
    read_model_meta,
    save_model_file,
)
from pipeline.models.format import CROP_RUNTIME_KEYS, CropSettings, model_file_bytes
from pipeline.models.integrity import DamagedFileError, checksum, seal

REPO = Path(__file__).resolve().parents[1]
WIDTH = 1 / 16
META = {
    "encoding": "C",
    "size": 64,
    "bilateral": {"sigma_s_fraction": 0.03, "sigma_r": 0.4, "mode": "per_channel"},
    "centred": True,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("deepflash", WIDTH).eval()
    with torch.no_grad():  # non-default BatchNorm statistics must travel too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny deepflash model file (encoding C, 64 px)."""
    return save_model_file(tmp_path_factory.mktemp("format") / "model.pt", _model(), META)


def _damaged(model_file: Path, tmp_path: Path) -> dict[str, Path]:
    """Copies of ``model_file`` with one byte flipped: in the weights (start, middle, end), in
    the pickle, in the first local zip header and in the central directory."""
    spots = weight_offsets(model_file)
    with zipfile.ZipFile(model_file) as archive:
        pickle_info = archive.getinfo("archive/data.pkl")
        central = archive.start_dir
    spots["pickle"] = pickle_info.header_offset + 30 + len(pickle_info.filename) + 20
    spots["zip header"] = 0
    spots["central directory"] = central + 10
    return {name: flip_byte(model_file, at, tmp_path / f"{name}.pt") for name, at in spots.items()}


# --- ModelMeta --------------------------------------------------------------------------------


def test_meta_from_params_holds_what_readers_need() -> None:
    params = validate_params(
        {
            "model": {"arch": "hdrnet", "width": 0.5},
            "loss": {"encoding": "B", "centred": False},
            "data": {"size": 256},
            "bilateral": {"sigma_r": 0.1},
            "crop": {"margin": 0.25, "pad_mode": "edge", "workers": 7},
        }
    )
    meta = ModelMeta.from_params(params, {"epochs": 3, "best_epoch": 2})
    assert (meta.arch, meta.width, meta.encoding, meta.size, meta.centred) == (
        "hdrnet",
        0.5,
        "B",
        256,
        False,
    )
    assert meta.bilateral.sigma_r == 0.1 and meta.bilateral.sigma_s_fraction == 0.03
    assert meta.crop.margin == 0.25 and meta.crop.pad_mode == "edge"
    assert meta.training is not None and meta.training.best_epoch == 2
    with pytest.raises(ModelFileError, match="training.fingerprint: unknown key"):
        ModelMeta.from_params(params, {"epochs": 3, "best_epoch": 2, "fingerprint": "ab"})
    # Run-time-only crop keys stay out: changing them must not change a model file.
    assert "workers" not in meta.crop_settings() and CROP_RUNTIME_KEYS == {"workers"}


def test_meta_refuses_bad_values_with_the_key() -> None:
    with pytest.raises(ModelFileError, match="encoding: Value error, unknown encoding 'D'"):
        ModelMeta.parse({"arch": "deepflash", "width": 1.0, "encoding": "D", "size": 64})
    with pytest.raises(ModelFileError, match="size: Input should be greater than or equal to 1"):
        ModelMeta.parse({"arch": "deepflash", "width": 1.0, "encoding": "C", "size": 0})
    with pytest.raises(ModelFileError, match="colour: unknown key"):
        ModelMeta.parse(
            {"arch": "deepflash", "width": 1.0, "encoding": "C", "size": 8, "colour": 1}
        )
    stored = ModelMeta.parse({"arch": "a", "width": 1.0, "encoding": "C", "size": 8}).to_dict()
    del stored["centred"], stored["crop"]["margin"]
    with pytest.raises(ModelFileError, match=r"m\.pt: model meta lacks centred, crop\.margin$"):
        ModelMeta.from_stored(stored, "m.pt")


def test_train_stage_declares_every_crop_setting_the_model_file_records() -> None:
    """The train stage writes meta.crop from params.crop: DVC must re-run it when they change."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    declared = {p.removeprefix("crop.") for p in stage["params"] if isinstance(p, str)}
    assert set(CropSettings.model_fields) <= declared
    assert not CROP_RUNTIME_KEYS & declared


# --- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kwargs", "side"),
    [("deepflash", {}, 64), ("hdrnet", {"lowres": 128}, 40), ("pix2pix", {"num_downs": 6}, 64)],
)
def test_round_trip_rebuilds_the_network_through_the_registry(
    tmp_path: Path, arch: str, kwargs: dict, side: int
) -> None:
    width = {"deepflash": 1 / 16, "hdrnet": 1 / 8, "pix2pix": 1 / 16}[arch]
    model = build_model(arch, width, **kwargs).eval()
    path = save_model_file(tmp_path / "sub" / "model.pt", model, META)
    loaded, meta = load_model_file(path)
    assert (meta.arch, meta.width, meta.options) == (arch, width, kwargs)
    assert meta.to_dict() == read_model_meta(path).to_dict()
    assert type(loaded) is type(model) and not loaded.training
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_same_weights_and_meta_give_the_same_bytes_and_mode_0644(tmp_path: Path) -> None:
    first = save_model_file(tmp_path / "a" / "model.pt", _model(), META)
    second = save_model_file(tmp_path / "b" / "other_name.pt", _model(), META)
    assert first.read_bytes() == second.read_bytes()
    assert stat.S_IMODE(first.stat().st_mode) == 0o644
    # The zip's inner folder never carries a file name (a temporary one would vary).
    with zipfile.ZipFile(first) as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"archive"}
    assert list(first.parent.iterdir()) == [first]  # no temporary file left behind
    changed = _model()
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert model_file_bytes(changed, META) != first.read_bytes()


def test_writer_refuses_a_meta_that_disagrees_with_the_model(tmp_path: Path) -> None:
    model = build_model("hdrnet", 1 / 8)
    with pytest.raises(ValueError, match="meta arch 'deepflash' differs from the model's 'hdrnet'"):
        save_model_file(tmp_path / "m.pt", model, {**META, "arch": "deepflash"})
    with pytest.raises(ValueError, match=r"meta width 0\.25 differs from the model's 0\.125"):
        save_model_file(tmp_path / "m.pt", model, {**META, "width": 0.25})
    with pytest.raises(ValueError, match="model meta lacks|encoding: Field required"):
        save_model_file(tmp_path / "m.pt", model, {})
    with pytest.raises(TypeError, match="can only save registry models"):
        model_file_bytes(nn.Linear(2, 2), META)
    assert not (tmp_path / "m.pt").exists()


# --- integrity ----------------------------------------------------------------------------------


def test_flipped_bytes_anywhere_are_refused_as_damage(model_file: Path, tmp_path: Path) -> None:
    damaged = _damaged(model_file, tmp_path)
    assert len(damaged) == 6
    for name, path in damaged.items():
        with pytest.raises(DamagedFileError) as caught:
            load_model_file(path)
        message = str(caught.value)
        assert message.startswith(f"model file damaged: {path} ("), (name, message)
        # The weights and the pickle are CRC-protected records.
        if name in ("start", "middle", "end", "pickle"):
            assert message == f"model file damaged: {path} (zip CRC error)", name
        assert "weights_only" not in message
        with pytest.raises(DamagedFileError):
            read_model_meta(path)


def test_a_changed_weight_in_a_well_formed_zip_fails_the_checksum(
    model_file: Path, tmp_path: Path
) -> None:
    payload = torch.load(model_file, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first].view(-1)[0] += 0.5  # torch.save writes fresh CRCs
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    assert zipfile.ZipFile(forged).testzip() is None
    with pytest.raises(
        DamagedFileError, match=r"^model file damaged: .*forged\.pt \(checksum mismatch\)$"
    ):
        load_model_file(forged)
    del payload["checksum"]
    torch.save(payload, forged)
    with pytest.raises(DamagedFileError, match=r"\(no checksum\)$"):
        load_model_file(forged)


def test_checksum_is_canonical_and_covers_types() -> None:
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = {"x": tensor, "n": 1, "l": [1.0, "s"], "d": {2: None, 1: True}}
    b = {"d": {1: True, 2: None}, "l": [1.0, "s"], "n": 1, "x": tensor.clone()}
    assert checksum(a) == checksum(b) == checksum(seal(a))
    for changed in ({**a, "n": 1.0}, {**a, "l": (1.0, "s")}, {**a, "x": tensor.double()},
                    {**a, "x": tensor.reshape(3, 2)}):  # fmt: skip
        assert checksum(changed) != checksum(a)
    buffer = io.BytesIO()
    torch.save(seal(a), buffer)
    buffer.seek(0)
    assert checksum(torch.load(buffer, weights_only=True)) == checksum(a)


def test_files_that_are_not_ours_get_our_wording(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(
        ModelFileError, match=r"junk\.pt: not a model file \(not a PyTorch zip archive\)"
    ):
        load_model_file(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="not a DeepFlash model file"):
        load_model_file(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "deepflash-model", "code": np.random.default_rng(0)}, pickled)
    with pytest.raises(ModelFileError) as caught:
        load_model_file(pickled)
    assert "holds Python objects other than tensors and plain values" in str(caught.value)
    assert "weights_only" not in str(caught.value)
    old = tmp_path / "v1.pt"
    torch.save({"format": "deepflash-model", "version": 1, "arch": "deepflash"}, old)
    with pytest.raises(ModelFileError, match="version 1 has no checksum and cannot be verified"):
        load_model_file(old)
    with pytest.raises(FileNotFoundError):
        load_model_file(tmp_path / "absent.pt")


def test_meta_lacking_keys_or_naming_an_unknown_arch_is_refused(tmp_path: Path) -> None:
    def write(meta: dict) -> Path:
        path = tmp_path / "m.pt"
        torch.save(seal({"format": "deepflash-model", "version": 2, "meta": meta,
                         "state_dict": {}}), path)  # fmt: skip
        return path

    with pytest.raises(ModelFileError, match="model meta lacks width, options, encoding, size"):
        load_model_file(write({"arch": "deepflash"}))
    full = ModelMeta.parse({"arch": "nope", "width": 1.0, "encoding": "C", "size": 8}).to_dict()
    with pytest.raises(ModelFileError, match="unknown arch 'nope'; available: deepflash, hdrnet"):
        load_model_file(write(full))
    with pytest.raises(ModelFileError, match="weights do not fit a deepflash of width 1.0"):
        load_model_file(write({**full, "arch": "deepflash"}))


def test_load_for_inference_resolves_the_device(model_file: Path) -> None:
    model, meta, device = load_for_inference(model_file, "cpu")
    assert device == torch.device("cpu") and not model.training and meta.size == 64
    assert next(model.parameters()).device.type == "cpu"


# --- every reader refuses damage ----------------------------------------------------------------


def test_enhance_evaluate_and_export_commands_exit_2_on_a_damaged_file(
    model_file: Path, tmp_path: Path
) -> None:
    photo = write_image(tmp_path / "photo.png", np.full((48, 48, 3), 0.5, np.float32))
    raw = tmp_path / "raw"
    raw.mkdir()
    runner = CliRunner()
    for name, path in _damaged(model_file, tmp_path).items():
        if name not in ("start", "middle", "end"):
            continue
        expected = f"model file damaged: {path} (zip CRC error)"
        commands = {
            "enhance": ["enhance", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(path)],
            "evaluate": ["evaluate", "--model", str(path), "--raw-dir", str(raw)],
            "export": ["export", "--model", str(path), "--onnx", str(tmp_path / "m.onnx")],
        }
        for command, args in commands.items():
            result = runner.invoke(main, args)
            assert result.exit_code == 2, (command, name, result.output)
            assert expected in result.output, (command, result.output)
            assert "weights_only" not in result.output
        assert not (tmp_path / "o.png").exists() and not (tmp_path / "m.onnx").exists()


def test_evaluate_model_refuses_a_damaged_file(model_file: Path, tmp_path: Path) -> None:
    damaged = flip_byte(model_file, weight_offsets(model_file)["middle"], tmp_path / "d.pt")
    with pytest.raises(DamagedFileError, match=r"model file damaged: .*d\.pt \(zip CRC error\)"):
        evaluate_model(damaged, tmp_path / "index.csv", root=tmp_path, device="cpu")
