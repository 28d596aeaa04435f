"""Test helper: an empty, already migrated MLflow SQLite store, made once per test session.

Creating a store runs MLflow's schema migrations (seconds on a busy CI box); each test gets a
byte copy of one migrated database instead.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

_TEMPLATE: list[Path] = []


def empty_store(root: Path) -> Path:
    """Put an empty migrated ``mlflow.db`` into ``root`` (created) and return its path."""
    if not _TEMPLATE:
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        db = folder / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
        _TEMPLATE.append(db)
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(_TEMPLATE[0], root / "mlflow.db"))


def repo_with_store(tmp_path: Path, monkeypatch: Any) -> Path:
    """``tmp_path/repo`` with an empty store, named by ``$DVC_ROOT`` as DVC names the repo root
    to stages; the variables that would point elsewhere or name the run are unset."""
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DEEPFLASH_MLFLOW"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    empty_store(root)
    monkeypatch.setenv("DVC_ROOT", str(root))
    return root
