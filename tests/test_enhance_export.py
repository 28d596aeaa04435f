"""`deepflash export`: ONNX and TorchScript files that compute what the PyTorch model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from helpers.damage import flip_byte, weight_offsets

from pipeline.cli import main
from pipeline.enhance.export import (
    ExportError,
    export_model_file,
    read_onnx_meta,
    read_torchscript_meta,
)
from pipeline.models import build_model, load_model_file, save_model_file

META = {
    "arch": "deepflash",
    "width": 0.0625,
    "encoding": "C",
    "size": 64,
    "bilateral": {"sigma_s_fraction": 0.03, "sigma_r": 0.4, "mode": "per_channel"},
    "centred": True,
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DeepFlash model file whose BatchNorm statistics are not the defaults.

    A few training-mode forward passes move the running mean/var, so the test also checks
    that the export uses the eval-mode (running) statistics as PyTorch does.
    """
    torch.manual_seed(0)
    model = build_model("deepflash", width=META["width"])
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64) * 0.8 + 0.1)
    path = tmp_path_factory.mktemp("export") / "model.pt"
    save_model_file(path, model.eval(), META)
    return path


def test_cli_onnx_and_torchscript_parity(model_file: Path, tmp_path: Path) -> None:
    """Both exports agree with PyTorch to < 1e-4 on fresh inputs, also at another size."""
    onnx_path, ts_path = tmp_path / "m.onnx", tmp_path / "m.ts"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--model",
            str(model_file),
            "--onnx",
            str(onnx_path),
            "--torchscript",
            str(ts_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "max abs diff vs PyTorch" in result.output
    model, meta = load_model_file(model_file)
    model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(ts_path))
    generator = torch.Generator().manual_seed(7)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 128)]:  # batch, height and width are free in ONNX
        x = torch.rand(*shape, generator=generator)
        with torch.inference_mode():
            expected = model(x).numpy()
            traced = scripted(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4
        assert np.abs(traced - expected).max() < 1e-4
    # The whole ModelMeta travels: what the app needs to build inputs and reconstruct.
    assert read_onnx_meta(onnx_path) == meta.to_dict() == read_torchscript_meta(ts_path)
    assert {k: meta.to_dict()[k] for k in META} == META


def test_export_model_file_reports_differences(model_file: Path, tmp_path: Path) -> None:
    """The library call returns each file's measured difference (0 <= diff < 1e-4)."""
    results = export_model_file(model_file, onnx_path=tmp_path / "a.onnx")
    assert set(results) == {"onnx"}
    assert 0.0 <= results["onnx"]["max_abs_diff"] < 1e-4
    unchecked = export_model_file(model_file, torchscript_path=tmp_path / "a.ts", check=False)
    assert unchecked["torchscript"]["max_abs_diff"] is None


def test_export_errors(model_file: Path, tmp_path: Path) -> None:
    """No target, a missing, damaged or foreign model and a wrong file each stop with a message
    naming the cause (exit 2), in our words."""
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--model", str(model_file)])
    assert result.exit_code == 2 and "give --onnx OUT and/or --torchscript OUT" in result.output
    missing = tmp_path / "none.pt"
    result = runner.invoke(
        main, ["export", "--model", str(missing), "--onnx", str(tmp_path / "x.onnx")]
    )
    assert result.exit_code == 2 and f"{missing}: model file not found" in result.output
    for where, offset in weight_offsets(model_file).items():
        damaged = flip_byte(model_file, offset, tmp_path / f"{where}.pt")
        result = runner.invoke(
            main, ["export", "--model", str(damaged), "--onnx", str(tmp_path / "d.onnx")]
        )
        assert result.exit_code == 2, result.output
        assert f"error: model file damaged: {damaged} (zip CRC error)" in result.output
        assert not (tmp_path / "d.onnx").exists()
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "deepflash-model", "code": np.random.default_rng(0)}, pickled)
    result = runner.invoke(main, ["export", "--model", str(pickled), "--torchscript", "x.ts"])
    assert (
        result.exit_code == 2 and f"{pickled}: not a model file (it holds Python" in result.output
    )
    assert "weights_only" not in result.output
    bare = tmp_path / "bare.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], [])), str(bare))
    with pytest.raises(ExportError, match="no deepflash.meta"):
        read_onnx_meta(bare)
