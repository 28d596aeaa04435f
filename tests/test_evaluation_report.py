"""Tests of pipeline/evaluation/report.py: best runs, the ceiling table, deltas against the
identity and the paper."""

from __future__ import annotations

import pytest
from helpers.reportdata import eval_results as _results

from pipeline.evaluation.report import (
    PAPER_C,
    best_runs,
    build_comparison,
    ceiling,
    compare_metrics,
    this_record,
)
from pipeline.evaluation.results import flat_metrics


def _record(arch: str, enc: str, ssim: float, run_id: str, start: int = 0) -> dict:
    record = this_record(_results(ssim), arch, enc, run_id=run_id, run_name=run_id)
    record["start_time"] = start
    return record


def test_best_runs_per_arch_and_encoding() -> None:
    records = [
        _record("deepflash", "C", 0.80, "a"),
        _record("deepflash", "C", 0.85, "b"),
        _record("deepflash", "A", 0.60, "c"),
        _record("hdrnet", "C", 0.70, "d", start=1),
        _record("hdrnet", "C", 0.70, "e", start=2),  # tie: the newer run wins
        {"run_id": "f", "arch": "pix2pix", "encoding": "C", "metrics": {}},  # not evaluated
    ]
    best = best_runs(records)
    assert list(best) == ["deepflash/A", "deepflash/C", "hdrnet/C"]
    assert best["deepflash/C"]["run_id"] == "b"
    # ranked by val SSIM vs the raw gt (full split): ssim - 0.1 in the fixture
    assert best["deepflash/C"]["rank_value"] == pytest.approx(0.75)
    assert best["hdrnet/C"]["run_id"] == "e"


def test_comparison_numbers() -> None:
    results = _results(0.9, 21.0)
    this = this_record(results, "deepflash", "C", run_id="me")
    others = [_record("hdrnet", "A", 0.5, "h"), _record("deepflash", "C", 0.95, "better")]
    compare = build_comparison(results, this, others, fingerprint="fp")
    assert compare["runs_compared"] == 3
    cell = compare["vs_identity"]["val"]["full"]["ssim_pgt"]
    assert cell == {"model": 0.9, "identity": 0.7, "delta": pytest.approx(0.2), "oracle": 1.0}
    # The ceiling table: SSIM vs gt 0.8 (model), 0.6 (identity), 0.9 (oracle): 2/3 of the gap.
    ssim = compare["ceiling"]["val"]["full"]["ssim_gt"]
    assert ssim["model"] == pytest.approx(0.8) and ssim["oracle"] == pytest.approx(0.9)
    assert ssim["gap_closed"] == pytest.approx(0.2 / 0.3)
    psnr = compare["ceiling"]["val"]["protocol"]["psnr_gt"]  # 20 vs 13 of a possible 98 dB
    assert psnr["gap_closed"] == pytest.approx(7 / 85)
    assert "test" not in compare["vs_identity"]  # no images: nothing to compare
    # eval.json is written with sorted keys; the report keeps the train, val, test order.
    resorted = build_comparison(dict(sorted(results.items())), this, [], "fp")
    assert list(resorted["vs_identity"]) == ["train", "val"]
    table1 = compare["vs_paper_table1"]["val"]
    assert table1["loss"]["delta"] == pytest.approx(0.004 - 0.0042)
    assert table1["accuracy"]["delta"] == pytest.approx(96.0 - 96.2)
    # This run's protocol numbers against the paper's DeepFlash (Table 2).
    own = compare["vs_paper_tables23"]["val"]
    assert own["ssim"]["ours"] == pytest.approx(91.0) and own["ssim"]["paper"] == 87.76
    assert own["psnr"]["delta"] == pytest.approx(22.0 - 20.42)
    # Tables 2/3 cells come from the best run per arch x encoding (here the other run).
    ssim = compare["tables23"]["pgt"]["ssim"]
    assert ssim["val"]["deepflash/C"] == pytest.approx(96.0)
    assert ssim["val"]["deepflash/C delta"] == pytest.approx(96.0 - 87.76)
    assert ssim["val"]["hdrnet/A"] == pytest.approx(51.0)
    assert ssim["val"]["hdrnet/C"] is None and ssim["val"]["hdrnet/C delta"] is None
    assert ssim["train"]["pix2pix/C paper"] == PAPER_C["pix2pix"]["ssim"]["train"] == 71.0
    assert compare["tables23"]["gt"]["psnr"]["val"]["deepflash/C"] == pytest.approx(20.0)
    assert compare["best_runs"]["deepflash/C"]["run_id"] == "better"

    flat = compare_metrics(compare)
    assert flat["compare.val.full.vs_identity.psnr_pgt"] == pytest.approx(6.0)
    assert flat["compare.val.vs_paper.accuracy"] == pytest.approx(-0.2)
    assert flat["compare.train.vs_paper.ssim"] == pytest.approx(91.0 - 91.55)


def test_the_paper_comparison_uses_the_papers_ssim_convention() -> None:
    results = _results(0.9, 21.0)
    for split in ("train", "val"):
        for scope in ("full", "protocol"):
            for system in ("model", "identity", "oracle"):
                block = results[split][scope][system]
                block["ssim_pgt_matlab"] = block["ssim_pgt"] - 0.005
    this = this_record(results, "deepflash", "C", run_id="me")
    legacy = _record("hdrnet", "C", 0.5, "old")  # evaluated before the MATLAB SSIM existed
    compare = build_comparison(results, this, [legacy], fingerprint="fp")
    # Protocol SSIM 0.91 (torchmetrics) is 0.905 in MATLAB's convention: the paper's.
    assert compare["vs_paper_tables23"]["val"]["ssim"]["ours"] == pytest.approx(90.5)
    ssim = compare["tables23"]["pgt"]["ssim"]["val"]
    assert ssim["deepflash/C"] == pytest.approx(90.5) and ssim["hdrnet/C"] == pytest.approx(51.0)
    # Against the raw gt the training convention stays (no MATLAB column there).
    assert compare["tables23"]["gt"]["ssim"]["val"]["deepflash/C"] == pytest.approx(81.0)
    cell = compare["vs_identity"]["val"]["full"]["ssim_pgt_matlab"]
    assert cell["delta"] == pytest.approx(0.2)
    assert (
        "ssim_pgt_matlab"
        not in build_comparison(_results(), this, [])["vs_identity"]["val"]["full"]
    )


def test_ceiling_without_an_oracle_and_for_an_exact_one() -> None:
    results = _results()
    legacy = {"val": {**results["val"]}}
    legacy["val"]["full"] = {k: v for k, v in results["val"]["full"].items() if k != "oracle"}
    table = ceiling(legacy)  # eval.json written before the oracle existed
    assert table["val"]["full"]["ssim_gt"]["oracle"] is None
    assert table["val"]["full"]["ssim_gt"]["gap_closed"] is None
    assert table["val"]["protocol"]["ssim_gt"]["gap_closed"] == pytest.approx(0.21 / 0.3)
    exact = {"val": {**results["val"]}}
    capped = {**results["val"]["full"]["oracle"], "psnr_gt": 100.0}
    exact["val"]["full"] = {**results["val"]["full"], "oracle": capped}
    # Encodings A and B: the ceiling is the studio image itself, PSNR exact: no PSNR gap.
    assert ceiling(exact)["val"]["full"]["psnr_gt"]["gap_closed"] is None


def test_flat_metrics_names() -> None:
    flat = flat_metrics(_results())
    assert flat["eval.val.protocol.identity.loss"] == 0.01
    assert flat["eval.val.images"] == 40 and flat["eval.test.images"] == 0
