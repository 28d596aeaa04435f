"""Tests of pipeline/enhance/model_uri.py (downloads: tests/e2e/test_mlflow_ui.py)."""

from __future__ import annotations

import pytest

from pipeline.enhance.model_uri import is_model_uri


@pytest.mark.parametrize("spec", ["models:/deepflash@champion-demo", "runs:/abc/model"])
def test_model_uris_are_told_from_paths(spec: str) -> None:
    assert is_model_uri(spec)
    assert not is_model_uri("models/model.pt") and not is_model_uri("./models:/x.pt")
