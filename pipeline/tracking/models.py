"""The trained model in MLflow: a logged pyfunc model holding ``models/model.pt``, linked to its
run and its metrics, registered per arch, with an alias on the best version per dataset.

MLflow 3's model conventions, through its client API:

- a *logged model* (``create_logged_model``) named ``<arch>-<encoding>``, its source run the
  evaluated run, its artifacts an MLflow pyfunc model folder (:mod:`pipeline.tracking.pyfunc`:
  MLmodel with signature and input example, our model file, the code), recorded as the run's output
  (``log_outputs``); the evaluation metrics of the model are logged with its ``model_id`` and
  the dataset (name and digest), so ``search_logged_models`` and the model page list them;
- a *registered model* per arch (:func:`registered_model_name`: ``deepflash`` for the paper's
  network, ``deepflash-hdrnet`` and ``deepflash-pix2pix`` for the baselines), one version per
  evaluated model (source ``models:/<model_id>``), the logged model tagged
  ``mlflow.modelVersions`` as MLflow's own ``register_model`` does;
- the alias ``champion-<dataset>`` on the version whose run ranks first on that dataset (the
  report's rank: validation SSIM vs the raw ground truth, then test, then train).

The project's own model file stays what ``deepflash enhance`` loads; MLflow keeps a copy so
that the champion (``models:/deepflash@champion-demo``) loads with ``mlflow.pyfunc.load_model``,
serves with ``mlflow models serve`` and is what ``deepflash enhance --model`` takes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten
from pipeline.evaluation.report import rank_value
from pipeline.evaluation.results import flat_metrics
from pipeline.tracking.lifecycle import RunHandle
from pipeline.tracking.meta import DatasetInfo, alias_token
from pipeline.tracking.records import run_record
from pipeline.tracking.store import artifact_repository, call_with_retry, store_lock
from pipeline.tracking.tags import (
    ARCH_TAG,
    DATASET_TAG,
    ENCODING_TAG,
    FINGERPRINT_TAG,
    MODEL_VERSIONS_TAG,
)

log = logging.getLogger(__name__)

PROJECT = "deepflash"
# Params that define the network a model file holds (the logged model's params).
_MODEL_GROUPS = ("data.", "model.", "loss.", "bilateral.")


def registered_model_name(arch: str) -> str:
    """The registry name of an arch: the paper's network is ``deepflash``, the baselines
    trained by this project ``deepflash-<arch>``."""
    return PROJECT if arch == PROJECT else f"{PROJECT}-{arch}"


def champion_alias(dataset: str) -> str:
    """The alias of the best version on ``dataset``: ``champion-<dataset>``."""
    return f"champion-{alias_token(dataset)}"


def model_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation metrics that describe the model (``eval.<split>.<scope>.model.<m>``);
    the baselines' metrics stay on the run only."""
    return {k: v for k, v in flat_metrics(results).items() if k.split(".")[3:4] == ["model"]}


@dataclass(frozen=True)
class Registered:
    """What :func:`log_model` recorded: the logged model, its registry version, the champion."""

    model_id: str
    name: str
    version: str
    alias: str
    champion_version: str


