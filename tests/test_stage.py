"""The stage skeleton (pipeline/stage.py): exit codes and the one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Params
from pipeline.stage import StageError, run_stage


def test_run_stage_exit_codes_and_error_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """0 when the body returns; 1 and "<stage>: message" on stderr when it stops; a body
    gets the validated params."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  size: 64\n")
    seen = []
    assert run_stage("crop", lambda params: seen.append(params)) == 0
    assert isinstance(seen[0], Params) and seen[0].data.size == 64

    def stop(params: Params) -> None:
        raise StageError("no pair could be cropped")

    def missing(params: Params) -> None:
        raise FileNotFoundError("data/interim/manifest.csv: not found")

    def other(params: Params) -> None:
        raise KeyError("a bug")

    assert run_stage("crop", stop) == 1
    assert run_stage("register", missing) == 1
    assert capsys.readouterr().err.splitlines() == [
        "crop: no pair could be cropped",
        "register: data/interim/manifest.csv: not found",
    ]
    assert run_stage("ingest", other, (KeyError,)) == 1
    with pytest.raises(KeyError):  # anything else is a bug: its traceback shows
        run_stage("ingest", other)


def test_run_stage_bad_params_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  size: 7\n")
    with pytest.raises(SystemExit) as stopped:
        run_stage("crop", lambda params: None)
    assert stopped.value.code == 2
    assert "params.yaml: data.size" in capsys.readouterr().err
