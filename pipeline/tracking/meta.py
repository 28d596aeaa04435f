"""What a run says about itself in MLflow: name, tags, dataset input and description.

MLflow's own conventions (``mlflow.utils.mlflow_tags``): the source script in
``mlflow.source.name`` (type ``LOCAL``), the commit in ``mlflow.source.git.commit``, the
Markdown description in ``mlflow.note.content``; the data as a dataset input whose digest is
the data fingerprint, so that the runs table's Dataset column tells runs on different data
apart. Pure functions of the params and the working copy (plus ``git rev-parse``), so they are
tested without a tracking store.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import SPLITS, Params, flatten
from pipeline.io import MANIFEST_PATH
from pipeline.tracking.tags import (
    ARCH_TAG,
    BASELINE_REV_TAG,
    COMMIT_TAG,
    CONTEXT_TAG,
    DATASET_TAG,
    ENCODING_TAG,
    EXP_NAME_TAG,
    FINGERPRINT_TAG,
    ROLE_TAG,
    SOURCE_TAG,
    SOURCE_TYPE_TAG,
)

MANIFEST = MANIFEST_PATH.as_posix()
INDEX = "data/processed/index.csv"
_MAX_CHANGED = 40  # params listed in a description before "... and N more"


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
    for rel in (MANIFEST, INDEX):
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


def dataset_name(params: Params) -> str:
    """The dataset's name: the raw folder's name (``data/raw/demo`` -> ``demo``)."""
    return Path(params.data.raw_dir.rstrip("/\\")).name or params.data.layout


def split_sizes(root: str | os.PathLike = ".") -> dict[str, int]:
    """Images, pairs and subjects per split of the processed index (empty when absent)."""
    path = Path(root) / INDEX
    if not path.is_file():
        return {}
    images: dict[str, int] = {}
    pairs: dict[str, set[str]] = {}
    subjects: dict[str, set[str]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            split = row.get("split") or "?"
            images[split] = images.get(split, 0) + 1
            pairs.setdefault(split, set()).add(row.get("pair_id", ""))
            subjects.setdefault(split, set()).add(row.get("subject", ""))
    order = [s for s in SPLITS if s in images] + sorted(s for s in images if s not in SPLITS)
    sizes: dict[str, int] = {}
    for split in order:
        sizes[f"{split}_images"] = images[split]
        sizes[f"{split}_pairs"] = len(pairs[split])
        sizes[f"{split}_subjects"] = len(subjects[split])
    return sizes


@dataclass(frozen=True)
class DatasetInfo:
    """The data of a run as MLflow shows it: name, digest (= data fingerprint), source (the
    raw folder as params.yaml names it: no machine path) and the split sizes as its profile."""

    name: str
    digest: str
    source: str
    profile: dict[str, int]

    def entity(self) -> Any:
        """The ``mlflow.entities.Dataset`` of this data (source type ``local``)."""
        from mlflow.entities import Dataset

        return Dataset(
            name=self.name,
            digest=self.digest,
            source_type="local",
            source=json.dumps({"uri": self.source}),
            profile=json.dumps(self.profile),
        )

    def input(self, context: str = "training") -> Any:
        """A ``DatasetInput`` for ``MlflowClient.log_inputs`` with MLflow's context tag."""
        from mlflow.entities import DatasetInput, InputTag

        return DatasetInput(self.entity(), tags=[InputTag(CONTEXT_TAG, context)])


def dataset_info(
    params: Params, root: str | os.PathLike = ".", fingerprint: str | None = None
) -> DatasetInfo:
    """The :class:`DatasetInfo` of the working copy ``root``."""
    return DatasetInfo(
        name=dataset_name(params),
        digest=fingerprint or data_fingerprint(root),
        source=params.data.raw_dir,
        profile=split_sizes(root),
    )


def exp_name() -> str:
    """The DVC experiment name (``$DVC_EXP_NAME``; ``workspace`` for a plain ``dvc repro``)."""
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def run_name(params: Params, dataset: str) -> str:
    """What ran, readable in the runs table: ``deepflash-C on demo (enc-b)``."""
    return f"{params.model.arch}-{params.loss.encoding} on {dataset} ({exp_name()})"


