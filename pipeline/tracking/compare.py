"""What people compare in the MLflow UI: model runs beside baseline runs and the paper.

MLflow's compare view and charts plot one metric name across runs, so the references are
runs of their own holding their numbers under the model runs' metric names
(``eval.<split>.<scope>.model.<metric>``):

- one ``baseline`` run per system the evaluation measured besides the model (the identity,
  output = flash image; the oracle where evaluate reports it), per dataset (fingerprint),
  encoding and evaluation settings: ``identity-C on demo``. Identity metrics depend on the
  encoding (the preconditioned ground truth of eq. 8 does) and on the evaluate params (the
  protocol sample), so each combination has its run; a re-evaluation with the same settings
  logs into the same run;
- one ``paper`` run per arch with the paper's numbers (Sec. 5: Table 1 loss and accuracy on
  the full validation and test splits for DeepFlash; Tables 2 and 3 protocol SSIM and PSNR
  against the preconditioned ground truth, encoding C);
- a saved view of the runs table (MLflow's shared view state, an experiment tag
  ``mlflow.sharedViewState.<key>``): name, dataset, arch, encoding, role, validation SSIM
  and PSNR, best first; :func:`runs_url` opens it, :func:`charts_url` its compare view
  (one bar chart per validation metric, every run a bar).
"""

from __future__ import annotations

import hashlib
import json
import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pipeline.config import Params, flatten
from pipeline.evaluation.report import PAPER_C, PAPER_TABLE1
from pipeline.evaluation.results import PAPER_SSIM, SYSTEMS
from pipeline.tracking.lifecycle import RunHandle
from pipeline.tracking.meta import DatasetInfo, exp_name, run_tags
from pipeline.tracking.store import call_with_retry, store_lock
from pipeline.tracking.tags import (
    ARCH_TAG,
    DATASET_TAG,
    ENCODING_TAG,
    FINGERPRINT_TAG,
    KEY_TAG,
    NOTE_TAG,
    ROLE_TAG,
    SOURCE_TAG,
    SOURCE_TYPE_TAG,
    SYSTEM_TAG,
    VIEW_KEY,
    VIEW_TAG,
)

# Groups whose params decide a baseline's numbers (logged as the baseline run's params).
_BASELINE_GROUPS = ("data.", "loss.", "bilateral.", "evaluate.")
SOURCE = "stages/evaluate.py"
# The paper's data, as a dataset input of the paper runs (the Dataset column says "paper").
PAPER_DATASET = DatasetInfo(
    name="paper",
    digest="capece2019",
    source="doi:10.1016/j.image.2019.05.013",
    profile={"val_images": 1500, "test_images": 740, "train_images": 9900},
)
PAPER_TABLES = {"deepflash": "Table 2", "hdrnet": "Table 2", "pix2pix": "Table 3"}
CHARTS_FILTER = "eval.val.protocol.model"
VAL_COLUMNS = (
    "eval.val.protocol.model.ssim_pgt",
    "eval.val.protocol.model.psnr_pgt",
    "eval.val.full.model.ssim_gt",
)


def reference_systems(results: Mapping[str, Any]) -> list[str]:
    """The systems of an evaluation besides the model, in results.SYSTEMS order (identity;
    oracle where evaluate reports it); derived numbers such as ``gap_closed`` are no system."""
    found = {
        name
        for block in results.values()
        if isinstance(block, Mapping)
        for scope in ("full", "protocol")
        for name in (block.get(scope) or {})
    }
    return [s for s in SYSTEMS if s != "model" and s in found]


def system_metrics(results: Mapping[str, Any], system: str) -> dict[str, float]:
    """``system``'s numbers under the model's metric names: ``eval.<split>.<scope>.model.<m>``."""
    out: dict[str, float] = {}
    for split, block in results.items():
        if not isinstance(block, Mapping):
            continue
        for scope in ("full", "protocol"):
            values = (block.get(scope) or {}).get(system)
            if isinstance(values, Mapping):
                for metric, value in values.items():
                    number = isinstance(value, int | float) and not isinstance(value, bool)
                    if number and math.isfinite(value):
                        out[f"eval.{split}.{scope}.model.{metric}"] = float(value)
    return out


def paper_metrics(arch: str) -> dict[str, float]:
    """The paper's numbers of ``arch`` under our metric names (SSIM as a fraction, like ours)."""
    out: dict[str, float] = {}
    for metric, per_split in PAPER_C.get(arch, {}).items():
        for split, value in per_split.items():
            scale = 0.01 if metric == "ssim" else 1.0
            out[f"eval.{split}.protocol.model.{metric}_pgt"] = scale * value
            if metric == "ssim":  # computed in MATLAB: our ssim_pgt_matlab is the same convention
                out[f"eval.{split}.protocol.model.{PAPER_SSIM}"] = scale * value
    if arch == "deepflash":
        for split, values in PAPER_TABLE1.items():
            for metric, value in values.items():
                out[f"eval.{split}.full.model.{metric}"] = value
    return out


def _find(client: Any, experiment_id: str, tags: Mapping[str, str]) -> Any | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = call_with_retry(client.search_runs, [experiment_id], filter_string=query, max_results=1)
    return runs[0] if runs else None


def _reference_run(
    handle: RunHandle,
    key: Mapping[str, str],
    name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    dataset: DatasetInfo,
) -> tuple[str, bool]:
    """Find the run with tags ``key`` or create it; returns ``(run_id, created)``."""
    client = handle.client
    with store_lock(str(handle.tracking_uri)):  # two queued evaluations: one run, not two
        found = _find(client, str(handle.experiment_id), key)
        if found is not None:
            return found.info.run_id, False
        run = call_with_retry(
            client.create_run, handle.experiment_id, run_name=name, tags={**tags, **key}
        )
    ref = RunHandle(run.info.run_id, handle.experiment_id, handle.tracking_uri, client)
    ref.log_params(params)
    ref.log_dataset(dataset, "evaluation")
    return run.info.run_id, True


