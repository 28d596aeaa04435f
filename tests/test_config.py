"""params.yaml validation (pipeline/config.py): bad values stop a stage naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_state_every_group_and_key():
    """The committed params.yaml is valid and states every group and key of the schema itself
    (the defaults would fill a missing one silently: the file is where people look)."""
    load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(Params.model_fields)
    for group, field in Params.model_fields.items():
        assert set(raw[group] or {}) == set(field.annotation.model_fields), group


def test_bad_encoding_names_the_key_and_the_allowed_values(tmp_path: Path):
    """`loss.encoding: D` fails naming loss.encoding, the allowed values and the bad one."""
    with pytest.raises(ParamsError) as info:
        load_params(_params(tmp_path, "loss:\n  encoding: D\n"))
    path = tmp_path / "params.yaml"
    assert str(info.value).splitlines() == [
        f"{path}: loss.encoding: Input should be 'A', 'B' or 'C' (got 'D')"
    ]


def test_unknown_key_and_wrong_type_are_named(tmp_path: Path):
    """A typo lists the group's keys; a wrong type names the key and the value."""
    with pytest.raises(ParamsError) as info:
        load_params(_params(tmp_path, "ingest:\n  sead: 1\ndemo:\n  poses: two\n"))
    lines = str(info.value).splitlines()
    prefix = f"{tmp_path / 'params.yaml'}: "
    assert len(lines) == 2 and all(line.startswith(prefix) for line in lines)
    assert any(
        line.startswith(prefix + "ingest.sead: unknown key in group 'ingest'") for line in lines
    )
    assert any("seed" in line for line in lines if "ingest.sead" in line)
    assert any(line.startswith(prefix + "demo.poses: ") and "'two'" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("foo:\n  bar: 1\n", "foo", "unknown key (unknown group)"),
        ("train:\n  epochs: true\n", "train.epochs", "valid integer"),
        ("data:\n  size: '128'\n", "data.size", "valid integer"),
        ("augment:\n  rotations: []\n", "augment.rotations", "at least 1 item"),
        ("augment:\n  rotations: [0, 10, 10]\n", "augment.rotations", "repeated: 10"),
        ("augment:\n  splits: [train, train]\n", "augment.splits", "repeated: train"),
    ],
)
def test_bad_params_stop_with_one_line_naming_the_key(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    """Each case the validation gate must stop: one line, the file, the key and why."""
    with pytest.raises(ParamsError) as info:
        load_params(_params(tmp_path, text))
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'params.yaml'}: {key}: ")
    assert reason in lines[0]


def test_stage_gate_exits_2_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    """stages/check_params.py: exit code 2, the one line on stderr, no marker written."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text("train:\n  epochs: true\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "stages" / "check_params.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "params.yaml: train.epochs: Input should be a valid integer (got True)"
    ]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "params.ok").exists()


def test_paper_profile_is_valid_and_restores_the_papers_choices():
    """params-paper.yaml validates and turns `make paper` into the paper's settings."""
    from pathlib import Path

    from pipeline.config import override_args

    args = override_args(Path(__file__).resolve().parents[1] / "params-paper.yaml")
    pairs = dict(a.split("=", 1) for a in args if a != "-S")
    assert pairs["data.size"] == "512"
    assert pairs["model.width"] == "1.0"
    assert pairs["model.head_init"] == "xavier"
    assert pairs["loss.centred"] == "true"
    assert float(pairs["train.optimizer.deepflash.lr"]) == 1e-5
