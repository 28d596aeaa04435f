"""An MLflow model URI where a model file is expected (``deepflash enhance --model
models:/deepflash@champion-demo``). Imports MLflow only when a URI is given: the enhance
command with a file pays nothing for it."""

from __future__ import annotations

import os
from pathlib import Path

#: Model URIs that name an MLflow model rather than a file.
MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def is_model_uri(spec: str | os.PathLike) -> bool:
    """True when ``spec`` is an MLflow model URI rather than a path."""
    return str(spec).startswith(MODEL_URI_SCHEMES)


def download_model_file(uri: str, dst: str | os.PathLike, tracking_uri: str | None = None) -> Path:
    """Download the pyfunc model at ``uri`` (from the store at ``tracking_uri``, default the
    repository's, :func:`pipeline.tracking.store.tracking_uri`) into ``dst`` and return its
    project model file, the ``model_file`` artifact its MLmodel names (the checksum is checked
    where the file is loaded). Raises ``mlflow.exceptions.MlflowException`` for an unknown
    model, version or alias, ``ValueError`` for an MLflow model that holds no model file."""
    import mlflow.artifacts
    from mlflow.models import Model

    from pipeline.tracking.pyfunc import MODEL_ARTIFACT
    from pipeline.tracking.store import tracking_uri as default_uri

    uri_of_store = tracking_uri or default_uri()
    folder = Path(
        mlflow.artifacts.download_artifacts(
            uri, dst_path=str(dst), tracking_uri=uri_of_store, registry_uri=uri_of_store
        )
    )
    if not (folder / "MLmodel").is_file():
        raise ValueError(f"{uri} is not an MLflow model (no MLmodel file)")
    flavor = Model.load(str(folder / "MLmodel")).flavors.get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get(MODEL_ARTIFACT)
    if not entry:
        raise ValueError(f"{uri} is an MLflow model without a DeepFlash model file")
    return folder / entry["path"]


__all__ = ["MODEL_URI_SCHEMES", "download_model_file", "is_model_uri"]
