"""Tests of pipeline/tracking/artifact_repo.py: `mlflow-artifacts:` without a server."""

from __future__ import annotations

from pathlib import Path

from pipeline.tracking import artifact_repo


def test_local_store_folder_of_each_uri_kind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert artifact_repo.local_store_folder("sqlite:///mlflow.db") == tmp_path.resolve()
    assert artifact_repo.local_store_folder(f"sqlite:///{tmp_path}/a/m.db") == tmp_path / "a"
    assert artifact_repo.local_store_folder(f"file://{tmp_path}/mlruns") == tmp_path
    assert artifact_repo.local_store_folder("http://127.0.0.1:5000") is None
    path = artifact_repo.local_artifact_path(
        "mlflow-artifacts:/my%20exp/models/m-1/artifacts", f"sqlite:///{tmp_path}/mlflow.db"
    )
    assert path == tmp_path / "mlartifacts" / "my exp" / "models" / "m-1" / "artifacts"


def test_mlflow_resolves_the_scheme_through_the_plugin(tmp_path: Path) -> None:
    """MLflow's own registry (what pyfunc.load_model and `mlflow models serve` use) hands the
    scheme to the project's plugin: local files for a SQLite store, the server's proxy for an
    HTTP one."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    uri = "mlflow-artifacts:/exp/r1/artifacts"
    local = get_artifact_repository(uri, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert isinstance(local, LocalArtifactRepository)
    assert Path(local.artifact_dir) == tmp_path / "mlartifacts" / "exp" / "r1" / "artifacts"
    (tmp_path / "notes.txt").write_text("kept")
    local.log_artifact(str(tmp_path / "notes.txt"))
    assert (tmp_path / "mlartifacts" / "exp" / "r1" / "artifacts" / "notes.txt").is_file()
    served = get_artifact_repository(uri, tracking_uri="http://127.0.0.1:5000")
    assert isinstance(served, MlflowArtifactsRepository)
    assert served.artifact_uri.startswith("http://127.0.0.1:5000/api/2.0/mlflow-artifacts/")
