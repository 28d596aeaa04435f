"""Where the pipeline's MLflow data lives: tracking URI, store lock and retries, the
experiment (a model-training experiment), artifact locations that name no folder, run files.

- Tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db``
  with the repo root taken from ``$DVC_ROOT``. DVC sets it for every stage and, for ``dvc exp
  run`` (workspace, ``--temp``, ``--queue``), points it at the parent repo rather than the
  temporary copy, so queued experiments land in the main repo's database.
- Experiment: tagged ``mlflow.experimentKind = custom_model_development``, MLflow 3's marker
  of a model-training experiment.
- Artifacts of a local store use MLflow's proxied scheme ``mlflow-artifacts:/<experiment>/...``
  (what ``mlflow server`` gives new experiments): ``mlflow ui`` started at the repo root
  serves it from its default ``--artifacts-destination ./mlartifacts``, and without a server
  it is ``mlartifacts/`` beside the database (:mod:`pipeline.tracking.artifact_repo`, also
  MLflow's own resolver of the scheme through its plugin entry point). ``mlflow.db`` holds no
  machine path, so a moved or copied repository keeps working; a store of an older version
  whose experiment points at a folder outside this repository is refused
  (:class:`TrackingStoreError`).
- Concurrency (``dvc queue start -j 2``): SQLite lets one writer in and fails the other with
  "database is locked" after 5 s; :func:`call_with_retry` retries with backoff and jitter, and
  a new database is created (MLflow's migrations are not safe twice at once) under
  :func:`store_lock`. Many writers: one ``mlflow server`` and ``MLFLOW_TRACKING_URI=http://...``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from pipeline.io import read_json, write_json
from pipeline.tracking.artifact_repo import ARTIFACTS_DIR
from pipeline.tracking.tags import KIND_TAG

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_SWITCH = "DEEPFLASH_MLFLOW"
DB_NAME = "mlflow.db"
ARTIFACTS_SCHEME = "mlflow-artifacts:"
KIND = "custom_model_development"


class TrackingStoreError(RuntimeError):
    """The MLflow store cannot be used from this repository (the message says why and how)."""


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


def portable_uri(uri: str | None) -> str | None:
    """``uri`` as written into DVC outputs: the repo's own store as ``sqlite:///mlflow.db``
    (relative, as typed for ``mlflow ui``), so no machine path is committed."""
    if uri and uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        return f"sqlite:///{DB_NAME}"
    return uri


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


def artifact_repository(uri: str, root: str | os.PathLike | None = None) -> Any:
    """The MLflow artifact repository of an artifact URI (a run's or a logged model's).

    ``mlflow-artifacts:/<path>`` of a local store resolves to ``mlartifacts/<path>`` beside its
    database (:mod:`pipeline.tracking.artifact_repo`, the same plugin MLflow's own tools use);
    any other URI goes to MLflow's own resolver.
    """
    if uri.startswith(ARTIFACTS_SCHEME):
        from pipeline.tracking import artifact_repo

        return artifact_repo.repository(uri, tracking_uri(root))
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri)


def store_lock(uri: str) -> AbstractContextManager[Any]:
    """Inter-process lock next to a SQLite database (a no-op context for other stores)."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock", timeout=600)


# Seconds to wait for a tracking server's TCP handshake: a listening server answers in
# milliseconds; MLflow's own HTTP retries (7 with backoff) take minutes to give up.
PROBE_TIMEOUT = 5.0


