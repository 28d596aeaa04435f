"""Tests of pipeline/tracking/records.py: run records, evaluated runs on the same data, the
evaluated run of a run file reopened for the report, the per-image scores of runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.mlflowstore import repo_with_store

from pipeline.config import Params, validate_params
from pipeline.evaluation.report import best_runs
from pipeline.tracking.lifecycle import start_run
from pipeline.tracking.records import (
    PER_IMAGE_ARTIFACT,
    evaluated_runs,
    per_image_tables,
    reopen_evaluated,
    run_record,
)
from pipeline.tracking.store import write_run_file
from pipeline.tracking.tags import EVALUATED_TAG


@pytest.fixture
def params() -> Params:
    return validate_params({"model": {"arch": "hdrnet"}, "mlflow": {"experiment": "r"}})


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return repo_with_store(tmp_path, monkeypatch)


def test_run_record_from_mlflow_run() -> None:
    run = SimpleNamespace(
        info=SimpleNamespace(run_id="x", run_name="n", start_time=5),
        data=SimpleNamespace(
            tags={"model.arch": "pix2pix", "loss.encoding": "C", "data.fingerprint": "f"},
            metrics={"eval.val.full.model.ssim_gt": 0.5},
        ),
    )
    record = run_record(run)
    assert record["arch"] == "pix2pix" and record["fingerprint"] == "f"
    assert best_runs([record])["pix2pix/C"]["rank_value"] == 0.5


def _run(params: Params, root: Path, ssim: float, evaluated: bool, fingerprint: str) -> str:
    handle = start_run(params, root, extra_tags={"data.fingerprint": fingerprint})
    handle.log_metrics({"eval.val.full.model.ssim_gt": ssim})
    if evaluated:
        handle.set_tags({EVALUATED_TAG: "true"})
    handle.end()
    return str(handle.run_id)


def test_evaluated_runs_on_the_same_data(repo: Path, params: Params) -> None:
    same = _run(params, repo, 0.8, True, "fp1")
    _run(params, repo, 0.9, False, "fp1")  # trained, never evaluated
    other = _run(params, repo, 0.7, True, "fp2")
    assert [r["run_id"] for r in evaluated_runs("r", "fp1")] == [same]
    assert {r["run_id"] for r in evaluated_runs("r", "all")} == {same, other}
    assert evaluated_runs("no such experiment", "all") == []


def test_reopen_evaluated_takes_the_runs_fingerprint(repo: Path, params: Params) -> None:
    this = _run(params, repo, 0.8, True, "fp1")
    other = _run(params, repo, 0.6, True, "fp1")
    _run(params, repo, 0.7, True, "fp2")
    handle = start_run(params, repo, run_id=this)
    write_run_file(repo / "run.json", handle)
    handle.end()
    found = reopen_evaluated(params, repo / "run.json", repo)
    with found.handle:
        assert found.run_id == this and found.fingerprint == "fp1"
        assert found.record is not None and found.record["metrics"] == {
            "eval.val.full.model.ssim_gt": 0.8
        }
        assert {r["run_id"] for r in found.others} == {this, other}
    run = found.handle.client.get_run(this)
    assert run.info.status == "FINISHED"


def test_reopen_evaluated_without_tracking(
    tmp_path: Path, params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPFLASH_MLFLOW", "0")
    (tmp_path / "run.json").write_text('{"run_id": "abc", "experiment_id": null}')
    found = reopen_evaluated(params, tmp_path / "run.json", tmp_path)
    assert found.run_id == "abc" and found.record is None and found.others == []
    assert not found.handle.active and len(found.fingerprint) == 16
    assert not (tmp_path / "mlflow.db").exists()


def test_per_image_tables_of_the_runs_that_logged_them(repo: Path, params: Params) -> None:
    with_scores = _run(params, repo, 0.8, True, "fp1")
    without = _run(params, repo, 0.7, True, "fp1")  # evaluated before the file existed
    (repo / "per_image.csv").write_text("split,subject,system,ssim_gt\ntest,007,model,0.5\n")
    handle = start_run(params, repo, run_id=with_scores)
    handle.log_artifact(repo / "per_image.csv", PER_IMAGE_ARTIFACT.rsplit("/", 1)[0])
    handle.end()
    tables = per_image_tables([with_scores, without, with_scores], repo)
    assert list(tables) == [with_scores]
    assert tables[with_scores].to_dict("records") == [
        {"split": "test", "subject": "007", "system": "model", "ssim_gt": "0.5"}
    ]
