"""Tests of pipeline/evaluation/evaluate.py: known answers for the oracle and identity
outputs, the protocol sample, the sample grids, the whole evaluation of a processed index and
of a raw folder (library and `deepflash evaluate`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.config import BilateralParams, EvaluateParams
from pipeline.core import metrics as M
from pipeline.core.bilateral import make_blur
from pipeline.core.encodings import make_target, preconditioned_ground_truth, reconstruct
from pipeline.core.losses import make_loss
from pipeline.evaluation.evaluate import (
    PSNR_CAP,
    evaluate_batch,
    evaluate_model,
    identity_output,
    oracle_output,
    protocol_indices,
    sample_grid,
    summarise,
)
from pipeline.evaluation.results import (
    METRICS,
    PER_IMAGE_COLUMNS,
    flat_metrics,
    format_table,
    gap_closed,
)
from pipeline.io import read_csv, write_image
from pipeline.models import build_model, save_model_file

BILATERAL = {"sigma_s_fraction": 0.03, "sigma_r": 0.4, "mode": "per_channel"}


class Constant(torch.nn.Module):
    """A "network" that returns a fixed output whatever its input (oracle / identity)."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output


def _pair(n: int = 2, side: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    studio = torch.rand(n, 3, side, side, generator=gen) * 0.6 + 0.2
    flash = (studio * 1.3 + 0.05 * torch.rand(n, 3, side, side, generator=gen)).clamp(0, 1)
    return flash, studio


@pytest.mark.parametrize("encoding", ["A", "B", "C"])
def test_oracle_and_identity_known_answers(encoding: str) -> None:
    flash, studio = _pair()
    blur = make_blur(BilateralParams(**BILATERAL), 32)
    loss_fn = make_loss(True)
    target = make_target(flash, studio, encoding, blur)
    oracle = evaluate_batch(Constant(target), flash, studio, encoding, blur, loss_fn).metrics
    # The perfect output: zero loss, 100 % accuracy, reconstruction = preconditioned gt.
    assert oracle["model"]["loss"] == pytest.approx([0, 0], abs=1e-7)
    assert oracle["model"]["accuracy"] == pytest.approx([100, 100], abs=1e-4)
    assert oracle["model"]["ssim_pgt"] == pytest.approx([1, 1], abs=1e-4)
    assert list(oracle["model"]["psnr_pgt"]) == [PSNR_CAP, PSNR_CAP]

    # The identity baseline reconstructs the flash image: PSNR vs gt by the formula.
    ident = oracle["identity"]
    mse = ((flash - studio) ** 2).mean(dim=(1, 2, 3)).numpy()
    assert ident["psnr_gt"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    expected_y = flash if encoding == "A" else torch.full_like(flash, 0.5)
    assert torch.allclose(identity_output(flash, encoding, blur), expected_y, atol=1e-6)
    # A network that outputs the identity output scores exactly as the baseline.
    same = evaluate_batch(Constant(expected_y), flash, studio, encoding, blur, loss_fn).metrics
    for metric in METRICS:
        assert same["model"][metric] == pytest.approx(same["identity"][metric], abs=1e-6)
    if encoding == "A":
        # Encoding A: the preconditioned gt is the studio photo itself.
        assert ident["ssim_pgt"] == pytest.approx(ident["ssim_gt"], abs=1e-6)


@pytest.mark.parametrize("encoding", ["A", "B", "C"])
def test_oracle_is_the_preconditioned_ground_truth(encoding: str) -> None:
    flash, studio = _pair(seed=5)
    blur = make_blur(BilateralParams(**BILATERAL), 32)
    target = make_target(flash, studio, encoding, blur)
    oracle = reconstruct(flash, oracle_output(flash, studio, encoding, blur), encoding)
    # Eq. 8: the oracle's reconstruction is exactly what preconditioned_ground_truth gives.
    assert torch.equal(oracle, preconditioned_ground_truth(flash, target, encoding))
    if encoding == "A":
        # Encoding A's ceiling is the studio image itself.
        assert torch.equal(oracle, studio)
    elif encoding == "B":
        assert torch.allclose(oracle, studio, atol=1e-6)
    else:
        # C keeps the flash image's details: x - BL(x) + BL(o), not the studio image.
        assert torch.allclose(oracle, flash - blur(flash) + blur(studio), atol=1e-6)
        assert (oracle - studio).abs().max() > 0.01
    metrics = evaluate_batch(
        Constant(torch.zeros_like(flash)), flash, studio, encoding, blur, make_loss(False)
    ).metrics["oracle"]
    assert metrics["loss"] == pytest.approx([0, 0], abs=1e-7)
    assert list(metrics["psnr_pgt"]) == [PSNR_CAP, PSNR_CAP]
    # Against the raw studio image: SSIM of the clipped oracle reconstruction, by hand.
    expected = M.ssim(oracle.clamp(0, 1), studio).numpy()
    assert metrics["ssim_gt"] == pytest.approx(expected, abs=1e-6)
    if encoding in ("A", "B"):
        assert metrics["ssim_gt"] == pytest.approx([1, 1], abs=1e-5)
        assert list(metrics["psnr_gt"]) == [PSNR_CAP, PSNR_CAP]
    else:
        assert all(metrics["ssim_gt"] < 0.999) and all(metrics["psnr_gt"] < 60)


def test_gap_closed_by_hand() -> None:
    # SSIM 0.80 -> 0.85 of a possible 0.80 -> 0.90: half the gap.
    assert gap_closed(0.85, 0.80, 0.90) == pytest.approx(0.5)
    # PSNR 23.34 -> 26.53 of a possible 23.34 -> 29.56 dB: 51.3 % (the numbers).
    assert gap_closed(26.53, 23.34, 29.56) == pytest.approx(3.19 / 6.22)
    assert gap_closed(0.79, 0.80, 0.90) == pytest.approx(-0.1)  # worse than doing nothing
    assert gap_closed(31.0, 23.0, PSNR_CAP) is None  # exact ceiling (A, B): undefined
    assert gap_closed(0.9, 0.8, 0.8) is None and gap_closed(0.9, 0.8, 0.7) is None
    assert gap_closed(float("nan"), 0.8, 0.9) is None and gap_closed(None, 0.8, 0.9) is None
    per_image = {
        "model": {"ssim_gt": np.array([0.84, 0.86]), "psnr_gt": np.array([25.0, 27.0])},
        "identity": {"ssim_gt": np.array([0.80, 0.80]), "psnr_gt": np.array([22.0, 24.0])},
        "oracle": {"ssim_gt": np.array([0.90, 0.90]), "psnr_gt": np.array([28.0, 30.0])},
    }
    summary = summarise(per_image)
    # Ratio of the means: (0.85 - 0.80) / (0.90 - 0.80) and (26 - 23) / (29 - 23).
    assert summary["gap_closed"] == {"ssim_gt": pytest.approx(0.5), "psnr_gt": pytest.approx(0.5)}
    assert summarise(per_image, np.array([1]))["gap_closed"]["ssim_gt"] == pytest.approx(0.6)
    flat = flat_metrics({"test": {"full": summary}})
    assert flat["eval.test.full.gap_closed.psnr_gt"] == pytest.approx(0.5)
    assert flat["eval.test.full.oracle.ssim_gt"] == pytest.approx(0.9)


def test_protocol_indices() -> None:
    assert list(protocol_indices(4, 30, 0, "val")) == [0, 1, 2, 3]
    first = protocol_indices(100, 30, 0, "val")
    assert len(set(first.tolist())) == 30 and first.max() < 100
    assert np.array_equal(first, protocol_indices(100, 30, 0, "val"))
    assert not np.array_equal(first, protocol_indices(100, 30, 1, "val"))
    assert not np.array_equal(first, protocol_indices(100, 30, 0, "test"))


def test_summarise_and_flatten() -> None:
    per_image = {"model": {"loss": np.array([1.0, 2.0, 4.0])}}
    assert summarise(per_image) == {"model": {"loss": pytest.approx(7 / 3)}}
    assert summarise(per_image, np.array([0, 2])) == {"model": {"loss": 2.5}}
    flat = flat_metrics({"val": {"images": 3, "full": summarise(per_image)}})
    assert flat == {"eval.val.images": 3.0, "eval.val.full.model.loss": pytest.approx(7 / 3)}


def test_sample_grid_layout() -> None:
    colours = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1)]
    keys = ("input", "bl_input", "output", "pgt", "gt")
    images = {
        k: np.ones((64, 64, 3), np.float32) * np.array(c, np.float32)
        for k, c in zip(keys, colours, strict=True)
    }
    grid = sample_grid(images)
    side = 128  # tiles are upscaled to at least 128 px so the labels fit
    assert grid.shape == (side + 16, 5 * side + 4 * 2, 3) and grid.dtype == np.uint8
    for i, colour in enumerate(colours):
        centre = grid[16 + side // 2, i * (side + 2) + side // 2]
        assert tuple(centre) == tuple(255 * np.array(colour))
    assert (grid[:16] < 128).any()  # the labels are drawn in the band above


def _processed(root: Path, side: int = 32) -> Path:
    """A processed index with 3 train images and 1 val image (test split empty)."""
    rows = []
    for i, split in enumerate(["train", "train", "train", "val"]):
        flash, studio = _pair(1, side, seed=i)
        f = write_image(
            root / "data/processed" / split / f"p{i}__v_flash.png",
            flash[0].permute(1, 2, 0).numpy(),
        )
        s = write_image(
            root / "data/processed" / split / f"p{i}__v_studio.png",
            studio[0].permute(1, 2, 0).numpy(),
        )
        rows.append(
            {
                "split": split,
                "pair_id": f"p{i}",
                "subject": f"s{i}",
                "variant": "v",
                "flash": f.relative_to(root).as_posix(),
                "studio": s.relative_to(root).as_posix(),
            }
        )
    index = root / "data/processed/index.csv"
    with index.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return index


def _model_file(path: Path, encoding: str = "C", size: int = 32) -> Path:
    torch.manual_seed(0)
    model = build_model("deepflash", width=0.0625)
    meta = {
        "arch": "deepflash",
        "width": 0.0625,
        "encoding": encoding,
        "size": size,
        "bilateral": BILATERAL,
        "centred": True,
    }
    save_model_file(path, model, meta)
    return path


def test_evaluate_model_on_a_processed_index(tmp_path: Path) -> None:
    index = _processed(tmp_path)
    model_path = _model_file(tmp_path / "model.pt")
    results = evaluate_model(
        model_path,
        index,
        EvaluateParams(protocol_images=2, seed=0, samples=1, batch_size=2, device="cpu"),
        root=tmp_path,
        samples_dir=tmp_path / "samples",
        per_image_csv=tmp_path / "per_image.csv",
    )
    assert results["test"] == {"images": 0}
    assert results["train"]["images"] == 3 and results["train"]["protocol"]["images"] == 2
    assert results["val"]["protocol"]["images"] == 1
    # One val image: full and protocol are the same image.
    assert results["val"]["full"]["model"] == results["val"]["protocol"]["model"]
    for system in ("model", "identity", "oracle"):
        assert set(results["train"]["full"][system]) == set(METRICS)
    for scope in ("full", "protocol"):
        block = results["train"][scope]
        for metric in ("ssim_gt", "psnr_gt"):
            expected = (block["model"][metric] - block["identity"][metric]) / (
                block["oracle"][metric] - block["identity"][metric]
            )
            assert block["gap_closed"][metric] == pytest.approx(expected)
    # Encoding C's ceiling: perfect against the preconditioned gt, short of the studio image.
    assert results["val"]["full"]["oracle"]["ssim_pgt"] == pytest.approx(1, abs=1e-5)
    assert results["val"]["full"]["oracle"]["ssim_gt"] < 1
    # The identity baseline does not depend on the model: it is the flash image vs the gt.
    flash, studio = _pair(1, 32, seed=3)
    mse = float(((flash * 255).round() / 255 - (studio * 255).round() / 255).pow(2).mean())
    assert results["val"]["full"]["identity"]["psnr_gt"] == pytest.approx(
        10 * np.log10(1 / mse), abs=1e-3
    )
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["train_0.png", "val_0.png"]
    table = format_table(results)
    # header, rule, 2 splits x 3 systems, the empty test split
    assert "oracle" in table and table.count("\n") == 8
    model_row = next(
        line for line in table.splitlines() if line.split()[:3] == ["train", "3", "model"]
    )
    gap = 100 * results["train"]["full"]["gap_closed"]["psnr_gt"]
    assert model_row.split()[-1] == f"{gap:.1f}"
    json.dumps(results, allow_nan=False)  # every value is finite JSON
    # Every image's scores with its person: the split means are the means of these rows.
    rows = read_csv(tmp_path / "per_image.csv")
    assert list(rows.columns) == list(PER_IMAGE_COLUMNS)
    assert len(rows) == 4 * 3 and set(rows["system"]) == {"model", "identity", "oracle"}
    train_model = rows[(rows["split"] == "train") & (rows["system"] == "model")]
    assert list(train_model["subject"]) == ["s0", "s1", "s2"]
    assert list(train_model["pair_id"]) == ["p0", "p1", "p2"]
    for metric in METRICS:
        mean = train_model[metric].astype(float).mean()
        assert mean == pytest.approx(results["train"]["full"]["model"][metric], rel=1e-6)
    first = (tmp_path / "per_image.csv").read_bytes()
    params = EvaluateParams(protocol_images=2, seed=0, samples=0, batch_size=2, device="cpu")
    evaluate_model(model_path, index, params, root=tmp_path, per_image_csv=tmp_path / "again.csv")
    # The same model, data and params: the same bytes (no timings, no temp names).
    assert (tmp_path / "again.csv").read_bytes() == first
    # Another batch size is another DVC input; its scores agree to float rounding only
    # (convolution kernels sum in a batch-dependent order).
    params = EvaluateParams(protocol_images=2, seed=0, samples=0, batch_size=3, device="cpu")
    evaluate_model(model_path, index, params, root=tmp_path, per_image_csv=tmp_path / "b3.csv")
    other = read_csv(tmp_path / "b3.csv")
    for metric in METRICS:
        assert other[metric].astype(float).to_numpy() == pytest.approx(
            rows[metric].astype(float).to_numpy(), rel=1e-5, abs=1e-6
        )


def test_cli_evaluate_real_flash_pairs(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deepflash evaluate` on the real flash/no-flash pairs: ingest, register, crop, evaluate."""
    from pipeline.cli import main

    raw = shared_data / "flash_pairs"  # *_flash + *_noflash: read in place, never written
    model_path = _model_file(tmp_path / "model.pt", encoding="C", size=64)
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(
        "register: {max_side: 128, iterations: 30}\nevaluate: {protocol_images: 3, samples: 1}\n"
    )
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--model", str(model_path), "--raw-dir", str(raw), "--layout", "faid"]
    result = CliRunner().invoke(
        main, [*args, "--out", str(out), "--device", "cpu", "--samples-dir", "samples"]
    )
    assert result.exit_code == 0, result.output
    assert "identity" in result.output and "oracle" in result.output
    assert "protocol:" in result.output and "gap PSNR %" in result.output
    saved = json.loads(out.read_text())
    assert saved["pairs"] == 4 and saved["rejected"] == [] and saved["encoding"] == "C"
    block = saved["metrics"]["all"]
    assert block["images"] == 4 and block["protocol"]["images"] == 3
    ident, oracle = block["full"]["identity"], block["full"]["oracle"]
    # Real flash vs dim ambient light: the flash photo is far from the no-flash one.
    assert 0 < ident["ssim_gt"] < 0.95 and 5 < ident["psnr_gt"] < 30
    # Encoding C's ceiling relights the flash photo: far closer than the flash photo itself.
    assert oracle["psnr_gt"] > ident["psnr_gt"] + 3 and oracle["ssim_gt"] > ident["ssim_gt"]
    assert set(block["full"]["gap_closed"]) == {"ssim_gt", "psnr_gt"}
    assert Path("samples/all_0.png").is_file()
    missing = CliRunner().invoke(
        main, ["evaluate", "--model", str(model_path), "--raw-dir", "nope"]
    )
    assert missing.exit_code == 2 and "nope" in missing.output


def test_metrics_skip_the_padded_area_of_a_crop() -> None:
    """A crop whose right 12 columns are padding (mask 0): there the "studio" holds garbage;
    on the valid area it is the flash photo less 0.1. Masked, the identity baseline's PSNR
    against the studio is exactly 20 dB (MSE 0.01) and the sample grid shows the padding as a
    checkerboard; unmasked, the garbage drags the PSNR down."""
    flash = torch.full((1, 3, 32, 32), 0.6)
    studio = flash - 0.1
    studio[..., 20:] = torch.rand(1, 3, 32, 12, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 20:] = 0.0
    blur = make_blur(BilateralParams(**BILATERAL), 32)
    out = evaluate_batch(Constant(flash), flash, studio, "A", blur, make_loss(False), mask)
    assert out.metrics["identity"]["psnr_gt"] == pytest.approx([20.0], abs=1e-4)
    assert out.metrics["identity"]["loss"] == pytest.approx([0.01], rel=1e-4)  # plain MSE
    unmasked = evaluate_batch(Constant(flash), flash, studio, "A", blur, make_loss(False))
    assert unmasked.metrics["identity"]["psnr_gt"][0] < 15.0
    tiles = {k: v[0].permute(1, 2, 0).numpy() for k, v in out.images.items()}
    grid = sample_grid(tiles)
    band = 16  # label band above the tiles; the gt tile is the last, upscaled to 128 px
    gt_tile = grid[band:, -128:]
    padded = gt_tile[:, 84:]  # columns 20.. of 32, times 4
    assert set(np.unique(padded)) <= {140, 191}  # the two greys of the checkerboard
    assert np.abs(gt_tile[:, :76].astype(int) - 128).max() < 2  # 0.5 * 255 there
    assert (padded == 140).mean() == pytest.approx(0.5, abs=0.1)  # a checkerboard, half each
