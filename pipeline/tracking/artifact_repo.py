"""MLflow's ``mlflow-artifacts:`` scheme resolved without a server for a local store.

The pipeline gives its experiments the artifact location ``mlflow-artifacts:/<experiment>``
(:mod:`pipeline.tracking.store`): what ``mlflow server`` gives new experiments, and a location
that names no folder, so a moved or copied repository keeps its runs. MLflow's own
repository for the scheme needs an HTTP tracking URI, so with the default store
(``sqlite:///mlflow.db``) ``mlflow.pyfunc.load_model("models:/deepflash@champion-demo")``,
``mlflow models serve`` and ``mlflow artifacts download`` would fail without a server.

This module is registered as MLflow's artifact repository for the scheme, through MLflow's
plugin mechanism (the ``mlflow.artifact_repository`` entry point in pyproject.toml): for a
local store (SQLite database or ``file:`` folder) it reads and writes ``mlartifacts/`` beside
the database, the folder ``mlflow ui`` / ``mlflow server`` started there serve the scheme from
(their default ``--artifacts-destination ./mlartifacts``); with an HTTP tracking URI it is
MLflow's own proxied repository, unchanged. Kept free of project imports: MLflow loads it
whenever its artifact registry is imported.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

#: The folder beside the database that holds a local store's ``mlflow-artifacts:`` files.
ARTIFACTS_DIR = "mlartifacts"


def local_store_folder(tracking_uri: str) -> Path | None:
    """The folder of a local store's database or ``file:`` store (None for a server)."""
    parsed = urllib.parse.urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: the path after the third slash.
        return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path)).resolve().parent
    if parsed.scheme == "":
        return Path(tracking_uri).resolve().parent
    return None


def local_artifact_path(artifact_uri: str, tracking_uri: str) -> Path | None:
    """Where ``mlflow-artifacts:/<path>`` of the local store at ``tracking_uri`` lies on disk
    (None when ``tracking_uri`` is a server, which resolves the scheme itself)."""
    folder = local_store_folder(tracking_uri)
    if folder is None:
        return None
    rel = urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path).lstrip("/")
    return folder / ARTIFACTS_DIR / rel


def repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    """MLflow's artifact repository for ``artifact_uri`` (the plugin's factory)."""
    import mlflow
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    uri = tracking_uri or mlflow.get_tracking_uri()
    path = local_artifact_path(artifact_uri, uri)
    if path is None:
        return MlflowArtifactsRepository(artifact_uri, tracking_uri, registry_uri)
    return LocalArtifactRepository(str(path), tracking_uri=uri, registry_uri=registry_uri)


__all__ = ["ARTIFACTS_DIR", "local_artifact_path", "local_store_folder", "repository"]