@contextmanager
def _global_uri(uri: str) -> Iterator[None]:
    # MLflow's SQL registry resolves a `models:/<model_id>` source through the global tracking
    # URI (not the client's): point it at our store while a version is created. MLflow mirrors
    # the global URI into $MLFLOW_TRACKING_URI: restore that variable exactly (unset stays unset).
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def log_model(
    handle: RunHandle,
    model_file: str | os.PathLike,
    params: Params,
    results: Mapping[str, Any],
    dataset: DatasetInfo,
) -> Registered | None:
    """Log ``model_file`` as an MLflow logged model of the run with the model's evaluation
    metrics, register it and move the dataset's champion alias. None when tracking is off."""
    if not handle.active:
        return None
    client = handle.client
    arch, encoding = params.model.arch, params.loss.encoding
    tags = {
        ARCH_TAG: arch,
        ENCODING_TAG: encoding,
        DATASET_TAG: dataset.name,
        FINGERPRINT_TAG: dataset.digest,
    }
    model = call_with_retry(
        client.create_logged_model,
        handle.experiment_id,
        name=f"{arch}-{encoding}",
        source_run_id=handle.run_id,
        tags=tags,
        params={k: str(v) for k, v in flatten(params).items() if k.startswith(_MODEL_GROUPS)},
        model_type=arch,
    )
    import tempfile

    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    from pipeline.tracking.pyfunc import save_pyfunc

    with tempfile.TemporaryDirectory(prefix="deepflash-model-") as tmp:
        folder = save_pyfunc(model_file, Path(tmp) / "model")
        artifact_repository(model.artifact_location, handle.root).log_artifacts(str(folder))
    handle._call("log_outputs", handle.run_id, [LoggedModelOutput(model.model_id, step=0)])
    handle.log_metrics(model_metrics(results), model_id=model.model_id, dataset=dataset)
    call_with_retry(client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
    return register_version(handle, model.model_id, params, dataset)


def register_version(
    handle: RunHandle, model_id: str, params: Params, dataset: DatasetInfo
) -> Registered:
    """Register logged model ``model_id`` under its arch's name and set the champion alias."""
    client = handle.client
    name = registered_model_name(params.model.arch)
    with store_lock(str(handle.tracking_uri)):  # two queued experiments register at once
        if not _exists(client, name):
            call_with_retry(
                client.create_registered_model,
                name,
                tags={ARCH_TAG: params.model.arch},
                description=f"{params.model.arch} trained by the DeepFlash pipeline; alias "
                "`champion-<dataset>` = the best version on that dataset.",
            )
    with _global_uri(str(handle.tracking_uri)):
        version = call_with_retry(
            client.create_model_version,
            name,
            source=f"models:/{model_id}",
            run_id=handle.run_id,
            tags={
                DATASET_TAG: dataset.name,
                FINGERPRINT_TAG: dataset.digest,
                ENCODING_TAG: params.loss.encoding,
            },
            model_id=model_id,
        )
    model = call_with_retry(client.get_logged_model, model_id)
    links = json.loads(model.tags.get(MODEL_VERSIONS_TAG, "[]"))
    links.append({"name": name, "version": str(version.version)})
    call_with_retry(client.set_logged_model_tags, model_id, {MODEL_VERSIONS_TAG: json.dumps(links)})
    alias = champion_alias(dataset.name)
    best = update_champion(client, name, dataset.name)
    return Registered(model_id, name, str(version.version), alias, best or str(version.version))


def _exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        call_with_retry(client.get_registered_model, name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def update_champion(client: Any, name: str, dataset: str) -> str | None:
    """Point ``champion-<dataset>`` of registered model ``name`` at the version whose run
    ranks first (:func:`pipeline.evaluation.report.rank_value`; ties: the newest). Returns
    the champion's version (None when no version of that dataset has a ranked run)."""
    versions = call_with_retry(
        client.search_model_versions, f"name = '{name}' and tags.`{DATASET_TAG}` = '{dataset}'"
    )
    best: tuple[float, int] | None = None
    champion = None
    for version in versions:
        if not version.run_id:
            continue
        try:
            run = call_with_retry(client.get_run, version.run_id)
        except Exception as error:  # a deleted run: its versions are not candidates
            log.warning(
                "model %s v%s: run %s unreadable (%s)", name, version.version, version.run_id, error
            )
            continue
        value = rank_value(run_record(run))
        if value is None:
            continue
        key = (value, int(version.version))
        if best is None or key > best:
            best, champion = key, str(version.version)
    if champion is not None:
        call_with_retry(client.set_registered_model_alias, name, champion_alias(dataset), champion)
    return champion


def logged_models(handle_or_client: Any, experiment_id: str) -> list[Any]:
    """The experiment's logged models (``search_logged_models``), best validation SSIM first."""
    client = getattr(handle_or_client, "client", handle_or_client)
    return list(
        call_with_retry(
            client.search_logged_models,
            [experiment_id],
            order_by=[{"field_name": "metrics.eval.val.full.model.ssim_gt", "ascending": False}],
        )
    )


__all__ = [
    "Registered",
    "champion_alias",
    "log_model",
    "logged_models",
    "model_metrics",
    "register_version",
    "registered_model_name",
    "update_champion",
]