def run_tags(
    params: Params,
    root: str | os.PathLike = ".",
    fingerprint: str | None = None,
    source: str = "stages/train.py",
    dataset: str | None = None,
) -> dict[str, str]:
    """The tags of a run started in the working copy ``root`` by the script ``source``."""
    commit = git_commit(root)
    tags = {
        EXP_NAME_TAG: exp_name(),
        BASELINE_REV_TAG: os.environ.get("DVC_EXP_BASELINE_REV", commit),
        FINGERPRINT_TAG: fingerprint or data_fingerprint(root),
        DATASET_TAG: dataset or dataset_name(params),
        ARCH_TAG: params.model.arch,
        ENCODING_TAG: params.loss.encoding,
        ROLE_TAG: params.mlflow.role,
        SOURCE_TAG: source,
        SOURCE_TYPE_TAG: "LOCAL",
    }
    if commit:
        tags[COMMIT_TAG] = commit
    return tags


def changed_params(params: Params) -> dict[str, Any]:
    """Flattened params whose value differs from the schema's default (pipeline/config.py)."""
    defaults = flatten(Params())
    return {k: v for k, v in flatten(params).items() if defaults.get(k, object()) != v}


def _sizes_text(profile: Mapping[str, int]) -> str:
    parts = [f"{profile[f'{s}_images']} {s}" for s in SPLITS if f"{s}_images" in profile]
    return ", ".join(parts) + " images" if parts else "no processed index"


def headline(results: Mapping[str, Any]) -> str:
    """One line of the headline metrics: validation (else test) SSIM and PSNR of the model
    and of the identity baseline on the paper's protocol sample (Tables 2 and 3)."""
    for split in ("val", "test", "train"):
        block = results.get(split)
        if isinstance(block, Mapping) and "protocol" in block:
            protocol = block["protocol"]
            model, ident = protocol["model"], protocol.get("identity", {})

            def cell(m: Mapping[str, Any]) -> str:
                if "ssim_pgt" not in m:
                    return "-"
                return f"SSIM {100 * m['ssim_pgt']:.2f} %, PSNR {m['psnr_pgt']:.2f} dB"

            return (
                f"{split}, protocol sample vs the preconditioned ground truth (eq. 8): "
                f"model {cell(model)}; identity {cell(ident)}"
            )
    return "no evaluation yet"


def describe(params: Params, dataset: DatasetInfo, results: Mapping[str, Any] | None = None) -> str:
    """The run's Markdown description (``mlflow.note.content``): what ran, on which data,
    the params that differ from the defaults and, once evaluated, the headline metrics."""
    changed = changed_params(params)
    listed = [f"`{k}={v}`" for k, v in list(changed.items())[:_MAX_CHANGED]]
    if len(changed) > _MAX_CHANGED:
        listed.append(f"... and {len(changed) - _MAX_CHANGED} more")
    lines = [
        f"**{params.model.arch}**, encoding {params.loss.encoding}, DVC experiment `{exp_name()}`.",
        "",
        f"Data: `{dataset.name}` from `{dataset.source}` (fingerprint `{dataset.digest}`; "
        f"{_sizes_text(dataset.profile)}).",
        "",
        "Params that differ from the defaults: " + (", ".join(listed) or "none") + ".",
    ]
    if results is not None:
        lines += ["", "Result: " + headline(results) + "."]
    return "\n".join(lines)


def alias_token(text: str) -> str:
    """``text`` reduced to the characters MLflow allows in a registered-model alias."""
    return re.sub(r"[^\w-]+", "-", text).strip("-") or "data"


__all__ = [
    "DatasetInfo",
    "alias_token",
    "changed_params",
    "data_fingerprint",
    "dataset_info",
    "dataset_name",
    "describe",
    "exp_name",
    "git_commit",
    "headline",
    "run_name",
    "run_tags",
    "split_sizes",
]
