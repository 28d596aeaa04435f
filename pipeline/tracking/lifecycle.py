"""The run lifecycle in MLflow (README, "Experiments and MLflow"): start, reopen, continue
or fork a run, and the run file that hands it from stage to stage.

One DVC experiment = one MLflow run: the train stage starts it, evaluate and report log
into the same run (they find it through ``models/mlflow_run.json``); evaluating a trained
model again forks a new run. Every MLflow call is retried on SQLite's "database is locked"
(``dvc queue start -j 2``: two writers of one file).

Siblings: :mod:`pipeline.tracking.store` (tracking URI, the model-training experiment,
artifact locations that survive moving the repository, run files, search),
:mod:`pipeline.tracking.meta` (run name, MLflow's source/commit/description tags, the
dataset input), :mod:`pipeline.tracking.tags` (every tag name). Set ``DEEPFLASH_MLFLOW=0`` to
switch tracking off: every call then returns a no-op handle and MLflow is not even imported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten
from pipeline.tracking.meta import (
    DatasetInfo,
    data_fingerprint,
    dataset_info,
    describe,
    run_name,
    run_tags,
)
from pipeline.tracking.store import (
    artifact_repository,
    call_with_retry,
    client_for,
    enabled,
    get_experiment_id,
    is_lock_error,
    read_run_file,
    repo_root,
    tracking_uri,
)
from pipeline.tracking.tags import (
    EVALUATED_TAG,
    FINGERPRINT_TAG,
    MLFLOW_PREFIX,
    NOTE_TAG,
    TRAIN_RUN_TAG,
)

log = logging.getLogger(__name__)

_PARAM_VALUE_MAX = 6000  # MLflow's limit on a param value's length
_BATCH = 100  # MLflow's limit on params per log_batch call


def _param_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text[:_PARAM_VALUE_MAX]


@dataclass
class RunHandle:
    """An open MLflow run (or a no-op one when tracking is off: ``run_id`` is None).

    Every call is retried on SQLite lock errors. Usable as a context manager: the run ends
    FINISHED, or FAILED when the block raises.
    """

    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    client: Any = field(default=None, repr=False)
    artifact_uri: str | None = None
    root: Path | None = None

    @property
    def active(self) -> bool:
        """True when this handle logs somewhere."""
        return self.run_id is not None and self.client is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        return call_with_retry(getattr(self.client, method), *args, **kwargs)

    def artifacts(self) -> Any:
        """The run's artifact repository (:func:`artifact_repository`)."""
        return artifact_repository(str(self.artifact_uri), self.root)

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Log params (values stringified, MLflow's 6000-character limit applied)."""
        if not self.active or not values:
            return
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in values.items()]
        for i in range(0, len(items), _BATCH):
            self._call("log_batch", self.run_id, params=items[i : i + _BATCH])

    def log_metrics(
        self,
        metrics: Mapping[str, float | int | None],
        step: int | None = None,
        *,
        model_id: str | None = None,
        dataset: DatasetInfo | None = None,
    ) -> None:
        """Log numeric metrics at ``step`` (None values and non-numbers are skipped); with
        ``model_id`` (and the dataset they were measured on) they are the logged model's too."""
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        link = {}
        if model_id:
            link = {"model_id": model_id}
            if dataset is not None:
                link.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        items = [
            Metric(str(k), float(v), now, int(step or 0), **link)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        for i in range(0, len(items), 1000):  # MLflow's limit per batch
            self._call("log_batch", self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values stringified)."""
        if not self.active:
            return
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _param_value(v)) for k, v in tags.items()]
        if items:
            self._call("log_batch", self.run_id, tags=items)

    def log_dataset(self, dataset: DatasetInfo, context: str = "training") -> None:
        """Log ``dataset`` as the run's MLflow dataset input (the runs table's Dataset column)."""
        self._call("log_inputs", self.run_id, datasets=[dataset.input(context)])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a file, or a folder's contents, into the run's artifacts (missing: skipped)."""
        if not self.active:
            return
        path = Path(path)
        if path.is_dir():
            self.artifacts().log_artifacts(str(path), artifact_path or path.name)
        elif path.is_file():
            self.artifacts().log_artifact(str(path), artifact_path)
        else:
            log.warning("artifact %s not found; not logged", path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. "report/report.md")."""
        if not self.active:
            return
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(artifact_file).name
            local.write_text(text)
            parent = Path(artifact_file).parent.as_posix()
            self.artifacts().log_artifact(str(local), None if parent == "." else parent)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED (or FAILED / KILLED)."""
        self._call("set_terminated", self.run_id, status)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("FAILED" if exc_type is not None else "FINISHED")


def _handle(client: Any, uri: str, run: Any, root: str | os.PathLike | None) -> RunHandle:
    return RunHandle(
        run.info.run_id, run.info.experiment_id, uri, client, run.info.artifact_uri, repo_root(root)
    )


def open_store(params: Params, root: str | os.PathLike = ".") -> tuple[Any, str, str]:
    """``(client, uri, experiment id)`` of the pipeline's experiment; raises
    :class:`TrackingStoreError` early (before any work) when the store cannot be used."""
    uri = tracking_uri(root)
    client = client_for(uri)
    return client, uri, get_experiment_id(client, uri, params.mlflow.experiment, root)


def preflight(params: Params, root: str | os.PathLike = ".") -> None:
    """Open the store once before a stage's work (process of rank 0 only; nothing when
    tracking is off): raises :class:`TrackingStoreError` when it cannot be used."""
    if enabled() and os.environ.get("RANK", "0") == "0":
        open_store(params, root)


