"""Evaluated runs read back from MLflow as plain records: the report's comparison, the grid's
Tables 2 and 3 and the champion alias rank them.

A run record is a plain dict (run_id, run_name, arch, encoding, role, exp_name, fingerprint,
start_time, metrics), so :mod:`pipeline.evaluation.report` ranks and tabulates records without
knowing MLflow or its tag names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Params
from pipeline.tracking.lifecycle import RunHandle, start_run
from pipeline.tracking.meta import data_fingerprint
from pipeline.tracking.store import call_with_retry, enabled, read_run_file, search_runs
from pipeline.tracking.tags import (
    ARCH_TAG,
    ENCODING_TAG,
    EVALUATED_TAG,
    EXP_NAME_TAG,
    FINGERPRINT_TAG,
    ROLE_TAG,
)


def run_record(run: Any) -> dict[str, Any]:
    """A plain dict of an MLflow run: run_id, run_name, arch, encoding, role, exp_name,
    fingerprint, start_time, metrics (latest values)."""
    tags = dict(run.data.tags)
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "arch": tags.get(ARCH_TAG),
        "encoding": tags.get(ENCODING_TAG),
        "role": tags.get(ROLE_TAG),
        "exp_name": tags.get(EXP_NAME_TAG),
        "fingerprint": tags.get(FINGERPRINT_TAG),
        "start_time": run.info.start_time,
        "metrics": dict(run.data.metrics),
    }


def evaluated_runs(
    experiment: str, fingerprint: str, root: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Records of the evaluated runs of ``experiment`` on the data ``fingerprint`` (``all``:
    on any data); empty when tracking is off or the experiment does not exist."""
    query = f"tags.`{EVALUATED_TAG}` = 'true'"
    if fingerprint != "all":
        query += f" and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
    return [run_record(run) for run in search_runs(experiment, query, root)]


@dataclass
class EvaluatedRun:
    """The evaluated run of a run file, reopened to log the report into, and the runs it is
    compared with. Without tracking (or without a run): a no-op handle, ``record`` None,
    ``fingerprint`` of the working copy and no other runs."""

    handle: RunHandle
    run_id: str | None
    fingerprint: str
    record: dict[str, Any] | None = None
    others: list[dict[str, Any]] = field(default_factory=list)


def reopen_evaluated(
    params: Params, run_file: str | os.PathLike, root: str | os.PathLike = "."
) -> EvaluatedRun:
    """Reopen the run of ``run_file`` (written by evaluate) with its record and the evaluated
    runs on the same data (the run's own fingerprint). Raises
    :class:`pipeline.tracking.store.TrackingStoreError` when the store cannot be used."""
    run_id = read_run_file(run_file).get("run_id")
    fingerprint = data_fingerprint(root)
    if not (enabled() and run_id):
        return EvaluatedRun(RunHandle(), run_id, fingerprint)
    handle = start_run(params, root, run_id=run_id)
    run = call_with_retry(handle.client.get_run, run_id)
    fingerprint = run.data.tags.get(FINGERPRINT_TAG, fingerprint)
    others = evaluated_runs(params.mlflow.experiment, fingerprint)
    return EvaluatedRun(handle, run_id, fingerprint, run_record(run), others)


__all__ = ["EvaluatedRun", "evaluated_runs", "reopen_evaluated", "run_record"]
