"""MLflow tracking of the pipeline (README, "Experiments and MLflow").

- :mod:`~pipeline.tracking.lifecycle`: start, reopen, continue or fork a run; the run handle;
- :mod:`~pipeline.tracking.store`: tracking URI, store lock and retries, the experiment,
  artifact locations, run files;
- :mod:`~pipeline.tracking.meta`: a run's name, tags, dataset input and description;
- :mod:`~pipeline.tracking.tags`: every tag name (the only place that spells one);
- :mod:`~pipeline.tracking.records`: evaluated runs read back as plain records;
- :mod:`~pipeline.tracking.models`: the logged model, its registered versions, the champion;
- :mod:`~pipeline.tracking.compare`: baseline and paper runs, the saved comparison view;
- :mod:`~pipeline.tracking.evaluation`: what evaluate records in its run.

This package exports what the stages and the other packages use across the run's life. The
evaluate stage imports :func:`pipeline.tracking.evaluation.log_evaluation` from its module:
it brings the model registry and the report's ranking, which the train stage (importing this
package) must not depend on, or a change to the report would retrain the model under DVC.
"""

from __future__ import annotations

from pipeline.tracking.lifecycle import RunHandle, continue_run, preflight, start_run
from pipeline.tracking.meta import data_fingerprint
from pipeline.tracking.records import evaluated_runs, reopen_evaluated
from pipeline.tracking.store import TrackingStoreError, repo_root, write_run_file

__all__ = [
    "RunHandle",
    "TrackingStoreError",
    "continue_run",
    "data_fingerprint",
    "evaluated_runs",
    "preflight",
    "repo_root",
    "reopen_evaluated",
    "start_run",
    "write_run_file",
]
