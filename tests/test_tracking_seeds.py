"""Tests of pipeline/tracking/seeds.py: seed names and groups, a group's metrics over seeds,
the parent run with its seeds nested under it (MLflow's nested runs) in a tiny store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.mlflowstore import repo_with_store
from helpers.seedruns import EXPERIMENT, seed_run
from mlflow import MlflowClient

from pipeline.tracking.records import evaluated_runs
from pipeline.tracking.seeds import (
    GROUP_ROLE,
    best_groups,
    group_metrics,
    group_of,
    log_seed_groups,
    seed_exp_name,
    split_seed_name,
)
from pipeline.tracking.tags import PARENT_RUN_TAG, ROLE_TAG, SEED_GROUP_TAG, SEEDS_TAG


def test_seed_names_and_groups() -> None:
    assert seed_exp_name("grid-deepflash-C", 2) == "grid-deepflash-C-seed2"
    assert split_seed_name("grid-deepflash-C-seed12") == ("grid-deepflash-C", 12)
    assert split_seed_name("grid-deepflash-C") is None and split_seed_name(None) is None
    assert group_of({"exp_name": "enc-b-seed1"}) == "enc-b"
    assert group_of({"exp_name": "enc-b", "run_name": "x"}) == "enc-b"
    assert group_of({"exp_name": None, "run_name": "x"}) == "x"


def _record(exp: str, arch: str, enc: str, value: float) -> dict:
    return {"run_id": exp, "exp_name": exp, "arch": arch, "encoding": enc,
            "metrics": {"eval.val.full.model.ssim_gt": value}}  # fmt: skip


def test_the_best_group_per_cell_is_ranked_by_its_mean() -> None:
    records = [
        _record("g-deepflash-C-seed0", "deepflash", "C", 0.70),
        _record("g-deepflash-C-seed1", "deepflash", "C", 0.90),  # the luckiest seed
        _record("lone", "deepflash", "C", 0.85),  # beats the group's mean 0.80
        _record("g-deepflash-A-seed0", "deepflash", "A", 0.60),
    ]
    groups = best_groups(records)
    assert list(groups) == ["deepflash/A", "deepflash/C"]
    assert [r["run_id"] for r in groups["deepflash/C"]] == ["lone"]
    records[2]["metrics"]["eval.val.full.model.ssim_gt"] = 0.75
    assert len(best_groups(records)["deepflash/C"]) == 2


def test_group_metrics_mean_std_interval() -> None:
    children = [{"metrics": {"m": v, "only_one": 1.0}} for v in (0.8820, 0.8913, 0.8847)]
    children[0]["metrics"].pop("only_one")
    metrics = group_metrics(children)
    assert set(metrics) == {"seeds", "m", "m.std", "m.ci_low", "m.ci_high"}
    assert metrics["seeds"] == 3 and metrics["m"] == pytest.approx(0.886)
    assert metrics["m.std"] == pytest.approx(np.std([0.8820, 0.8913, 0.8847], ddof=1))
    assert metrics["m.ci_low"] < metrics["m"] < metrics["m.ci_high"]
    assert set(group_metrics(children[:1])) == {"seeds", "m"}  # one seed: no spread


def test_seeds_nest_under_one_parent_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = repo_with_store(tmp_path, monkeypatch)
    seeds = [
        seed_run(repo, f"g-deepflash-C-seed{k}", "deepflash", "C", 0.05, k, "fp") for k in range(3)
    ]
    lone = seed_run(repo, "single", "deepflash", "A", 0.01, 0, "fp")
    records = evaluated_runs(EXPERIMENT, "fp", repo)
    parents = log_seed_groups(EXPERIMENT, records, repo)
    assert list(parents) == ["g-deepflash-C"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    parent = client.get_run(parents["g-deepflash-C"])
    assert parent.info.run_name == "g-deepflash-C" and parent.info.status == "FINISHED"
    assert (
        parent.data.tags[ROLE_TAG] == GROUP_ROLE and parent.data.tags["model.arch"] == "deepflash"
    )
    assert parent.data.tags[SEEDS_TAG] == "0,1,2"
    values = [0.85, 0.851, 0.852]
    assert parent.data.metrics["eval.val.full.model.ssim_gt"] == pytest.approx(np.mean(values))
    assert parent.data.metrics["eval.val.full.model.ssim_gt.std"] == pytest.approx(0.001)
    assert parent.data.metrics["seeds"] == 3
    for run_id in seeds:
        tags = client.get_run(run_id).data.tags
        assert (
            tags[PARENT_RUN_TAG] == parent.info.run_id and tags[SEED_GROUP_TAG] == "g-deepflash-C"
        )
    assert PARENT_RUN_TAG not in client.get_run(lone).data.tags  # not a seed: left alone
    # The parent is no evaluated run: grouping again updates the same parent.
    seed_run(repo, "g-deepflash-C-seed3", "deepflash", "C", 0.05, 3, "fp")  # one more seed
    again = log_seed_groups(EXPERIMENT, evaluated_runs(EXPERIMENT, "fp", repo), repo)
    assert again == parents
    grown = client.get_run(parents["g-deepflash-C"])
    assert grown.data.tags[SEEDS_TAG] == "0,1,2,3" and grown.data.metrics["seeds"] == 4
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = '{GROUP_ROLE}'")
    assert len(found) == 1


def test_without_tracking_nothing_is_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPFLASH_MLFLOW", "0")
    assert log_seed_groups(EXPERIMENT, [_record("g-seed0", "deepflash", "C", 0.8)]) == {}
