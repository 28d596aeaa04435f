"""Tests of pipeline/models/registry.py: the arch names, each arch's Adam defaults and the
params checked against them.

The networks are tested in tests/test_models_<arch>.py, their training steps in
tests/test_models_base.py, the model file in tests/test_models_format.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ParamsError, validate_params
from pipeline.models import (
    AdamConfig,
    adam_defaults,
    adam_settings,
    available_archs,
    build_model,
    check_params,
)

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry():
    assert available_archs() == ("deepflash", "hdrnet", "pix2pix")
    with pytest.raises(ValueError, match="unknown model arch 'unet'.*deepflash, hdrnet, pix2pix"):
        build_model("unet")
    with pytest.raises(ValueError, match="'hdrnet' does not take encoder_weights"):
        build_model("hdrnet", encoder_weights="vgg16.pth")
    model = build_model("pix2pix", 0.0625, num_downs=5)
    assert model.arch == "pix2pix" and model.build_kwargs == {"width": 0.0625, "num_downs": 5}


def test_each_arch_declares_its_papers_adam_and_params_override_per_key():
    assert adam_defaults("deepflash") == AdamConfig(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8)
    assert adam_defaults("hdrnet") == AdamConfig(lr=1e-4)
    assert adam_defaults("pix2pix") == AdamConfig(lr=2e-4, beta1=0.5)
    params = validate_params({"train": {"optimizer": {"pix2pix": {"lr": 1e-3}}}})
    assert adam_settings("pix2pix", params.train.optimizer) == AdamConfig(lr=1e-3, beta1=0.5)
    assert adam_settings("hdrnet", params.train.optimizer) == AdamConfig(lr=1e-4)
    assert adam_settings("deepflash") == adam_defaults("deepflash")
    with pytest.raises(ValueError, match="train.optimizer.pix2pixx: unknown arch"):
        adam_settings("deepflash", {"pix2pixx": {"lr": 1.0}})


def test_params_naming_archs_are_checked_against_the_registry():
    check_params(
        validate_params({"model": {"arch": "hdrnet"}, "train": {"optimizer": {"hdrnet": {}}}})
    )
    with pytest.raises(
        ParamsError,
        match=r"^p.yaml: model.arch: unknown arch 'unet'; available: deepflash, hdrnet, pix2pix$",
    ):
        check_params(validate_params({"model": {"arch": "unet"}}), "p.yaml")
    with pytest.raises(ParamsError, match=r"^params.yaml: train.optimizer.hdrnett: unknown arch"):
        check_params(validate_params({"train": {"optimizer": {"hdrnett": {"lr": 1e-3}}}}))


def test_params_gate_stage_refuses_an_unknown_arch(tmp_path: Path) -> None:
    """stages/check_params.py asks the registry: exit 2, one line, no marker, no traceback."""
    (tmp_path / "params.yaml").write_text("model:\n  arch: unet\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "check_params.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "params.yaml: model.arch: unknown arch 'unet'; available: deepflash, hdrnet, pix2pix"
    ]
    assert not (tmp_path / "data" / "params.ok").exists()
