"""The run comparison: this run vs the identity baseline and the encoding's ceiling (oracle) vs
the best MLflow run per (arch, encoding) on the same data vs the paper's Tables 1 to 3, with
deltas; and the markdown tables shared with ``deepflash grid table``. The run's report page is
:mod:`pipeline.evaluation.report_page`.

Inputs are plain data: the evaluation results (``metrics/eval.json``, see
:mod:`pipeline.evaluation.evaluate`) and run records
(:func:`pipeline.tracking.records.run_record` turns an MLflow run into one), so the whole
module is testable without a tracking server. Conventions: SSIM in percent in the tables
(the paper's unit; eval.json keeps fractions), PSNR in dB, accuracy in percent; every delta is
ours minus the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.config import SPLITS
from pipeline.evaluation.results import (
    GAP_METRICS,
    METRICS,
    PAPER_SSIM,
    SSIM_CONVENTIONS,
    flat_metrics,
    gap_closed,
)

# The paper's numbers (Capece et al. 2019, Sec. 5). Tables 2 and 3: 30 random images per split, the
# reconstruction against the preconditioned ground truth; the baselines use encoding C.
PAPER_TABLE1 = {
    "val": {"loss": 0.0042, "accuracy": 96.2},
    "test": {"loss": 0.0045, "accuracy": 96.5},
}
PAPER_TABLE2 = {
    "deepflash": {
        "ssim": {"train": 91.55, "val": 87.76, "test": 89.80},
        "psnr": {"train": 24.05, "val": 20.42, "test": 21.28},
    },
    "hdrnet": {
        "ssim": {"train": 73.93, "val": 78.51, "test": 82.92},
        "psnr": {"train": 19.71, "val": 18.84, "test": 19.02},
    },
}
PAPER_TABLE3 = {
    "deepflash": {
        "ssim": {"train": 90.0, "val": 83.16, "test": 88.78},
        "psnr": {"train": 24.8, "val": 19.72, "test": 20.58},
    },
    "pix2pix": {
        "ssim": {"train": 71.0, "val": 73.16, "test": 74.25},
        "psnr": {"train": 17.82, "val": 17.64, "test": 17.30},
    },
}
# Paper value per (arch, metric, split) for the encoding-C column; DeepFlash from Table 2.
PAPER_C = {
    "deepflash": PAPER_TABLE2["deepflash"],
    "hdrnet": PAPER_TABLE2["hdrnet"],
    "pix2pix": PAPER_TABLE3["pix2pix"],
}
# The archs of the paper's Tables 2 and 3 (the rows this report compares with the paper).
ARCHS = tuple(PAPER_C)
TABLE_ENCODINGS = ("A", "C")  # end-to-end vs the paper's encoding
RANK_METRICS = tuple(f"eval.{s}.full.model.ssim_gt" for s in ("val", "test", "train"))


def this_record(
    results: Mapping[str, Any],
    arch: str,
    encoding: str,
    run_id: str | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """A run record of the current evaluation (used when MLflow tracking is off)."""
    return {
        "run_id": run_id,
        "run_name": run_name or "this run",
        "arch": arch,
        "encoding": encoding,
        "role": None,
        "exp_name": None,
        "fingerprint": None,
        "start_time": None,
        "metrics": flat_metrics(results),
    }


def rank_value(
    record: Mapping[str, Any], rank_metrics: Sequence[str] = RANK_METRICS
) -> float | None:
    """The value a run is ranked by: the first of ``rank_metrics`` it has (higher is better)."""
    for key in rank_metrics:
        value = record["metrics"].get(key)
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def best_runs(
    records: Iterable[Mapping[str, Any]], rank_metrics: Sequence[str] = RANK_METRICS
) -> dict[str, dict[str, Any]]:
    """Best run per ``"<arch>/<encoding>"`` by :func:`rank_value` (ties: the newest run)."""
    best: dict[str, dict[str, Any]] = {}
    for record in records:
        value = rank_value(record, rank_metrics)
        if value is None or not record.get("arch") or not record.get("encoding"):
            continue
        key = f"{record['arch']}/{record['encoding']}"
        current = best.get(key)
        candidate = (value, record.get("start_time") or 0)
        if current is None or candidate > (current["rank_value"], current.get("start_time") or 0):
            best[key] = {**record, "rank_value": value}
    return dict(sorted(best.items()))


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a - b


def ordered_splits(results: Mapping[str, Any]) -> list[str]:
    """The split names of eval results in train, val, test order (others after, sorted):
    eval.json is written with sorted keys."""
    return [s for s in SPLITS if s in results] + sorted(k for k in results if k not in SPLITS)


def vs_identity(results: Mapping[str, Any]) -> dict[str, Any]:
    """Per split and scope (full, protocol): model, identity, model - identity and the oracle
    (the encoding's ceiling; None in results written before it existed) per metric."""
    out: dict[str, Any] = {}
    for split in ordered_splits(results):
        block = results[split]
        if not isinstance(block, Mapping) or "full" not in block:
            continue
        out[split] = {}
        for scope in ("full", "protocol"):
            model, ident = block[scope]["model"], block[scope]["identity"]
            oracle = block[scope].get("oracle") or {}
            out[split][scope] = {
                m: {
                    "model": model[m],
                    "identity": ident[m],
                    "delta": _delta(model[m], ident[m]),
                    "oracle": oracle.get(m),
                }
                for m in METRICS
                if m in model and m in ident  # results written before a metric existed
            }
    return out


def ceiling(results: Mapping[str, Any]) -> dict[str, Any]:
    """The report's first table: per split and scope, for SSIM and PSNR against the raw ground
    truth, the model, the identity baseline, the oracle (the encoding's ceiling) and the share
    of the identity-to-oracle gap the model closes (:func:`gap_closed`; None: undefined)."""
    out: dict[str, Any] = {}
    for split in ordered_splits(results):
        block = results[split]
        if not isinstance(block, Mapping) or "full" not in block:
            continue
        out[split] = {}
        for scope in ("full", "protocol"):
            summary = block[scope]
            oracle = summary.get("oracle") or {}
            out[split][scope] = {}
            for m in GAP_METRICS:
                model, ident = summary["model"][m], summary["identity"][m]
                out[split][scope][m] = {
                    "model": model,
                    "identity": ident,
                    "oracle": oracle.get(m),
                    "gap_closed": gap_closed(model, ident, oracle.get(m)),
                }
    return out


def vs_table1(results: Mapping[str, Any]) -> dict[str, Any]:
    """Loss and accuracy on the full val and test splits against the paper's Table 1."""
    out: dict[str, Any] = {}
    for split, paper in PAPER_TABLE1.items():
        block = results.get(split)
        if not isinstance(block, Mapping) or "full" not in block:
            continue
        model = block["full"]["model"]
        out[split] = {
            m: {"ours": model[m], "paper": p, "delta": _delta(model[m], p)}
            for m, p in paper.items()
        }
    return out


def vs_tables23(results: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """This run's protocol SSIM (%, the paper's MATLAB convention: ``ssim_pgt_matlab``) and PSNR
    (dB) vs the preconditioned ground truth against the paper's encoding-C numbers for its arch
    (Table 2; Pix2Pix: Table 3)."""
    out: dict[str, Any] = {}
    if arch not in PAPER_C:
        return out
    for split in SPLITS:
        block = results.get(split)
        if not isinstance(block, Mapping) or "protocol" not in block:
            continue
        model = block["protocol"]["model"]
        # The paper's SSIM convention where the results have it (older ones: torchmetrics).
        ours = {"ssim": 100.0 * model.get(PAPER_SSIM, model["ssim_pgt"]), "psnr": model["psnr_pgt"]}
        out[split] = {
            m: {
                "ours": ours[m],
                "paper": PAPER_C[arch][m][split],
                "delta": _delta(ours[m], PAPER_C[arch][m][split]),
            }
            for m in ("ssim", "psnr")
        }
    return out


def _cell(
    record: Mapping[str, Any] | None, split: str, metric: str, reference: str
) -> float | None:
    if record is None:
        return None
    prefix = f"eval.{split}.protocol.model."
    value = record["metrics"].get(f"{prefix}{metric}_{reference}")
    if metric == "ssim" and reference == "pgt":  # the paper's convention where the run has it
        value = record["metrics"].get(prefix + PAPER_SSIM, value)
    if value is None:
        return None
    return 100.0 * value if metric == "ssim" else value


def tables23(best: Mapping[str, Mapping[str, Any]], reference: str = "pgt") -> dict[str, Any]:
    """The layout of the paper's Tables 2 and 3: per metric (ssim %, psnr dB) and split, each
    arch end-to-end (A) and with encoding C (protocol sample), beside the paper's C numbers."""
    out: dict[str, Any] = {}
    for metric in ("ssim", "psnr"):
        out[metric] = {}
        for split in SPLITS:
            row: dict[str, Any] = {}
            for arch in ARCHS:
                for encoding in TABLE_ENCODINGS:
                    row[f"{arch}/{encoding}"] = _cell(
                        best.get(f"{arch}/{encoding}"), split, metric, reference
                    )
                paper = PAPER_C[arch][metric][split]
                row[f"{arch}/C paper"] = paper
                row[f"{arch}/C delta"] = _delta(row[f"{arch}/C"], paper)
            out[metric][split] = row
    return out


def build_comparison(
    results: Mapping[str, Any],
    this: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Everything of compare.json: this run, the ceiling table (model, identity, oracle, gap
    closed), vs identity, vs Table 1, best runs, Tables 2/3."""
    pool = [
        r for r in records if r.get("run_id") != this.get("run_id") or this.get("run_id") is None
    ]
    pool.append(dict(this))
    best = best_runs(pool)
    return {
        "this_run": {k: this.get(k) for k in ("run_id", "run_name", "arch", "encoding")},
        "data_fingerprint": fingerprint,
        "rank_metrics": list(RANK_METRICS),
        "runs_compared": len(pool),
        "ceiling": ceiling(results),
        "vs_identity": vs_identity(results),
        "vs_paper_table1": vs_table1(results),
        "vs_paper_tables23": vs_tables23(results, str(this.get("arch"))),
        "best_runs": {
            key: {k: r.get(k) for k in ("run_id", "run_name", "exp_name", "role", "rank_value")}
            for key, r in best.items()
        },
        "tables23": {"pgt": tables23(best, "pgt"), "gt": tables23(best, "gt")},
    }


def compare_metrics(compare: Mapping[str, Any]) -> dict[str, float]:
    """Numeric deltas of a comparison as MLflow metrics (``compare.<...>``)."""
    flat: dict[str, float] = {}
    for split, scopes in compare["vs_identity"].items():
        for scope, metrics in scopes.items():
            for metric, cell in metrics.items():
                if cell["delta"] is not None:
                    flat[f"compare.{split}.{scope}.vs_identity.{metric}"] = cell["delta"]
    for split, metrics in compare["vs_paper_table1"].items():
        for metric, cell in metrics.items():
            if cell["delta"] is not None:
                flat[f"compare.{split}.vs_paper.{metric}"] = cell["delta"]
    for split, metrics in compare["vs_paper_tables23"].items():
        for metric, cell in metrics.items():
            if cell["delta"] is not None:
                flat[f"compare.{split}.vs_paper.{metric}"] = cell["delta"]
    return flat


def fmt_number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None or a non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
    """``value`` with its sign (a delta); ``-`` for None."""
    if value is None:
        return "-"
    return f"{value:+.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown lines of a table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_tables23(tables: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the Tables 2 and 3 layout (``build_comparison(...)["tables23"]``)."""
    lines: list[str] = []
    for reference, title in (
        ("pgt", "against the preconditioned ground truth (eq. 8), as the paper"),
        ("gt", "against the raw ground truth (the same reference for every encoding)"),
    ):
        lines += [
            f"## Tables 2 and 3 layout: best run per arch x encoding, protocol sample, {title}",
            "",
        ]
        block = tables[reference]
        for metric, unit in (("ssim", "SSIM %"), ("psnr", "PSNR dB")):
            header = ["split"]
            for arch in ARCHS:
                header += [f"{arch} A (end-to-end)", f"{arch} C"]
                if reference == "pgt":
                    header += [f"{arch} C paper", "delta"]
            rows = []
            for split, row in block[metric].items():
                cells = [split]
                for arch in ARCHS:
                    cells += [fmt_number(row[f"{arch}/A"]), fmt_number(row[f"{arch}/C"])]
                    if reference == "pgt":
                        cells += [
                            fmt_number(row[f"{arch}/C paper"]),
                            fmt_signed(row[f"{arch}/C delta"]),
                        ]
                rows.append(cells)
            lines += [f"**{unit}**", ""] + md_table(header, rows) + [""]
    lines += [
        f"SSIM against the preconditioned ground truth: {SSIM_CONVENTIONS[PAPER_SSIM]}, as the "
        f"paper computed it (runs evaluated before it existed: {SSIM_CONVENTIONS['ssim_pgt']}); "
        f"against the raw ground truth: {SSIM_CONVENTIONS['ssim_pgt']}.",
        "",
        "Cells: the best run per arch x encoding on this data; `-`: no such run yet. Paper "
        "columns: DeepFlash and HDRNet from Table 2, Pix2Pix from Table 3 (Table 3 gives DeepFlash "
        "SSIM 90 / 83.16 / 88.78 and PSNR 24.8 / 19.72 / 20.58 on its own sample).",
        "",
    ]
    return lines


def render_best_runs(
    best: Mapping[str, Mapping[str, Any]], rank_metrics: Sequence[str] = RANK_METRICS
) -> list[str]:
    """Markdown lines: one row per arch/encoding with its best run."""
    rows = [
        [
            key,
            str(r.get("run_name")),
            f"`{r.get('run_id')}`",
            str(r.get("exp_name")),
            str(r.get("role")),
            fmt_number(100 * r["rank_value"]),
        ]
        for key, r in best.items()
    ]
    lines = md_table(["arch/encoding", "run", "run id", "dvc exp", "role", "rank SSIM %"], rows)
    rank = ", then ".join(rank_metrics)
    return lines + [
        "",
        f"Ranked by {rank} (SSIM of the reconstruction vs the raw ground truth).",
        "",
    ]


__all__ = [
    "PAPER_C",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "RANK_METRICS",
    "best_runs",
    "build_comparison",
    "ceiling",
    "compare_metrics",
    "fmt_number",
    "fmt_signed",
    "md_table",
    "ordered_splits",
    "rank_value",
    "render_best_runs",
    "render_tables23",
    "tables23",
    "this_record",
    "vs_identity",
    "vs_table1",
    "vs_tables23",
]
