"""End to end: the real `dvc` on a tiny profile in a temporary copy of the repository.

One module-scoped repository (git init + dvc init in tmp, the project files copied, the
tiny profile params_tiny.yaml merged over params.yaml), then, in order:

1. `dvc repro` runs demo -> ... -> report; one MLflow run with params, tags, metrics, artifacts.
2. `dvc exp run -S loss.encoding=B` adds a second MLflow run (encoding B, other metrics);
   `dvc exp show` lists both.
3. `dvc plots show` writes its HTML (Fig. 4 curves, Fig. 5 samples).
4. Issue 7: `deepflash grid queue --archs hdrnet,pix2pix --encodings C --run 2` queues the
   other archs as DVC experiments and runs them two at once (both write the same SQLite
   store); deepflash, hdrnet and pix2pix then sit in one comparison table
   (`deepflash grid table`) and in MLflow, tagged by arch and encoding.
5. A local `mlflow server` answers the REST API with those runs' params, metrics, artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli.queue import DvcQueue

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("params_tiny.yaml")
PROJECT_FILES = ("pipeline", "stages", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore")
EXPERIMENT = "e2e"


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class Repo:
    """A throwaway copy of the project with its own git, DVC and MLflow store."""

    def __init__(self, root: Path):
        self.root = root
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
        env.pop("DEEPFLASH_MLFLOW", None)
        env.update(
            {
                # `python` in the stages' cmd is the venv's; the copy's own code is imported.
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(root),
                "DVC_NO_ANALYTICS": "1",
                "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site-cache"),
                "GIT_AUTHOR_NAME": "e2e",
                "GIT_AUTHOR_EMAIL": "e2e@example.com",
                "GIT_COMMITTER_NAME": "e2e",
                "GIT_COMMITTER_EMAIL": "e2e@example.com",
                "TQDM_DISABLE": "1",
                "OMP_NUM_THREADS": "1",
            }
        )
        self.env = env

    def run(self, *cmd: str, timeout: float = 300) -> str:
        """Run a command in the repo; on failure the assertion shows its output."""
        done = subprocess.run(
            list(cmd),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"`{' '.join(cmd)}` failed ({done.returncode})\n--- stdout\n{done.stdout[-6000:]}"
            f"\n--- stderr\n{done.stderr[-6000:]}"
        )
        return done.stdout

    def attempt(self, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run a command in the repo and return its result, whatever its exit code."""
        return subprocess.run(
            list(cmd), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def hashes(self, *patterns: str) -> dict[str, str]:
        """SHA-256 of the repo's files matching the glob patterns, by relative path."""
        return {
            p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in patterns
            for p in sorted(self.root.glob(pattern))
            if p.is_file()
        }

    def client(self) -> Any:
        """An MlflowClient on the repo's store (the URI the stages used)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=f"sqlite:///{self.root / 'mlflow.db'}")

    def runs(self) -> list[Any]:
        """The model runs of the e2e experiment (not the baseline and paper runs), oldest first."""
        client = self.client()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, "the MLflow experiment was not created"
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.role = 'candidate'",
            order_by=["attributes.start_time ASC"],
        )
        return list(runs)

    def artifacts(self, run: Any, path: str | None = None) -> set[str]:
        """Artifact paths of ``run`` (its mlflow-artifacts: location resolves into the repo)."""
        from pipeline.tracking.store import artifact_repository

        listing = artifact_repository(run.info.artifact_uri, self.root).list_artifacts(path)
        return {a.path for a in listing}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """The copy, after a first `dvc repro` of the whole chain (committed as the baseline)."""
    root = tmp_path_factory.mktemp("e2e") / "repo"
    root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    params = _merge(
        yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load(TINY.read_text())
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo = Repo(root)
    repo.run("git", "init", "-q", "-b", "main")
    repo.run("dvc", "init", "-q")
    shutil.copy2(REPO / ".dvc" / "config", root / ".dvc" / "config")  # the project's cache links
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "project")
    started = time.perf_counter()
    repo.run("dvc", "repro")
    repo.repro_seconds = time.perf_counter() - started
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "dvc repro (tiny)")
    return repo


def test_repro_runs_the_chain_into_one_mlflow_run(repo: Repo) -> None:
    root = repo.root
    results = json.loads((root / "metrics/eval.json").read_text())
    assert results["train"]["images"] == 20  # one subject x one pose x 20 variants
    for split in ("train", "val", "test"):
        block = results[split]
        assert block["protocol"]["images"] == 5
        model, ident = block["full"]["model"], block["full"]["identity"]
        assert 0 < model["ssim_pgt"] <= 1 and 0 < ident["ssim_gt"] <= 1
        assert model["psnr_gt"] > 0 and ident["loss"] > 0
    assert sorted(p.name for p in (root / "plots/samples").glob("*.png")) == [
        "test_0.png",
        "train_0.png",
        "val_0.png",
    ]
    # Every image's scores with its person: one row per image and system.
    per_image = (root / "metrics/per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("split,subject,pair_id,variant,system,")
    assert len(per_image) == 1 + 3 * sum(results[s]["images"] for s in ("train", "val", "test"))
    report = (root / "reports/report.md").read_text()
    assert "# DeepFlash run report" in report and "Tables 2 and 3 layout" in report
    assert "## Which differences beat the noise (per person)" in report
    compare = json.loads((root / "metrics/compare.json").read_text())
    assert compare["this_run"]["arch"] == "deepflash" and compare["this_run"]["encoding"] == "C"

    runs = repo.runs()
    assert len(runs) == 1, "train + evaluate + report must be ONE MLflow run"
    run = runs[0]
    assert compare["this_run"]["run_id"] == run.info.run_id
    assert json.loads((root / "reports/mlflow_run.json").read_text())["run_id"] == run.info.run_id
    tags = run.data.tags
    assert tags["model.arch"] == "deepflash" and tags["loss.encoding"] == "C"
    assert tags["role"] == "candidate" and tags["dvc.exp_name"] == "workspace"
    assert tags["mlflow.source.git.commit"] and len(tags["data.fingerprint"]) == 16
    assert run.info.run_name == "deepflash-C on demo (workspace)"
    assert tags["deepflash.evaluated"] == "true"
    assert run.data.params["model.width"] == "0.0625" and run.data.params["data.size"] == "64"
    metrics = run.data.metrics
    assert "train_loss" in metrics and "eval.val.protocol.model.ssim_pgt" in metrics
    assert "compare.val.full.vs_identity.psnr_gt" in metrics
    top = repo.artifacts(run)
    assert {"params.yaml", "samples", "metrics", "report"} <= top
    assert repo.artifacts(run, "report") == {
        "report/compare.json",
        "report/report.md",
    }
    # Artifacts of a sqlite store land beside it, not in a working copy.
    assert list((root / "mlartifacts").rglob("report.md"))


def test_second_repro_runs_no_stage(repo: Repo) -> None:
    """An unchanged tree: `dvc repro` changes nothing and DVC sees every stage up to date.

    Asserted on DVC's machine-readable status, not on the wording of its console output."""
    outputs = [repo.root / "models/model.pt", *sorted(repo.root.glob("metrics/*.json"))]
    written = {p: p.stat().st_mtime_ns for p in outputs}  # a stage that ran rewrites them
    repo.run("dvc", "repro")
    assert json.loads(repo.run("dvc", "status", "--json")) == {}
    assert {p: p.stat().st_mtime_ns for p in outputs} == written


def test_forced_rerun_gives_the_same_bytes_and_nothing_downstream_reruns(repo: Repo) -> None:
    """`dvc repro -f` of register and train rewrites their outputs with the same bytes (no
    timings or temp names inside), so the next `dvc repro` re-runs nothing after them."""
    outputs = ("models/model.pt", "data/interim/registered/*.json", "data/interim/registered/*.csv")
    before = repo.hashes(*outputs)
    assert "models/model.pt" in before and len(before) >= 4
    repo.run("dvc", "repro", "-f", "-s", "register")
    repo.run("dvc", "repro", "-f", "-s", "train")
    assert repo.hashes(*outputs) == before
    out = repo.run("dvc", "repro")
    assert "Running stage" not in out, out


def test_outputs_are_read_only_links_into_the_cache_and_check_out_again(repo: Repo) -> None:
    """The project's cache type (.dvc/config: reflink, hardlink, ...): on this ext4 tmp every
    cached output is a read-only hardlink of its cache file (one copy on disk, not two); after
    the outputs are deleted, `dvc checkout` links the same bytes back and nothing re-runs."""
    processed = sorted(p for p in (repo.root / "data/processed").rglob("*") if p.is_file())
    assert len(processed) >= 7  # on the fly: 3 crops (flash, studio, mask when padded) + index
    for path in (*processed, repo.root / "models/model.pt"):
        assert path.stat().st_nlink >= 2, path  # workspace + .dvc/cache/files/md5/...
        assert not path.stat().st_mode & 0o222, path  # DVC protects the cache
    before = repo.hashes("data/processed/**/*", "models/model.pt")
    shutil.rmtree(repo.root / "data/processed")
    (repo.root / "models/model.pt").unlink()
    repo.run("dvc", "checkout")
    assert repo.hashes("data/processed/**/*", "models/model.pt") == before
    assert json.loads(repo.run("dvc", "status", "--json")) == {}


def test_comment_in_a_module_marks_exactly_the_stages_that_run_it(repo: Repo) -> None:
    """A comment added to pipeline/tracking/lifecycle.py (run by train, evaluate and report):
    `dvc status` lists those three and nothing before them."""
    repo.run("dvc", "repro")  # up to date whatever the tests before left
    module = repo.root / "pipeline" / "tracking" / "lifecycle.py"
    original = module.read_text()
    try:
        module.write_text(original + "# a comment\n")
        status = json.loads(repo.run("dvc", "status", "--json"))
        assert set(status) == {"train", "evaluate", "report"}
    finally:
        module.write_text(original)
    assert json.loads(repo.run("dvc", "status", "--json")) == {}


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ({"foo": {"bar": 1}}, "foo"),
        ({"augment": {"rotations": []}}, "augment.rotations"),
        ({"augment": {"rotations": [0, 10, 10]}}, "augment.rotations"),
        ({"train": {"epochs": True}}, "train.epochs"),
    ],
)
def test_bad_params_stop_repro_before_any_output_is_touched(
    repo: Repo, edit: dict, key: str
) -> None:
    """Each bad params case: non-zero exit, one line naming the key, every output intact."""
    params = repo.root / "params.yaml"
    original = params.read_text()
    outputs = ("models/model.pt", "metrics/*.json", "plots/train.csv", "data/processed/index.csv")
    before = repo.hashes(*outputs)
    try:
        params.write_text(yaml.safe_dump(_merge(yaml.safe_load(original), edit), sort_keys=False))
        done = repo.attempt("dvc", "repro")
        assert done.returncode != 0
        named = [line for line in done.stderr.splitlines() if line.startswith("params.yaml: ")]
        assert len(named) == 1 and named[0].startswith(f"params.yaml: {key}: "), done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert repo.hashes(*outputs) == before
    finally:
        params.write_text(original)


