"""Tests of pipeline/cli/grid.py: `deepflash grid queue` (one run per cell, or a seed group
per cell with --seeds), `grid group` (seeds nested under their parent run) and `grid table`
(the Tables 2/3 layout and which differences beat the noise) on a tiny MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.mlflowstore import repo_with_store
from helpers.seedruns import EXPERIMENT, seed_run

from pipeline.cli import main
from pipeline.tracking.meta import data_fingerprint


def test_queue_seeds_are_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no git checkout: no warning about untracked files
    base = ["grid", "queue", "--archs", "deepflash", "--encodings", "A,C", "--dry-run"]
    plain = CliRunner().invoke(main, base)
    assert plain.exit_code == 0, plain.output
    commands = plain.output.strip().splitlines()
    assert commands == [
        "dvc exp run --queue -n grid-deepflash-A -S model.arch=deepflash -S loss.encoding=A",
        "dvc exp run --queue -n grid-deepflash-C -S model.arch=deepflash -S loss.encoding=C",
    ]
    seeded = CliRunner().invoke(main, [*base, "--seeds", "3", "--run", "2"])
    assert seeded.exit_code == 0, seeded.output
    lines = seeded.output.strip().splitlines()
    assert len(lines) == 2 * 3 + 1 and lines[-1] == "dvc queue start -j 2"
    assert lines[0] == (
        "dvc exp run --queue -n grid-deepflash-A-seed0 -S model.arch=deepflash "
        "-S loss.encoding=A -S train.seed=0"
    )
    assert lines[5].startswith("dvc exp run --queue -n grid-deepflash-C-seed2 ")
    assert lines[5].endswith("-S train.seed=2")
    bad = CliRunner().invoke(main, [*base, "--seeds", "-1"])
    assert bad.exit_code == 2 and "--seeds" in bad.output


def test_group_and_table_with_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = repo_with_store(tmp_path, monkeypatch)
    monkeypatch.chdir(repo)
    fingerprint = data_fingerprint(repo)
    for k in range(3):  # C: 3 seeds, the model 0.05 above doing nothing
        seed_run(repo, f"grid-deepflash-C-seed{k}", "deepflash", "C", 0.05, k, fingerprint)
    seed_run(repo, "grid-deepflash-A", "deepflash", "A", 0.02, 7, fingerprint)  # one run
    args = ["--experiment", EXPERIMENT]
    grouped = CliRunner().invoke(main, ["grid", "group", *args])
    assert grouped.exit_code == 0, grouped.output
    assert "seed group grid-deepflash-C: MLflow parent run" in grouped.output
    out = tmp_path / "grid.json"
    table = CliRunner().invoke(main, ["grid", "table", *args, "--json", str(out)])
    assert table.exit_code == 0, table.output
    assert "## Which differences beat the noise (test people, seeds)" in table.output
    lines = table.output.splitlines()
    row = next(line for line in lines if "| deepflash/C - identity | SSIM % vs gt" in line)
    assert row.endswith("| 6 | 3 | better |")
    a_vs_c = next(line for line in lines if "| deepflash/A - deepflash/C | SSIM % vs gt" in line)
    assert float(a_vs_c.split("|")[4].split("±")[0]) == pytest.approx(-3.0, abs=0.2)  # 2 - 5
    assert a_vs_c.endswith("| 6 | 3 | worse |")
    saved = json.loads(out.read_text())
    assert len(saved["groups"]["deepflash/C"]) == 3 and len(saved["groups"]["deepflash/A"]) == 1
    assert {r["comparison"] for r in saved["noise"]} == {
        "deepflash/A - identity",
        "deepflash/C - identity",
        "deepflash/A - deepflash/C",
    }
    other = "0123456789abcdef"  # seeds of an experiment on other data (-S data.raw_dir=...)
    for k in range(2):
        seed_run(repo, f"yaleb-deepflash-B-seed{k}", "deepflash", "B", 0.04, k, other)
    workspace = CliRunner().invoke(main, ["grid", "group", *args])
    assert "yaleb-deepflash-B" not in workspace.output, workspace.output
    theirs = CliRunner().invoke(main, ["grid", "group", *args, "--fingerprint", other])
    assert theirs.exit_code == 0, theirs.output
    assert "seed group yaleb-deepflash-B: MLflow parent run" in theirs.output
    assert "grid-deepflash-C" not in theirs.output
    nothing = CliRunner().invoke(main, ["grid", "group", "--experiment", "nope"])
    assert nothing.exit_code == 1 and "no seed group" in nothing.output
