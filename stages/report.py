"""DVC stage `report`: reports/report.md and metrics/compare.json.

First table: model, identity baseline, oracle (the encoding's ceiling) and the share of the
gap between them the model closes, per split; then this run vs the best MLflow run per (arch,
encoding) with the same data fingerprint vs the paper's Tables 1 to 3; both files are logged
to the run as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import tracking  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.evaluation.report import (  # noqa: E402
    build_comparison,
    compare_metrics,
    run_record,
    this_record,
)
from pipeline.evaluation.report_page import render_markdown  # noqa: E402
from pipeline.io import read_json, write_json  # noqa: E402


def main() -> None:
    """Compare, write the report, log it to the evaluated run."""
    params = load_params(exit_on_error=True)
    results = read_json("metrics/eval.json")
    info = tracking.read_run_file("reports/mlflow_run.json")
    fingerprint = tracking.data_fingerprint(".")
    this = this_record(results, params.model.arch, params.loss.encoding, info.get("run_id"))
    records = []
    handle = tracking.RunHandle()
    if tracking.enabled() and info.get("run_id"):
        try:
            handle = tracking.start_run(params, Path.cwd(), run_id=info["run_id"])
        except tracking.TrackingStoreError as error:
            sys.exit(f"error: {error}")
        run = tracking.call_with_retry(handle.client.get_run, info["run_id"])
        fingerprint = run.data.tags.get("data.fingerprint", fingerprint)
        this = run_record(run)
        query = (
            f"tags.`data.fingerprint` = '{fingerprint}' "
            f"and tags.`{tracking.EVALUATED_TAG}` = 'true'"
        )
        records = [run_record(r) for r in tracking.search_runs(params.mlflow.experiment, query)]
    with handle:
        compare = build_comparison(results, this, records, fingerprint)
        markdown = render_markdown(compare, results)
        write_json("metrics/compare.json", compare)
        Path("reports").mkdir(exist_ok=True)
        Path("reports/report.md").write_text(markdown)
        print(markdown)
        handle.log_metrics(compare_metrics(compare))
        handle.log_artifact("reports/report.md", "report")
        handle.log_artifact("metrics/compare.json", "report")


if __name__ == "__main__":
    main()
