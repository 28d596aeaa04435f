"""Tests of pipeline/tracking/meta.py: names, MLflow's standard tags, dataset input, description."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Params, validate_params
from pipeline.tracking import meta

INDEX = (
    "split,pair_id,subject,variant,flash,studio\n"
    "train,s1__p0,s1,v0,f,s\ntrain,s1__p0,s1,v1,f,s\ntrain,s1__p1,s1,v0,f,s\n"
    "train,s2__p0,s2,v0,f,s\nval,s3__p0,s3,v0,f,s\ntest,s4__p0,s4,v0,f,s\n"
)


@pytest.fixture
def params() -> Params:
    return validate_params(
        {
            "data": {"raw_dir": "/data/yale/yaleb/", "layout": "yaleb", "size": 64},
            "model": {"arch": "hdrnet"},
            "loss": {"encoding": "B"},
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "data" / "processed").mkdir(parents=True)
    (tmp_path / "data" / "processed" / "index.csv").write_text(INDEX)
    return tmp_path


def test_fingerprint_follows_the_data(tmp_path: Path) -> None:
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    (processed / "index.csv").write_text("split,pair_id\ntrain,a\n")
    first = meta.data_fingerprint(tmp_path)
    assert first == meta.data_fingerprint(tmp_path) and len(first) == 16
    (processed / "index.csv").write_text("split,pair_id\ntrain,b\n")
    assert meta.data_fingerprint(tmp_path) != first
    (processed / "index.csv").write_text("split,pair_id\ntrain,a\n")
    (processed / "train").mkdir()
    (processed / "train" / "x.png").write_bytes(b"12345")
    assert meta.data_fingerprint(tmp_path) not in (first, "")


def test_dataset_name_and_split_sizes(params: Params, repo: Path) -> None:
    assert meta.dataset_name(params) == "yaleb"  # trailing slash ignored
    assert meta.dataset_name(validate_params({})) == "demo"
    assert meta.split_sizes(repo) == {
        "train_images": 4,
        "train_pairs": 3,
        "train_subjects": 2,
        "val_images": 1,
        "val_pairs": 1,
        "val_subjects": 1,
        "test_images": 1,
        "test_pairs": 1,
        "test_subjects": 1,
    }
    assert meta.split_sizes(repo / "nowhere") == {}


def test_dataset_input_entity(params: Params, repo: Path) -> None:
    info = meta.dataset_info(params, repo)
    assert info.name == "yaleb" and info.digest == meta.data_fingerprint(repo)
    assert info.source == "/data/yale/yaleb/"  # as params.yaml names it
    entity = info.input("training")
    assert entity.dataset.name == "yaleb" and entity.dataset.digest == info.digest
    assert json.loads(entity.dataset.source) == {"uri": "/data/yale/yaleb/"}
    assert json.loads(entity.dataset.profile)["train_images"] == 4
    assert [(t.key, t.value) for t in entity.tags] == [("mlflow.data.context", "training")]


def test_run_name_and_tags(params: Params, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert meta.run_name(params, "yaleb") == "hdrnet-B on yaleb (workspace)"
    monkeypatch.setenv("DVC_EXP_NAME", "enc-b")
    assert meta.run_name(params, "demo") == "hdrnet-B on demo (enc-b)"
    tags = meta.run_tags(params, repo, "f" * 16, source="stages/train.py")
    assert tags["mlflow.source.name"] == "stages/train.py"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.source.git.commit" not in tags  # tmp_path is no git repository
    assert tags["data.fingerprint"] == "f" * 16 and tags["data.name"] == "yaleb"
    assert tags["model.arch"] == "hdrnet" and tags["loss.encoding"] == "B"
    assert tags["dvc.exp_name"] == "enc-b" and tags["role"] == "candidate"
    here = meta.run_tags(params, Path(__file__).parent)
    assert len(here["mlflow.source.git.commit"]) == 40  # this checkout's HEAD


def test_description_lists_changed_params_data_and_headline(params: Params, repo: Path) -> None:
    assert meta.changed_params(validate_params({})) == {}
    changed = meta.changed_params(params)
    assert changed == {
        "data.raw_dir": "/data/yale/yaleb/",
        "data.layout": "yaleb",
        "data.size": 64,
        "model.arch": "hdrnet",
        "loss.encoding": "B",
    }
    info = meta.dataset_info(params, repo)
    text = meta.describe(params, info)
    assert "**hdrnet**, encoding B" in text
    assert f"`yaleb` from `/data/yale/yaleb/` (fingerprint `{info.digest}`" in text
    assert "4 train, 1 val, 1 test images" in text
    assert "`data.size=64`" in text and "`model.arch=hdrnet`" in text
    assert "Result" not in text
    block = {
        "model": {"ssim_pgt": 0.8123, "psnr_pgt": 21.456},
        "identity": {"ssim_pgt": 0.7, "psnr_pgt": 19.0},
    }
    text = meta.describe(params, info, {"val": {"protocol": block}})
    assert text.endswith(
        "Result: val, protocol sample vs the preconditioned ground truth (eq. 8): model SSIM "
        "81.23 %, PSNR 21.46 dB; identity SSIM 70.00 %, PSNR 19.00 dB."
    )


def test_alias_token() -> None:
    assert meta.alias_token("demo") == "demo"
    assert meta.alias_token("Yale B.ext") == "Yale-B-ext"
    assert meta.alias_token("...") == "data"