def test_plots_show_writes_html(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    repo.run("dvc", "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "Loss per epoch (Fig. 4)" in html
    assert "Validation accuracy" in html
    assert "train_0.png" in html  # the Fig. 5 sample grids


def test_queued_experiments_run_two_at_once_into_one_table_and_mlflow(repo: Repo) -> None:
    """`dvc exp run -S loss.encoding=B` (queued) and the grid's hdrnet/C run two at once (issue
    7: both write the same SQLite store, each with its share of the cores); each is one more
    MLflow run tagged by arch, encoding and experiment, and with the `dvc repro` run they sit in
    one Tables 2/3 table. (pix2pix trains in tests/test_models_base.py and
    tests/test_training_distributed.py; a third experiment here would cost CI a minute.)"""
    before = {r.info.run_id for r in repo.runs()}
    first = repo.runs()[0]
    repo.run("dvc", "exp", "run", "--queue", "-n", "enc-b", "-S", "loss.encoding=B")
    watched = repo.run(
        str(BIN / "deepflash"),
        "grid",
        "queue",
        "--archs",
        "hdrnet",
        "--encodings",
        "C",
        "--prefix",
        "e2e",
        "--run",
        "2",
        timeout=400,
    )
    # The whole queue ran (enc-b too), and no queue worker outlived it (pipeline/cli/queue.py)
    assert "2 of 2 experiments succeeded" in watched, watched
    assert DvcQueue(repo.root, repo.env).worker_pids() == []
    new = {r.data.tags["dvc.exp_name"]: r for r in repo.runs() if r.info.run_id not in before}
    assert set(new) == {"enc-b", "e2e-hdrnet-C"}
    tagged = {(r.data.tags["model.arch"], r.data.tags["loss.encoding"]) for r in new.values()}
    assert tagged == {("deepflash", "B"), ("hdrnet", "C")}
    fingerprints = {r.data.tags["data.fingerprint"] for r in repo.runs()}
    assert len(fingerprints) == 1, "every run of this repo used the same data"
    for run in new.values():
        assert run.data.tags["deepflash.evaluated"] == "true"
        assert run.info.run_name.endswith(f"on demo ({run.data.tags['dvc.exp_name']})")
        assert "eval.val.protocol.model.psnr_pgt" in run.data.metrics
        assert "train_loss" in run.data.metrics
        # Ran in a temp copy that DVC deleted; the artifacts are in the main repo's store.
        assert repo.artifacts(run, "samples")

    second = new["enc-b"]
    assert second.info.run_name == "deepflash-B on demo (enc-b)"
    assert second.data.tags["dvc.baseline_rev"]
    assert second.data.params["loss.encoding"] == "B"
    key = "eval.val.full.model.loss"
    assert second.data.metrics[key] != first.data.metrics[key]
    # The identity baseline is the same images, but its loss is in the encoding's target space.
    ssim_key = "eval.val.full.identity.ssim_gt"
    assert second.data.metrics[ssim_key] == pytest.approx(first.data.metrics[ssim_key])

    table = repo.run(str(BIN / "deepflash"), "grid", "table", "--json", "grid.json")
    assert "Tables 2 and 3 layout" in table
    grid = json.loads((repo.root / "grid.json").read_text())
    assert grid["fingerprint"] == fingerprints.pop() and grid["runs"] == 3
    assert set(grid["best_runs"]) == {"deepflash/B", "deepflash/C", "hdrnet/C"}
    by_id = {r.info.run_id: r for r in repo.runs()}
    for split in ("train", "val", "test"):
        row = grid["tables23"]["pgt"]["ssim"][split]
        for arch in ("deepflash", "hdrnet"):
            # The paper's SSIM convention (MATLAB's), in %, of the cell's best run; a tiny
            # model a few epochs old may be anticorrelated, so only SSIM's range is certain.
            best = by_id[grid["best_runs"][f"{arch}/C"]["run_id"]]
            metric = best.data.metrics[f"eval.{split}.protocol.model.ssim_pgt_matlab"]
            assert row[f"{arch}/C"] == pytest.approx(100 * metric)
            assert -100 <= row[f"{arch}/C"] <= 100
            delta = row[f"{arch}/C"] - row[f"{arch}/C paper"]
            assert row[f"{arch}/C delta"] == pytest.approx(delta)
            assert row[f"{arch}/A"] is None  # not in this grid
        assert row["pix2pix/C"] is None

    shown = json.loads(repo.run("dvc", "exp", "show", "--json"))
    listed = json.dumps(shown)
    assert "enc-b" in listed and "e2e-hdrnet-C" in listed
    encodings = set()
    for commit in shown:
        for entry in [
            commit,
            *[e for exp in (commit.get("experiments") or []) for e in exp["revs"]],
        ]:
            data = (
                (entry.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data", {})
            )
            if "loss" in data:
                encodings.add(data["loss"]["encoding"])
    assert {"B", "C"} <= encodings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, data: dict | None = None) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw[:1] in (b"{", b"[") else raw


def test_mlflow_server_rest_api(repo: Repo, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{repo.root / 'mlflow.db'}",
            # The store's mlflow-artifacts: locations resolve here, as for `mlflow ui` at the
            # repo root.
            "--artifacts-destination",
            str(repo.root / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=repo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{base}/health") in (b"OK", b"OK\n"):
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        experiment = _get(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}"
        )
        experiment_id = experiment["experiment"]["experiment_id"]
        found = _get(
            f"{base}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment_id], "filter": "tags.`model.arch` = 'deepflash'"},
        )["runs"]
        enc_b = "deepflash-B on demo (enc-b)"
        assert {r["info"]["run_name"] for r in found} >= {enc_b}
        run = next(r for r in found if r["info"]["run_name"] == enc_b)
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert params["loss.encoding"] == "B" and tags["loss.encoding"] == "B"
        assert 0 < metrics["eval.val.full.model.ssim_gt"] <= 1
        run_id = run["info"]["run_id"]
        history = _get(
            f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=train_loss"
        )
        assert [m["step"] for m in history["metrics"]] == [1]
        listing = _get(f"{base}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=samples")
        assert {f["path"] for f in listing["files"]} >= {"samples/val_0.png"}
        report = _get(f"{base}/get-artifact?path=report/report.md&run_id={run_id}")
        assert b"# DeepFlash run report" in report
        assert b"<html" in _get(f"{base}/").lower()  # the UI itself is served
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