def check_reachable(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise :class:`TrackingStoreError` (one line naming ``uri``) when ``uri`` is an HTTP(S)
    tracking server that accepts no connection within ``timeout`` seconds; nothing for a local
    store. Run before MLflow's client, whose retries of a refused connection last ~4 minutes."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or error.__class__.__name__
        raise TrackingStoreError(
            f"MLflow tracking server {uri} unreachable ({reason}): start it or unset "
            "MLFLOW_TRACKING_URI to use the repository's own mlflow.db"
        ) from None


def client_for(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``; creating a new SQLite database is done under a file
    lock because MLflow's schema migrations fail when two processes run them at once. A
    server that is down raises :class:`TrackingStoreError` at once (:func:`check_reachable`)."""
    check_reachable(uri)
    from mlflow import MlflowClient

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        # The store (and its tables) is created lazily: touch it while holding the lock.
        call_with_retry(client.search_experiments, max_results=1)
    return client


def check_artifact_location(experiment: Any, uri: str, root: str | os.PathLike | None) -> None:
    """Raise :class:`TrackingStoreError` when ``experiment`` keeps its artifacts in a local
    folder outside this repository: the store was made in another folder (a copied or moved
    repository whose mlflow.db predates the ``mlflow-artifacts:`` locations)."""
    location = experiment.artifact_location or ""
    if not is_local_store(uri) or not (location.startswith("file:") or location.startswith("/")):
        return
    from mlflow.utils.file_utils import local_file_uri_to_path

    folder = Path(local_file_uri_to_path(location)).resolve()
    here = repo_root(root)
    if folder == here or here in folder.parents:
        return
    raise TrackingStoreError(
        f"{uri.removeprefix('sqlite:///')}: this MLflow store belongs to another folder: its "
        f"experiment {experiment.name!r} keeps artifacts in {folder}, outside this repository "
        f"({here}). Move mlflow.db (and mlartifacts/) out of this repository to start a fresh "
        "store here, or set MLFLOW_TRACKING_URI to the store of the original folder."
    )


def get_experiment_id(
    client: Any, uri: str, name: str, root: str | os.PathLike | None = None
) -> str:
    """Id of experiment ``name`` at ``uri``, created when missing: marked as a model-training
    experiment, artifacts at ``mlflow-artifacts:/<name>`` for a local store (a server picks
    its own default). Raises :class:`TrackingStoreError` for a store of another folder."""
    experiment = call_with_retry(client.get_experiment_by_name, name)
    if experiment is None:
        location = None
        if is_local_store(uri):
            location = f"{ARTIFACTS_SCHEME}/{urllib.parse.quote(name, safe='')}"
        try:
            return call_with_retry(
                client.create_experiment, name, artifact_location=location, tags={KIND_TAG: KIND}
            )
        except Exception as error:
            # Another process created it between our lookup and our create.
            experiment = call_with_retry(client.get_experiment_by_name, name)
            if experiment is None:
                raise TrackingStoreError(
                    f"MLflow: cannot create experiment {name!r} at {uri}: {error}"
                ) from error
    check_artifact_location(experiment, uri, root)
    if experiment.tags.get(KIND_TAG) != KIND:
        call_with_retry(client.set_experiment_tag, experiment.experiment_id, KIND_TAG, KIND)
    return experiment.experiment_id


def write_run_file(path: str | os.PathLike, handle: Any) -> Path:
    """Write a ``RunHandle``'s ``{run_id, experiment_id, tracking_uri}`` atomically (nulls
    when tracking is off); the repo's own store as ``sqlite:///mlflow.db`` (:func:`portable_uri`)."""
    return write_json(
        path,
        {
            "run_id": handle.run_id,
            "experiment_id": handle.experiment_id,
            "tracking_uri": portable_uri(handle.tracking_uri),
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


__all__ = [
    "ARTIFACTS_DIR",
    "ARTIFACTS_SCHEME",
    "DB_NAME",
    "ENV_SWITCH",
    "KIND",
    "PROBE_TIMEOUT",
    "TrackingStoreError",
    "artifact_repository",
    "call_with_retry",
    "check_artifact_location",
    "check_reachable",
    "client_for",
    "enabled",
    "get_experiment_id",
    "is_local_store",
    "is_lock_error",
    "portable_uri",
    "read_run_file",
    "repo_root",
    "search_runs",
    "store_lock",
    "tracking_uri",
    "write_run_file",
]
