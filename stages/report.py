"""DVC stage `report`: reports/report.md and metrics/compare.json.

First table: model, identity baseline, oracle (the encoding's ceiling) and the share of the
gap between them the model closes, per split; then this run vs the best MLflow run per (arch,
encoding) with the same data fingerprint vs the paper's Tables 1 to 3; with
metrics/per_image.csv, whether each difference beats the noise (a paired bootstrap over the
test people: model vs identity and oracle, this run vs the best run of each other arch x
encoding that logged its per-image scores); both files are logged to the run as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import tracking
from pipeline.config import load_params
from pipeline.evaluation.noise import noise_rows
from pipeline.evaluation.report import build_comparison, compare_metrics, this_record
from pipeline.evaluation.report_page import render_markdown
from pipeline.io import read_csv, read_json, write_json
from pipeline.tracking.records import per_image_tables

RUN_FILE = "reports/mlflow_run.json"
COMPARE = "metrics/compare.json"
REPORT = Path("reports/report.md")
PER_IMAGE = Path("metrics/per_image.csv")


def main() -> int:
    """Compare, write the report, log it to the evaluated run."""
    params = load_params(exit_on_error=True)
    results = read_json("metrics/eval.json")
    try:
        found = tracking.reopen_evaluated(params, RUN_FILE, Path.cwd())
    except tracking.TrackingStoreError as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    this = found.record or this_record(
        results, params.model.arch, params.loss.encoding, found.run_id
    )
    with found.handle as handle:
        compare = build_comparison(results, this, found.others, found.fingerprint)
        if PER_IMAGE.is_file():
            others = {
                key: best["run_id"]
                for key, best in compare["best_runs"].items()
                if best["run_id"] and best["run_id"] != found.run_id
            }
            tables = per_image_tables(others.values())
            theirs = {k: [tables[r]] for k, r in others.items() if r in tables}
            compare["noise"] = noise_rows([read_csv(PER_IMAGE)], theirs)
        markdown = render_markdown(compare, results)
        write_json(COMPARE, compare)
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(markdown)
        print(markdown)
        handle.log_metrics(compare_metrics(compare))
        handle.log_artifact(REPORT, "report")
        handle.log_artifact(COMPARE, "report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