def log_baselines(
    handle: RunHandle, params: Params, results: Mapping[str, Any], dataset: DatasetInfo
) -> dict[str, str]:
    """One baseline run per reference system of ``results``; returns system -> run id."""
    if not handle.active:
        return {}
    settings = {k: v for k, v in flatten(params).items() if k.startswith(_BASELINE_GROUPS)}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    out: dict[str, str] = {}
    for system in reference_systems(results):
        key = {ROLE_TAG: "baseline", SYSTEM_TAG: system, KEY_TAG: f"{dataset.digest}-{digest}"}
        tags = run_tags(params, handle.root or ".", dataset.digest, SOURCE, dataset.name)
        tags.update({ARCH_TAG: system, ROLE_TAG: "baseline"})
        tags[NOTE_TAG] = (
            f"**{system} baseline** ({'output = flash image' if system == 'identity' else system})"
            f", encoding {params.loss.encoding}, on `{dataset.name}` (fingerprint "
            f"`{dataset.digest}`); metrics under the model runs' names, last logged by DVC "
            f"experiment `{exp_name()}`."
        )
        run_id, _ = _reference_run(
            handle,
            key,
            f"{system}-{params.loss.encoding} on {dataset.name}",
            tags,
            settings,
            dataset,
        )
        ref = RunHandle(run_id, handle.experiment_id, handle.tracking_uri, handle.client)
        ref.log_metrics(system_metrics(results, system))
        ref.end("FINISHED")
        out[system] = run_id
    return out


def ensure_paper_runs(handle: RunHandle) -> dict[str, str]:
    """The paper runs of the experiment (created once); returns arch -> run id."""
    if not handle.active:
        return {}
    out: dict[str, str] = {}
    for arch, table in PAPER_TABLES.items():
        key = {ROLE_TAG: "paper", ARCH_TAG: arch}
        tags = {
            ENCODING_TAG: "C",
            SYSTEM_TAG: "paper",
            DATASET_TAG: PAPER_DATASET.name,
            FINGERPRINT_TAG: PAPER_DATASET.digest,
            SOURCE_TAG: "pipeline/evaluation/report.py",
            SOURCE_TYPE_TAG: "LOCAL",
            NOTE_TAG: f"The paper's numbers for **{arch}** with encoding C (Capece et al. "
            f"2019, Sec. 5, {table}"
            + (", and Table 1 loss and accuracy" if arch == "deepflash" else "")
            + "), on the paper's data, under this pipeline's metric names.",
        }
        run_id, created = _reference_run(
            handle, key, f"paper {arch}-C ({table})", tags, {}, PAPER_DATASET
        )
        if created:
            ref = RunHandle(run_id, handle.experiment_id, handle.tracking_uri, handle.client)
            ref.log_metrics(paper_metrics(arch))
            ref.end("FINISHED")
        out[arch] = run_id
    return out


def view_state() -> dict[str, Any]:
    """The saved runs-table view: the columns people compare on, best validation SSIM first
    (widths apply to the columns named in ``columnOrder``, as the UI saves a resized table)."""
    metrics = [f"metrics.`{m}`" for m in VAL_COLUMNS]
    tags = [f"tags.`{t}`" for t in (ARCH_TAG, ENCODING_TAG, ROLE_TAG)]
    widths = {"attributes.`Run Name`": 240, "runDateAndNestInfo": 125, "attributes.`Dataset`": 265}
    widths.update({"duration": 75, "attributes.`Models`": 140})
    widths.update({c: 100 for c in tags})
    widths.update({c: 190 for c in metrics})
    return {
        "selectedColumns": ["attributes.`Dataset`", "attributes.`Models`", *tags, *metrics],
        "columnOrder": list(widths),
        "columnWidths": widths,
        "orderByKey": metrics[0],
        "orderByAsc": False,
        "runsHiddenMode": "SHOW_ALL",
        # The chart view (compare mode) shows one bar chart per validation protocol metric:
        # model, baselines and paper side by side.
        "chartsSearchFilter": CHARTS_FILTER,
    }


def ensure_view(client: Any, experiment_id: str) -> None:
    """Store :func:`view_state` as the experiment's shared view (MLflow's "Share" mechanism)."""
    call_with_retry(client.set_experiment_tag, experiment_id, VIEW_TAG, json.dumps(view_state()))


def runs_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The runs table of the experiment in the saved view, in MLflow's model-training mode."""
    query = urllib.parse.urlencode(
        {"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY}
    )
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def charts_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """MLflow's compare view (the runs' charts) in the saved view: one bar chart per
    validation metric of the protocol sample, every run (model, baselines, paper) a bar."""
    return runs_url(experiment_id, base) + "&compareRunsMode=CHART"


def log_comparison(
    handle: RunHandle, params: Params, results: Mapping[str, Any], dataset: DatasetInfo
) -> dict[str, Any]:
    """Baseline runs, paper runs and the saved view for an evaluated run (no-op when off)."""
    if not handle.active:
        return {}
    baselines = log_baselines(handle, params, results, dataset)
    paper = ensure_paper_runs(handle)
    ensure_view(handle.client, str(handle.experiment_id))
    return {"baselines": baselines, "paper": paper, "runs_url": runs_url(str(handle.experiment_id))}


__all__ = [
    "PAPER_DATASET",
    "charts_url",
    "ensure_paper_runs",
    "ensure_view",
    "log_baselines",
    "log_comparison",
    "paper_metrics",
    "reference_systems",
    "runs_url",
    "system_metrics",
    "view_state",
]