def start_run(
    params: Params,
    root: str | os.PathLike = ".",
    name: str | None = None,
    run_id: str | None = None,
    *,
    extra_tags: Mapping[str, Any] | None = None,
) -> RunHandle:
    """Start the pipeline's MLflow run, or reopen ``run_id`` (a training resumed after a crash).

    ``root`` is the working copy the stage runs in (where data/ lies: the data
    fingerprint is computed there); the tracking URI uses ``$DVC_ROOT`` first. A new run gets
    its name, tags, description, dataset input and the flattened params; a reopened one only
    its status back to RUNNING. Returns a no-op handle when not :func:`enabled`.
    """
    if not enabled():
        return RunHandle()
    client, uri, experiment_id = open_store(params, root)
    if run_id:
        handle = _reopen(client, uri, run_id, root)
        if handle is not None:
            return handle
        log.warning("MLflow run %s not found at %s: starting a new run", run_id, uri)
    return _create(client, uri, experiment_id, params, root, name, extra_tags or {})


def _create(
    client: Any,
    uri: str,
    experiment_id: str,
    params: Params,
    root: str | os.PathLike,
    name: str | None,
    extra_tags: Mapping[str, Any],
    *,
    base_tags: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
    context: str = "training",
) -> RunHandle:
    """A new run: ``base_tags``, then the pipeline's tags and description, then ``extra_tags``."""
    data = dataset_info(params, root, fingerprint)
    tags = {k: str(v) for k, v in (base_tags or {}).items()}
    tags.update(run_tags(params, root, data.digest, dataset=data.name))
    tags[NOTE_TAG] = describe(params, data)
    tags.update({k: str(v) for k, v in extra_tags.items()})
    run = call_with_retry(
        client.create_run,
        experiment_id,
        run_name=name or run_name(params, data.name),
        tags=tags,
    )
    handle = _handle(client, uri, run, root)
    handle.log_params(flatten(params))
    handle.log_dataset(data, context)
    return handle


def _reopen(client: Any, uri: str, run_id: str, root: str | os.PathLike) -> RunHandle | None:
    try:
        run = call_with_retry(client.get_run, run_id)
    except Exception as error:
        if is_lock_error(error):
            raise
        return None
    if run.info.lifecycle_stage != "active":
        return None
    call_with_retry(client.update_run, run_id, status="RUNNING")
    return _handle(client, uri, run, root)


def continue_run(
    run_file: str | os.PathLike,
    params: Params,
    root: str | os.PathLike = ".",
    name: str | None = None,
) -> RunHandle:
    """The run to log an evaluation into: the training run of ``run_file`` when it has not
    been evaluated yet (train + evaluate = one run), otherwise a new run that copies the
    training run's params, tags and metric history (tag ``deepflash.train_run_id``), so that
    evaluating the same model again with other settings never overwrites an earlier result.
    Without a usable run file a new run is started.
    """
    if not enabled():
        return RunHandle()
    info = read_run_file(run_file)
    if not info.get("run_id"):
        return start_run(params, root, name)
    client, uri, _ = open_store(params, root)
    try:
        run = call_with_retry(client.get_run, info["run_id"])
    except Exception as error:
        if is_lock_error(error):
            raise
        log.warning("training run %s not in %s: starting a new run", info["run_id"], uri)
        return start_run(params, root, name)
    if run.data.tags.get(EVALUATED_TAG) != "true" and run.info.lifecycle_stage == "active":
        call_with_retry(client.update_run, run.info.run_id, status="RUNNING")
        return _handle(client, uri, run, root)
    return _fork(client, uri, run, params, root, name)


def _fork(
    client: Any,
    uri: str,
    source: Any,
    params: Params,
    root: str | os.PathLike,
    name: str | None,
) -> RunHandle:
    keep = {
        k: v
        for k, v in source.data.tags.items()
        if not k.startswith(MLFLOW_PREFIX) and k != EVALUATED_TAG
    }
    fingerprint = source.data.tags.get(FINGERPRINT_TAG) or data_fingerprint(root)
    data = dataset_info(params, root, fingerprint)
    handle = _create(
        client,
        uri,
        source.info.experiment_id,
        params,
        root,
        name or f"{run_name(params, data.name)} re-evaluated",
        {TRAIN_RUN_TAG: source.info.run_id},
        base_tags=keep,
        fingerprint=fingerprint,
        context="evaluation",
    )
    from mlflow.entities import Metric

    history: list[Metric] = []
    for key in source.data.metrics:
        history += call_with_retry(client.get_metric_history, source.info.run_id, key)
    for i in range(0, len(history), 1000):
        handle._call("log_batch", handle.run_id, metrics=history[i : i + 1000])
    _copy_artifacts(artifact_repository(source.info.artifact_uri, root), handle)
    return handle


# Written again by evaluate / report, or too big to duplicate (the model file).
_NOT_COPIED = {"samples", "metrics", "report", "params.yaml", "model"}


def _copy_artifacts(source: Any, handle: RunHandle) -> None:
    """Copy the training run's own artifacts (train.csv, train.json, ...) into a forked run."""
    import tempfile

    for item in call_with_retry(source.list_artifacts):
        if item.path in _NOT_COPIED:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            local = call_with_retry(source.download_artifacts, item.path, tmp)
            parent = str(Path(item.path).parent)
            handle.log_artifact(local, None if parent == "." else parent)
