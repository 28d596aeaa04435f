"""Tests of pipeline/evaluation/report_page.py: the layout of reports/report.md."""

from __future__ import annotations

from helpers.reportdata import eval_results as _results

from pipeline.evaluation.report import build_comparison, this_record
from pipeline.evaluation.report_page import render_markdown


def test_markdown_layout() -> None:
    results = _results()
    compare = build_comparison(results, this_record(results, "hdrnet", "A", "r1"), [], "fp")
    text = render_markdown(compare, results)
    assert "# DeepFlash run report" in text
    # The SSIM convention of the paper comparison is named (MATLAB's), and ours.
    assert "SSIM: MATLAB's ssim, the paper's (Gaussian sigma 1.5" in text
    assert "everywhere else in this report: torchmetrics" in text
    # Without per-person scores no noise section; with them, after the first table.
    assert "beat the noise" not in text
    noisy = render_markdown({**compare, "noise": []}, results)
    assert noisy.index("## Which differences beat the noise") < noisy.index("## This run vs")
    # The first table: model, identity, oracle, gap closed per split, against the raw gt.
    first = text.index("## How good, and how much better it could get")
    assert first < text.index("## This run vs the identity baseline")
    assert "Encoding A's ceiling is the studio image itself" in text
    # val: SSIM 80 / 60 / 90 -> 66.7 % of the gap; PSNR 19 / 13 / 98 dB -> 7.1 %.
    assert "| val | 40 | 80.00 | 60.00 | 90.00 | 66.7 | 19.00 | 13.00 | 98.00 | 7.1 |" in text
    assert "| val (protocol) | 30 | 81.00 | 60.00 | 90.00 | 70.0 | 20.00 |" in text
    assert "### val (40 images; protocol 30)" in text
    assert (
        "| SSIM % vs precond. gt (eq. 8) | 90.00 | 70.00 | +20.00 | 100.00 "
        "| 91.00 | 70.00 | +21.00 | 100.00 |" in text
    )
    assert "Splits without images (skipped): test." in text
    assert "| val | loss | 0.00400 | 0.00420 | -0.00020 |" in text
    header = "| split | deepflash A (end-to-end) | deepflash C | deepflash C paper | delta |"
    assert header in text
    # hdrnet A filled (this run), the paper's HDRNet C beside it, no C run yet.
    assert "| val | - | - | 87.76 | - | 91.00 | - | 78.51 | - | - | - | 73.16 | - |" in text
    assert "| hdrnet/A | this run | `r1` |" in text
