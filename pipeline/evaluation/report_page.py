"""The run's report page (``reports/report.md``): how good the run is and how much better it
could get, then how it compares with the paper and with the other runs on the same data.

The first table answers both questions at once: per split, SSIM and PSNR against the raw
studio image for the model, the identity baseline (doing nothing: the flash image) and the
oracle (the encoding's ceiling: the reconstruction with the true target, i.e. the
preconditioned ground truth of eq. 8), and the share of the identity-to-oracle gap the model
closes. Inputs are a comparison (:func:`pipeline.evaluation.report.build_comparison`) and the
evaluation results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.evaluation.noise import render_noise
from pipeline.evaluation.report import (
    fmt_number,
    fmt_signed,
    md_table,
    ordered_splits,
    render_best_runs,
    render_tables23,
)
from pipeline.evaluation.results import PAPER_SSIM, SSIM_CONVENTIONS

_CEILING_NOTE = {
    "A": "Encoding A's ceiling is the studio image itself (the network predicts it directly): "
    "SSIM 100 % and an exact PSNR (shown as the 100 dB cap), so the PSNR gap is undefined.",
    "B": "Encoding B's ceiling is the studio image itself (x - 2t + 1 = o): SSIM 100 % and an "
    "exact PSNR (shown as the 100 dB cap), so the PSNR gap is undefined.",
    "C": "Encoding C's ceiling keeps the flash image's detail layer x - BL(x) (eq. 8: "
    "x - BL(x) + BL(o)), so even a perfect network stays below the studio image.",
}


def render_ceiling(
    table: Mapping[str, Any], results: Mapping[str, Any], encoding: str | None
) -> list[str]:
    """Markdown lines of the first table (:func:`pipeline.evaluation.report.ceiling`): per
    split and scope, SSIM % and PSNR dB against the raw ground truth of the model, the
    identity, the oracle and the gap closed (%)."""
    lines = [
        "## How good, and how much better it could get",
        "",
        "Against the raw studio image. identity: the flash image itself (doing nothing); "
        "oracle: the encoding's ceiling, the reconstruction with the true target (the "
        "preconditioned ground truth, eq. 8); gap closed: (model - identity) / (oracle - "
        "identity), 100 % = at the ceiling, below 0 = worse than doing nothing.",
        "",
    ]
    if encoding in _CEILING_NOTE:
        lines += [_CEILING_NOTE[encoding], ""]
    header = [
        "split",
        "images",
        "SSIM %: model",
        "identity",
        "oracle",
        "gap closed %",
        "PSNR dB: model",
        "identity",
        "oracle",
        "gap closed %",
    ]
    rows = []
    for split, scopes in table.items():
        for scope, metrics in scopes.items():
            block = results[split]
            n = block["images"] if scope == "full" else block[scope]["images"]
            row = [split if scope == "full" else f"{split} (protocol)", str(n)]
            for metric, scale in (("ssim_gt", 100.0), ("psnr_gt", 1.0)):
                cell = metrics[metric]
                row += [
                    fmt_number(_scaled(cell["model"], scale)),
                    fmt_number(_scaled(cell["identity"], scale)),
                    fmt_number(_scaled(cell["oracle"], scale)),
                    fmt_number(_scaled(cell["gap_closed"], 100.0), 1),
                ]
            rows.append(row)
    lines += md_table(header, rows) if rows else ["(no split with images)"]
    return lines + [""]


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else scale * value


_METRIC_LABELS = {
    "loss": ("loss (training loss: eq. 5 or MSE)", 5, 1.0),
    "accuracy": ("accuracy % (eq. 7)", 2, 1.0),
    "ssim_pgt": ("SSIM % vs precond. gt (eq. 8)", 2, 100.0),
    "psnr_pgt": ("PSNR dB vs precond. gt", 2, 1.0),
    "ssim_gt": ("SSIM % vs gt", 2, 100.0),
    "psnr_gt": ("PSNR dB vs gt", 2, 1.0),
    "ssim_pgt_matlab": ("SSIM % vs precond. gt, MATLAB convention (the paper's)", 2, 100.0),
}


def render_markdown(compare: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """reports/report.md from a comparison
    (:func:`pipeline.evaluation.report.build_comparison`) and the evaluation results."""
    this = compare["this_run"]
    lines = [
        "# DeepFlash run report",
        "",
        f"- run: `{this.get('run_name')}` (MLflow run id `{this.get('run_id')}`)",
        f"- arch `{this.get('arch')}`, encoding `{this.get('encoding')}`",
        f"- data fingerprint `{compare.get('data_fingerprint')}`; {compare['runs_compared']} "
        "evaluated run(s) on this data compared",
        "- SSIM in %, PSNR in dB; deltas are ours minus the other. `full`: every image of the "
        "split (all augmented variants); `protocol`: the paper's seeded random sample.",
        "",
    ]
    lines += render_ceiling(compare.get("ceiling") or {}, results, this.get("encoding"))
    if "noise" in compare:
        lines += render_noise(compare["noise"], "Which differences beat the noise (per person)")
    lines += [
        "## This run vs the identity baseline (output = flash image) and the oracle",
        "",
    ]
    for split, scopes in compare["vs_identity"].items():
        n_full = results[split]["images"]
        n_protocol = results[split]["protocol"]["images"]
        lines.append(f"### {split} ({n_full} images; protocol {n_protocol})")
        lines.append("")
        rows = []
        for metric, (label, digits, scale) in _METRIC_LABELS.items():
            if metric not in scopes["full"]:  # results written before the metric existed
                continue
            row = [label]
            for scope in ("full", "protocol"):
                cell = scopes[scope][metric]
                oracle = cell.get("oracle")
                row += [
                    fmt_number(scale * cell["model"], digits),
                    fmt_number(scale * cell["identity"], digits),
                    fmt_signed(None if cell["delta"] is None else scale * cell["delta"], digits),
                    fmt_number(None if oracle is None else scale * oracle, digits),
                ]
            rows.append(row)
        header = [
            "metric",
            "full: model",
            "identity",
            "delta",
            "oracle",
            "protocol: model",
            "identity",
            "delta",
            "oracle",
        ]
        lines += md_table(header, rows)
        lines.append("")
    skipped = [
        s
        for s in ordered_splits(results)
        if isinstance(results[s], Mapping) and results[s].get("images") == 0
    ]
    if skipped:
        lines += [f"Splits without images (skipped): {', '.join(skipped)}.", ""]

    lines += ["## Paper, Table 1 (full splits)", ""]
    rows = []
    for split, metrics in compare["vs_paper_table1"].items():
        for metric, cell in metrics.items():
            digits = 5 if metric == "loss" else 2
            rows.append(
                [
                    split,
                    metric,
                    fmt_number(cell["ours"], digits),
                    fmt_number(cell["paper"], digits),
                    fmt_signed(cell["delta"], digits),
                ]
            )
    lines += (
        md_table(["split", "metric", "ours", "paper", "delta"], rows)
        if rows
        else ["(no val/test split)"]
    )
    lines.append("")
    lines += [
        f"## This run vs the paper's Tables 2/3 ({this.get('arch')}, the paper's encoding C; "
        "protocol sample, vs precond. gt)",
        "",
        f"SSIM: {SSIM_CONVENTIONS[PAPER_SSIM]}; everywhere else in this report: "
        f"{SSIM_CONVENTIONS['ssim_pgt']}.",
        "",
    ]
    rows = [
        [
            split,
            metric.upper(),
            fmt_number(cell["ours"]),
            fmt_number(cell["paper"]),
            fmt_signed(cell["delta"]),
        ]
        for split, metrics in compare["vs_paper_tables23"].items()
        for metric, cell in metrics.items()
    ]
    lines += (
        md_table(["split", "metric", "ours", "paper", "delta"], rows) if rows else ["(no split)"]
    )
    lines.append("")

    lines += render_tables23(compare["tables23"])
    lines += ["## Best runs per arch x encoding (same data fingerprint)", ""]
    lines += render_best_runs(compare["best_runs"], compare["rank_metrics"])
    return "\n".join(lines)


__all__ = ["render_ceiling", "render_markdown"]
