"""Evaluated runs read back from MLflow as plain records: the report's comparison, the grid's
Tables 2 and 3 and the champion alias rank them.

A run record is a plain dict (run_id, run_name, arch, encoding, role, exp_name, fingerprint,
start_time, metrics), so :mod:`pipeline.evaluation.report` ranks and tabulates records without
knowing MLflow or its tag names.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.tracking.lifecycle import RunHandle, start_run
from pipeline.tracking.meta import data_fingerprint
from pipeline.tracking.store import (
    artifact_repository,
    call_with_retry,
    client_for,
    enabled,
    read_run_file,
    search_runs,
    tracking_uri,
)
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


# Where evaluate logs metrics/per_image.csv in its run (stages/evaluate.py).
PER_IMAGE_ARTIFACT = "metrics/per_image.csv"


def per_image_tables(
    run_ids: Iterable[str], root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Run id -> the per-image scores its evaluation logged (``metrics/per_image.csv``, read
    by :func:`pipeline.io.read_csv`), for the runs that have them (runs evaluated before the
    file existed, the baseline and paper runs have not); empty when tracking is off."""
    from pipeline.io import read_csv

    if not enabled():
        return {}
    client = client_for(tracking_uri(root))
    folder = PER_IMAGE_ARTIFACT.rsplit("/", 1)[0]
    tables: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run_id in dict.fromkeys(run_ids):
            run = call_with_retry(client.get_run, run_id)
            repo = artifact_repository(str(run.info.artifact_uri), root)
            if PER_IMAGE_ARTIFACT not in {f.path for f in repo.list_artifacts(folder)}:
                continue
            target = Path(tmp) / run_id
            target.mkdir()
            tables[run_id] = read_csv(repo.download_artifacts(PER_IMAGE_ARTIFACT, str(target)))
    return tables


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


__all__ = [
    "PER_IMAGE_ARTIFACT",
    "EvaluatedRun",
    "evaluated_runs",
    "per_image_tables",
    "reopen_evaluated",
    "run_record",
]
