"""MLflow conventions of the pipeline (README, "Tracking").

One DVC experiment = one MLflow run: the train stage starts it, evaluate and report log
into the same run (they find it through ``models/mlflow_run.json``).

- Tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db``
  with the repo root taken from ``$DVC_ROOT``. DVC sets ``DVC_ROOT`` for every stage
  (``dvc/stage/run.py``) and, for ``dvc exp run`` (workspace, ``--temp`` and ``--queue``),
  also ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV``, with ``DVC_ROOT`` pointing at the
  parent repo rather than the temporary copy (``dvc/repo/experiments/queue/base.py``):
  so queued experiments land in the main repo's database, not in a copy that is deleted.
- Experiment: ``params.mlflow.experiment``; artifacts of a local (sqlite) store go to
  ``<repo root>/mlartifacts/<experiment id>`` (an absolute path, for the same reason).
- Run name: ``$DVC_EXP_NAME``, else the caller's name, else ``<arch>-<encoding>``.
- Tags: dvc.exp_name, dvc.baseline_rev, git.commit, data.fingerprint, model.arch,
  loss.encoding, role. Params: params.yaml flattened.

Concurrency (``dvc queue start -j 2``): two processes write the same SQLite file. SQLite
serialises writers with a file lock; a writer waits up to 5 s (sqlite3's default timeout)
and then fails with "database is locked". Every MLflow call here is retried with
exponential backoff and jitter on that error (:func:`call_with_retry`), and creating the
database (MLflow's schema migrations, which are not safe to run twice at once) happens
under an inter-process file lock next to the database. Many parallel writers (or several
machines): run one ``mlflow server --backend-store-uri sqlite:///mlflow.db`` as the single
writer and export ``MLFLOW_TRACKING_URI=http://127.0.0.1:5000``; the code is the same.

Set ``DEEPFLASH_MLFLOW=0`` to switch tracking off (tests of other modules): every call
then returns a no-op handle and MLflow is not even imported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.config import Params, flatten
from pipeline.io import read_json, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_SWITCH = "DEEPFLASH_MLFLOW"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# Set by evaluate when it has logged its metrics: a later evaluation of the same trained
# model (say, other evaluate params) then gets a run of its own instead of overwriting.
EVALUATED_TAG = "deepflash.evaluated"
TRAIN_RUN_TAG = "deepflash.train_run_id"
_PARAM_VALUE_MAX = 6000  # MLflow's limit on a param value's length
_BATCH = 100  # MLflow's limit on params per log_batch call


def enabled() -> bool:
    """False when ``$DEEPFLASH_MLFLOW`` is 0/false/off/no (tracking switched off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def repo_root(default: str | os.PathLike | None = None) -> Path:
    """The main repository root: ``$DVC_ROOT`` when DVC sets it, else ``default`` or the cwd."""
    env = os.environ.get("DVC_ROOT")
    return Path(env or default or Path.cwd()).resolve()


def tracking_uri(root: str | os.PathLike | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{repo_root(root) / DB_NAME}"


def is_local_store(uri: str) -> bool:
    """True for a store on this machine (sqlite file or ./mlruns folder), not an HTTP server."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def is_lock_error(error: BaseException) -> bool:
    """True for SQLite's transient "database is locked" / "busy" errors, however wrapped."""
    text = f"{error.__class__.__name__}: {error}".lower()
    return "database is locked" in text or "database is busy" in text or "sqlite_busy" in text


def call_with_retry(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 12,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    **kwargs: Any,
) -> T:
    """Call ``fn`` and retry with exponential backoff and jitter on "database is locked".

    Any other error is raised at once. The last lock error is raised when ``attempts`` run out
    (about a minute of waiting with the defaults, on top of SQLite's own 5 s per attempt).
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # MLflow wraps sqlite3/SQLAlchemy errors in its own types
            if not is_lock_error(error) or attempt == attempts - 1:
                raise
            # Jitter so that two queued experiments do not retry in lock-step.
            delay = min(max_delay, base_delay * 2**attempt) * (0.5 + random.random())
            log.warning("MLflow store busy (%s); retry %d in %.1f s", error, attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """HEAD commit of the git repository at ``cwd`` ("" when not a git repository)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def data_fingerprint(root: str | os.PathLike = ".") -> str:
    """Short hash of the data a model saw: the manifest, the processed index and the
    names and sizes of the processed files (stat only: cheap even for the paper's 20k files).

    Runs with the same fingerprint were trained and evaluated on the same data, so their
    metrics can be compared. Missing files hash as absent (a fingerprint is always returned).
    """
    root = Path(root)
    digest = hashlib.sha256()
    for rel in ("data/interim/manifest.csv", "data/processed/index.csv"):
        path = root / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    processed = root / "data" / "processed"
    if processed.is_dir():
        for path in sorted(p for p in processed.rglob("*") if p.is_file()):
            digest.update(
                f"{path.relative_to(processed).as_posix()}:{path.stat().st_size};".encode()
            )
    return digest.hexdigest()[:16]


def _param_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text[:_PARAM_VALUE_MAX]


def run_tags(
    params: Params,
    root: str | os.PathLike = ".",
    fingerprint: str | None = None,
) -> dict[str, str]:
    """The tags of a run started in the working copy ``root``."""
    commit = git_commit(root)
    return {
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", commit),
        "git.commit": commit,
        "data.fingerprint": fingerprint or data_fingerprint(root),
        "model.arch": params.model.arch,
        "loss.encoding": params.loss.encoding,
        "role": params.mlflow.role,
    }


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

    @property
    def active(self) -> bool:
        """True when this handle logs somewhere."""
        return self.run_id is not None and self.client is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        return call_with_retry(getattr(self.client, method), *args, **kwargs)

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Log params (values stringified, MLflow's 6000-character limit applied)."""
        if not self.active or not values:
            return
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in values.items()]
        for i in range(0, len(items), _BATCH):
            self._call("log_batch", self.run_id, params=items[i : i + _BATCH])

    def log_metrics(
        self, metrics: Mapping[str, float | int | None], step: int | None = None
    ) -> None:
        """Log numeric metrics at ``step`` (None values and non-numbers are skipped)."""
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, int(step or 0))
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

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a file, or a folder's contents, into the run's artifacts (missing: skipped)."""
        if not self.active:
            return
        path = Path(path)
        if path.is_dir():
            self._call("log_artifacts", self.run_id, str(path), artifact_path or path.name)
        elif path.is_file():
            self._call("log_artifact", self.run_id, str(path), artifact_path)
        else:
            log.warning("artifact %s not found; not logged", path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. "report/report.md")."""
        self._call("log_text", self.run_id, text, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED (or FAILED / KILLED)."""
        self._call("set_terminated", self.run_id, status)

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end("FAILED" if exc_type is not None else "FINISHED")


def _file_lock(uri: str) -> Any:
    """Inter-process lock next to a SQLite database (a no-op context for other stores)."""
    from contextlib import nullcontext

    if not uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock", timeout=600)


def client_for(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``; creating a new SQLite database is done under a file
    lock because MLflow's schema migrations fail when two processes run them at once."""
    from mlflow import MlflowClient

    with _file_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        # The store (and its tables) is created lazily: touch it while holding the lock.
        call_with_retry(client.search_experiments, max_results=1)
    return client


def get_experiment_id(
    client: Any, uri: str, name: str, root: str | os.PathLike | None = None
) -> str:
    """Id of experiment ``name`` at ``uri``, created when missing (artifacts under
    <repo root>/mlartifacts/<name> for a local store, so that temp-dir experiments do not
    write their artifacts into a copy that DVC deletes)."""
    experiment = call_with_retry(client.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if is_local_store(uri):
        location = (repo_root(root) / ARTIFACTS_DIR / name).as_uri()
    try:
        return call_with_retry(client.create_experiment, name, artifact_location=location)
    except Exception as error:
        # Another process created it between our lookup and our create.
        experiment = call_with_retry(client.get_experiment_by_name, name)
        if experiment is None:
            raise RuntimeError(
                f"MLflow: cannot create experiment {name!r} at {uri}: {error}"
            ) from error
        return experiment.experiment_id


def start_run(
    params: Params,
    repo_root: str | os.PathLike = ".",
    run_name: str | None = None,
    run_id: str | None = None,
    *,
    extra_tags: Mapping[str, Any] | None = None,
) -> RunHandle:
    """Start the pipeline's MLflow run, or reopen ``run_id`` (a training resumed after a crash).

    ``repo_root`` is the working copy the stage runs in (where data/ lies: the data
    fingerprint is computed there); the tracking URI uses ``$DVC_ROOT`` first. A new run gets
    the flattened params and the pipeline's tags; a reopened one only its status back to
    RUNNING (params cannot change within a run). Returns a no-op handle when not :func:`enabled`.
    """
    if not enabled():
        return RunHandle()
    uri = tracking_uri(repo_root)
    client = client_for(uri)
    if run_id:
        handle = _reopen(client, uri, run_id)
        if handle is not None:
            return handle
        log.warning("MLflow run %s not found at %s: starting a new run", run_id, uri)
    experiment_id = get_experiment_id(client, uri, params.mlflow.experiment, repo_root)
    name = (
        os.environ.get("DVC_EXP_NAME") or run_name or f"{params.model.arch}-{params.loss.encoding}"
    )
    tags = run_tags(params, repo_root)
    tags.update({k: str(v) for k, v in (extra_tags or {}).items()})
    run = call_with_retry(client.create_run, experiment_id, run_name=name, tags=tags)
    handle = RunHandle(run.info.run_id, experiment_id, uri, client)
    handle.log_params(flatten(params))
    return handle


def _reopen(client: Any, uri: str, run_id: str) -> RunHandle | None:
    try:
        run = call_with_retry(client.get_run, run_id)
    except Exception as error:
        if is_lock_error(error):
            raise
        return None
    if run.info.lifecycle_stage != "active":
        return None
    call_with_retry(client.update_run, run_id, status="RUNNING")
    return RunHandle(run_id, run.info.experiment_id, uri, client)


def write_run_file(path: str | os.PathLike, handle: RunHandle) -> Path:
    """Write ``{run_id, experiment_id, tracking_uri}`` (nulls when tracking is off), atomically."""
    return write_json(
        path,
        {
            "run_id": handle.run_id,
            "experiment_id": handle.experiment_id,
            "tracking_uri": handle.tracking_uri,
        },
    )


def read_run_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run file; a missing file reads as all nulls (tracking was off or train skipped)."""
    path = Path(path)
    if not path.is_file():
        return {"run_id": None, "experiment_id": None, "tracking_uri": None}
    data = read_json(path)
    if not isinstance(data, dict) or "run_id" not in data:
        raise ValueError(
            f"{path}: not a run file (expected keys run_id, experiment_id, tracking_uri)"
        )
    return data


def continue_run(
    run_file: str | os.PathLike,
    params: Params,
    repo_root: str | os.PathLike = ".",
    run_name: str | None = None,
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
    uri = tracking_uri(repo_root)
    if not info.get("run_id"):
        return start_run(params, repo_root, run_name)
    client = client_for(uri)
    try:
        run = call_with_retry(client.get_run, info["run_id"])
    except Exception as error:
        if is_lock_error(error):
            raise
        log.warning("training run %s not in %s: starting a new run", info["run_id"], uri)
        return start_run(params, repo_root, run_name)
    if run.data.tags.get(EVALUATED_TAG) != "true" and run.info.lifecycle_stage == "active":
        call_with_retry(client.update_run, run.info.run_id, status="RUNNING")
        return RunHandle(run.info.run_id, run.info.experiment_id, uri, client)
    return _fork(client, uri, run, params, repo_root, run_name)


def _fork(
    client: Any,
    uri: str,
    source: Any,
    params: Params,
    root: str | os.PathLike,
    run_name: str | None,
) -> RunHandle:
    keep = {
        k: v
        for k, v in source.data.tags.items()
        if not k.startswith("mlflow.") and k != EVALUATED_TAG
    }
    keep.update(run_tags(params, root, source.data.tags.get("data.fingerprint")))
    keep[TRAIN_RUN_TAG] = source.info.run_id
    name = os.environ.get("DVC_EXP_NAME") or run_name or f"{source.info.run_name}-eval"
    run = call_with_retry(client.create_run, source.info.experiment_id, run_name=name, tags=keep)
    handle = RunHandle(run.info.run_id, source.info.experiment_id, uri, client)
    handle.log_params(flatten(params))
    from mlflow.entities import Metric

    history: list[Metric] = []
    for key in source.data.metrics:
        history += call_with_retry(client.get_metric_history, source.info.run_id, key)
    for i in range(0, len(history), 1000):
        handle._call("log_batch", handle.run_id, metrics=history[i : i + 1000])
    _copy_artifacts(client, source.info.run_id, handle)
    return handle


# Written again by evaluate / report, or too big to duplicate (the model file).
_NOT_COPIED = {"samples", "metrics", "report", "params.yaml", "model"}


def _copy_artifacts(client: Any, source_id: str, handle: RunHandle) -> None:
    """Copy the training run's own artifacts (train.csv, train.json, ...) into a forked run."""
    import tempfile

    for item in call_with_retry(client.list_artifacts, source_id):
        if item.path in _NOT_COPIED:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            local = call_with_retry(client.download_artifacts, source_id, item.path, tmp)
            parent = str(Path(item.path).parent)
            handle.log_artifact(local, None if parent == "." else parent)


def search_runs(
    experiment: str,
    filter_string: str = "",
    root: str | os.PathLike | None = None,
    max_results: int = 5000,
) -> list[Any]:
    """Active runs of ``experiment`` matching an MLflow filter (empty when it does not exist)."""
    if not enabled():
        return []
    client = client_for(tracking_uri(root))
    experiment_obj = call_with_retry(client.get_experiment_by_name, experiment)
    if experiment_obj is None:
        return []
    return list(
        call_with_retry(
            client.search_runs,
            [experiment_obj.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
        )
    )


def log_files(
    handle: RunHandle, paths: Iterable[str | os.PathLike], artifact_path: str | None = None
) -> None:
    """Log each existing path of ``paths`` as an artifact (missing ones are skipped quietly)."""
    for path in paths:
        if Path(path).exists():
            handle.log_artifact(path, artifact_path)


__all__ = [
    "ARTIFACTS_DIR",
    "EVALUATED_TAG",
    "RunHandle",
    "TRAIN_RUN_TAG",
    "call_with_retry",
    "client_for",
    "continue_run",
    "data_fingerprint",
    "enabled",
    "get_experiment_id",
    "git_commit",
    "is_lock_error",
    "log_files",
    "read_run_file",
    "repo_root",
    "run_tags",
    "search_runs",
    "start_run",
    "tracking_uri",
    "write_run_file",
]
