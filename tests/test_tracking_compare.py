"""Tests of pipeline/tracking/compare.py: baseline and paper runs, the saved view, UI links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.mlflowstore import empty_store
from helpers.trackingdata import results, system

from pipeline.config import validate_params
from pipeline.tracking import compare as tracking_compare
from pipeline.tracking.lifecycle import RunHandle, start_run
from pipeline.tracking.meta import dataset_info
from pipeline.tracking.store import search_runs
from pipeline.tracking.tags import VIEW_TAG


def test_reference_systems_and_their_metric_names() -> None:
    plain = results(0.8, identity_ssim=0.7)
    assert tracking_compare.reference_systems(plain) == ["identity"]
    with_oracle = results(0.8, oracle=system(0.99, 40.0), gap_closed={"ssim_gt": 0.34})
    assert tracking_compare.reference_systems(with_oracle) == ["identity", "oracle"]
    ident = tracking_compare.system_metrics(plain, "identity")
    assert len(ident) == 36
    assert ident["eval.val.protocol.model.ssim_pgt"] == 0.7  # under the model's name
    assert ident["eval.test.full.model.loss"] == 0.02
    oracle = tracking_compare.system_metrics(with_oracle, "oracle")
    assert oracle["eval.train.full.model.psnr_gt"] == 40.0


def test_paper_metrics_follow_tables_1_to_3() -> None:
    deepflash = tracking_compare.paper_metrics("deepflash")
    assert deepflash["eval.val.protocol.model.ssim_pgt"] == pytest.approx(0.8776)  # Table 2
    assert deepflash["eval.test.protocol.model.psnr_pgt"] == pytest.approx(21.28)
    assert deepflash["eval.val.full.model.loss"] == pytest.approx(0.0042)  # Table 1
    assert deepflash["eval.test.full.model.accuracy"] == pytest.approx(96.5)
    # The paper's SSIM is MATLAB's: charted beside our ssim_pgt_matlab as well.
    assert deepflash["eval.val.protocol.model.ssim_pgt_matlab"] == pytest.approx(0.8776)
    assert len(deepflash) == 9 + 4
    pix2pix = tracking_compare.paper_metrics("pix2pix")  # Table 3
    assert pix2pix["eval.train.protocol.model.ssim_pgt"] == pytest.approx(0.71)
    assert pix2pix["eval.val.protocol.model.psnr_pgt"] == pytest.approx(17.64)
    assert len(pix2pix) == 9


def test_view_and_links() -> None:
    state = tracking_compare.view_state()
    assert state["selectedColumns"][:3] == [
        "attributes.`Dataset`",
        "attributes.`Models`",
        "tags.`model.arch`",
    ]
    assert "metrics.`eval.val.protocol.model.ssim_pgt`" in state["selectedColumns"]
    assert state["orderByKey"] == "metrics.`eval.val.protocol.model.ssim_pgt`"
    url = tracking_compare.runs_url("3")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&viewStateShareKey=deepflash-compare"
    )
    assert state["chartsSearchFilter"] == "eval.val.protocol.model"
    assert state["columnOrder"][0] == "attributes.`Run Name`"
    assert set(state["columnWidths"]) == set(state["columnOrder"])
    assert tracking_compare.charts_url("3", base="http://h:1") == (
        "http://h:1/#/experiments/3/runs?workflowType=machine_learning"
        "&viewStateShareKey=deepflash-compare&compareRunsMode=CHART"
    )


def test_baseline_and_paper_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "DEEPFLASH_MLFLOW"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    empty_store(root)
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.setenv("DVC_EXP_NAME", "first")
    params = validate_params({"mlflow": {"experiment": "c"}})
    handle = start_run(params, root)
    dataset = dataset_info(params, root)
    out = tracking_compare.log_comparison(handle, params, results(0.8, 0.7), dataset)
    handle.end()
    client = handle.client
    baseline = client.get_run(out["baselines"]["identity"])
    assert baseline.info.run_name == "identity-C on demo"
    assert (
        baseline.data.tags["role"] == "baseline" and baseline.data.tags["model.arch"] == "identity"
    )
    assert baseline.data.tags["data.fingerprint"] == dataset.digest
    assert baseline.data.metrics["eval.val.protocol.model.ssim_pgt"] == 0.7
    assert (
        baseline.data.params["loss.encoding"] == "C" and "train.epochs" not in baseline.data.params
    )
    assert baseline.inputs.dataset_inputs[0].dataset.name == "demo"
    paper = {a: client.get_run(r) for a, r in out["paper"].items()}
    assert paper["hdrnet"].info.run_name == "paper hdrnet-C (Table 2)"
    assert paper["pix2pix"].data.metrics["eval.test.protocol.model.ssim_pgt"] == pytest.approx(
        0.7425
    )
    assert paper["deepflash"].inputs.dataset_inputs[0].dataset.name == "paper"
    experiment = client.get_experiment(handle.experiment_id)
    assert json.loads(experiment.tags[VIEW_TAG]) == tracking_compare.view_state()
    assert out["runs_url"].endswith("viewStateShareKey=deepflash-compare")

    # A second evaluation on the same data and settings logs into the same reference runs;
    # another encoding gets its own baseline (identity metrics depend on the encoding).
    monkeypatch.setenv("DVC_EXP_NAME", "second")
    again = tracking_compare.log_comparison(handle, params, results(0.9, 0.72), dataset)
    assert again["baselines"] == out["baselines"] and again["paper"] == out["paper"]
    history = client.get_metric_history(
        out["baselines"]["identity"], "eval.val.protocol.model.ssim_pgt"
    )
    assert [m.value for m in history] == [0.7, 0.72]
    params_b = validate_params({"loss": {"encoding": "B"}, "mlflow": {"experiment": "c"}})
    other = tracking_compare.log_comparison(handle, params_b, results(0.9, 0.6), dataset)
    assert other["baselines"]["identity"] != out["baselines"]["identity"]
    names = sorted(r.info.run_name for r in search_runs("c", "tags.role = 'baseline'"))
    assert names == ["identity-B on demo", "identity-C on demo"]
    assert len(search_runs("c", "tags.role = 'paper'")) == 3
    assert tracking_compare.log_comparison(RunHandle(), params, {}, dataset) == {}
