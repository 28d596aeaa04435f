"""The MLflow dashboard as people see it: `mlflow ui` in a real headless browser.

One module-scoped copy of the repository (git init, the project files, the tiny profile)
trains and evaluates twice with the stage scripts, as two DVC experiments on two datasets
(`demo` and `yaleb`, tiny generated images): the store then holds two model runs, one
identity baseline per dataset and the paper's runs. The copy is then moved to another folder
and `mlflow ui --backend-store-uri sqlite:///mlflow.db` is started at its root, as the README
says. Headless Chromium (Debian package `chromium`; the test skips without it) renders the
saved runs view, the compare view (model vs identity vs paper; last, a seed group's parent
run with the demo run nested under it) and the registry; the test
reads the rendered DOM (`--dump-dom`) and writes screenshots (`--screenshot`) to a temporary
folder, or to docs/ with `DEEPFLASH_SCREENSHOTS=docs` (how docs/mlflow_*.png are made).
"""

from __future__ import annotations

import csv
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

import numpy as np
import pytest
import yaml

from pipeline.io import write_image
from pipeline.tracking import compare as tracking_compare
from pipeline.tracking import models as tracking_models
from pipeline.tracking.store import artifact_repository

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("params_tiny.yaml")
PROJECT_FILES = ("pipeline", "stages", "dvc.yaml", "params.yaml", ".gitignore")
EXPERIMENT = "ui"
DATASETS = {"demo": 1, "yaleb": 2}  # dataset name -> seed of its generated images
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=20000",
)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def make_processed(root: Path, seed: int, size: int = 64) -> None:
    """A tiny processed set (2 pairs per split): smooth 'studio' images and a 'flash' version
    with a bright centre and cooler colour; ``seed`` makes each dataset's pixels its own."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows = []
    for split in ("train", "val", "test"):
        for i in range(2):
            phase = rng.uniform(0, 6)
            studio = np.stack(
                [0.5 + 0.3 * np.sin(4 * xx + phase), 0.45 + 0.2 * np.cos(3 * yy), 0.4 + 0 * xx],
                axis=-1,
            )
            flash = studio * (1.4 - (xx - 0.5) ** 2 - (yy - 0.5) ** 2)[..., None] * [0.9, 1, 1.1]
            pair = f"{split}{i}__p0"
            paths = [f"data/processed/{split}/{pair}__v0_{k}.png" for k in ("flash", "studio")]
            write_image(root / paths[0], np.clip(flash, 0, 1))
            write_image(root / paths[1], studio)
            rows.append([split, pair, f"{split}{i}", "v0", *paths])
    with (root / "data" / "processed" / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "pair_id", "subject", "variant", "flash", "studio"])
        writer.writerows(rows)


class Copy:
    """A copy of the repository that trains and evaluates with the stage scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
        env.pop("DEEPFLASH_MLFLOW", None)
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(root),
                "TQDM_DISABLE": "1",
                "OMP_NUM_THREADS": "1",
                "GIT_AUTHOR_NAME": "e2e",
                "GIT_AUTHOR_EMAIL": "e2e@example.com",
                "GIT_COMMITTER_NAME": "e2e",
                "GIT_COMMITTER_EMAIL": "e2e@example.com",
            }
        )
        self.env = env

    def run(self, *cmd: str, timeout: float = 300, **env: str) -> str:
        """Run a command in the copy; on failure the assertion shows its output."""
        done = subprocess.run(
            list(cmd),
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"`{' '.join(cmd)}` failed ({done.returncode})\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-4000:]}"
        )
        return done.stdout

    def experiment(self, dataset: str) -> str:
        """Generate ``dataset``, then train, evaluate and report as DVC experiment ``exp-<name>``."""
        params = _merge(
            yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load(TINY.read_text())
        )
        params = _merge(
            params,
            {"data": {"raw_dir": f"data/raw/{dataset}"}, "mlflow": {"experiment": EXPERIMENT}},
        )
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for folder in ("data", "models"):
            shutil.rmtree(self.root / folder, ignore_errors=True)
        make_processed(self.root, DATASETS[dataset])
        # The three stage scripts as DVC runs them, in one interpreter (imports once: CI time).
        # Each stage ends in sys.exit(main()): a non-zero code stops the chain, as in DVC.
        chain = (
            "import runpy\n"
            "for stage in ('train', 'evaluate', 'report'):\n"
            "    try:\n"
            "        runpy.run_path(f'stages/{stage}.py', run_name='__main__')\n"
            "    except SystemExit as done:\n"
            "        if done.code:\n"
            "            raise\n"
        )
        return self.run(sys.executable, "-c", chain, DVC_EXP_NAME=f"exp-{dataset}")


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """The copy after two experiments, moved to another folder afterwards."""
    base = tmp_path_factory.mktemp("mlflow-ui")
    copy = Copy(base / "copy")
    copy.root.mkdir()
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy.root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy.root / name)
    copy.run("git", "init", "-q", "-b", "main")
    copy.run("git", "add", "-A")
    copy.run("git", "commit", "-q", "-m", "project")
    copy.outputs = {name: copy.experiment(name) for name in DATASETS}
    copy.run_file = json.loads((copy.root / "reports" / "mlflow_run.json").read_text())
    copy.artifacts = sorted(
        p.relative_to(copy.root).as_posix() for p in (copy.root / "mlartifacts").rglob("*.pt")
    )
    target = Copy(base / "elsewhere" / "moved")
    target.root.parent.mkdir()
    shutil.move(copy.root, target.root)
    target.first = copy
    return target


def _client(root: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _runs(root: Path) -> dict[str, Any]:
    client = _client(root)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def test_copy_trains_and_evaluates_with_artifacts_inside_the_copy(moved: Copy) -> None:
    first = moved.first
    assert moved.first.run_file["tracking_uri"] == "sqlite:///mlflow.db"  # no machine path
    # Both model files landed in the copy's own mlartifacts (logged models), none elsewhere.
    assert len(first.artifacts) == 2 and all(
        p.startswith(f"mlartifacts/{EXPERIMENT}/models/") for p in first.artifacts
    )
    assert not (REPO / "mlartifacts" / EXPERIMENT).exists()
    runs = _runs(moved.root)
    assert set(runs) == {
        "deepflash-C on demo (exp-demo)",
        "deepflash-C on yaleb (exp-yaleb)",
        "identity-C on demo",
        "identity-C on yaleb",
        "oracle-C on demo",
        "oracle-C on yaleb",
        "paper deepflash-C (Table 2)",
        "paper hdrnet-C (Table 2)",
        "paper pix2pix-C (Table 3)",
    }
    for run in runs.values():
        assert run.info.artifact_uri.startswith(f"mlflow-artifacts:/{EXPERIMENT}/")
    demo = runs["deepflash-C on demo (exp-demo)"]
    assert demo.data.tags["mlflow.source.name"] == "stages/train.py"
    assert len(demo.data.tags["mlflow.source.git.commit"]) == 40
    assert "Result: val, protocol sample" in demo.data.tags["mlflow.note.content"]
    assert demo.inputs.dataset_inputs[0].dataset.name == "demo"
    assert "MLflow runs (after `mlflow ui` at the repo root):" in first.outputs["demo"]
    # The moved copy still reads its artifacts: the store names no folder.
    samples = artifact_repository(demo.info.artifact_uri, moved.root).list_artifacts("samples")
    assert [f.path for f in samples] == [f"samples/{s}_0.png" for s in ("test", "train", "val")]


def test_registry_and_logged_models(moved: Copy) -> None:
    client = _client(moved.root)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    models = tracking_models.logged_models(client, experiment.experiment_id)
    assert sorted(m.name for m in models) == ["deepflash-C", "deepflash-C"]
    runs = _runs(moved.root)
    for model in models:
        metrics = {m.key: m for m in model.metrics}
        source = client.get_run(model.source_run_id)
        dataset = source.data.tags["data.name"]
        assert metrics["eval.val.full.model.ssim_gt"].dataset_name == dataset
        assert metrics["eval.val.full.model.ssim_gt"].value == pytest.approx(
            source.data.metrics["eval.val.full.model.ssim_gt"]
        )
    for dataset in DATASETS:
        champion = client.get_model_version_by_alias("deepflash", f"champion-{dataset}")
        assert champion.run_id == runs[f"deepflash-C on {dataset} (exp-{dataset})"].info.run_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui(moved: Copy) -> Any:
    """`mlflow ui` at the moved copy's root, as the README says; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "ui", "--backend-store-uri", "sqlite:///mlflow.db"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=moved.root,
        env=moved.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(server, f"{base}/health", b"OK")
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_healthy(server: subprocess.Popen, url: str, answer: bytes) -> None:
    """Wait (3 min at most) until ``url`` answers 200 with ``answer``; fail if ``server`` dies."""
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200 and response.read().strip() == answer:
                    return
        except OSError:
            pass
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(1)


def _shots_dir(tmp_path: Path) -> Path:
    return REPO / "docs" if os.environ.get("DEEPFLASH_SCREENSHOTS") == "docs" else tmp_path


def _browser(url: str, profile: Path, size: str, screenshot: Path | None = None) -> str:
    """The DOM Chromium rendered for ``url`` in a ``size`` window (and a screenshot)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    action = ["--dump-dom"] if screenshot is None else [f"--screenshot={screenshot}"]
    done = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}"]
        + [*action, url],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _text(dom: str) -> str:
    import html
    import re

    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def _crop_side_panel(path: Path) -> tuple[int, int]:
    """Cut MLflow's assistant panel (a card at the right, opened on a local server's first
    visit) off a screenshot: the crop ends at the grey gutter left of that card. Returns the
    new size (unchanged when there is no such gutter)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    pixels = np.asarray(image).astype(int)
    band = pixels[image.height // 4 : 3 * image.height // 4]
    grey = (np.ptp(band, axis=2) <= 3) & (band[..., 0] >= 230) & (band[..., 0] <= 248)
    columns = np.flatnonzero(grey.all(axis=0))
    # Grey columns come in runs (gutters); the page's right margin touches the edge, and the
    # gutter left of the panel is the rightmost run before it.
    starts = [int(c) for i, c in enumerate(columns) if i == 0 or columns[i - 1] != c - 1]
    gutters = [c for c in starts if image.width // 2 < c < image.width - 40]
    if gutters:
        image = image.crop((0, 0, gutters[-1], image.height))
        image.save(path)
    return image.size


def _experiment_id(moved: Copy) -> str:
    return _client(moved.root).get_experiment_by_name(EXPERIMENT).experiment_id


def test_runs_table_in_the_browser(moved: Copy, ui: str, tmp_path: Path) -> None:
    url = tracking_compare.runs_url(_experiment_id(moved), base=ui)
    # Wide enough for every column beside the assistant panel (cropped off the screenshot).
    size = "2800,760"
    text = _text(_browser(url, tmp_path / "profile", size))
    # Model-training mode on the runs table, not the GenAI overview.
    assert "Runs" in text and "Model registry" in text and "Token Usage" not in text
    assert "You're viewing a shared view" in text
    runs = _runs(moved.root)
    for name in runs:
        assert name in text, f"run {name!r} not rendered"
    for dataset in DATASETS:
        digest = runs[f"deepflash-C on {dataset} (exp-{dataset})"].data.tags["data.fingerprint"]
        assert f"{dataset} ({digest})" in text  # the Dataset column tells the runs apart
    assert "paper (capece2019)" in text
    for column in ("model.arch", "loss.encoding", *tracking_compare.VAL_COLUMNS):
        assert column in text, f"column {column} not shown"
    paper = runs["paper deepflash-C (Table 2)"].data.metrics["eval.val.protocol.model.ssim_pgt"]
    assert f"{paper:.4f}" in text  # the paper's Table 2 value in the table
    shot = _shots_dir(tmp_path) / "mlflow_runs.png"
    _browser(url, tmp_path / "profile", size, shot)
    width, _ = _crop_side_panel(shot)
    assert 1600 < width < 2800


def test_compare_view_model_vs_baselines_in_the_browser(
    moved: Copy, ui: str, tmp_path: Path
) -> None:
    url = tracking_compare.charts_url(_experiment_id(moved), base=ui)
    # The UI renders only the charts in the viewport: tall enough for all 7 (3 rows).
    size = "2800,1800"
    wanted = [f"eval.val.protocol.model.{m}" for m in ("ssim_pgt", "psnr_pgt", "ssim_pgt_matlab")]
    for _ in range(3):  # charts render after the runs load: a loaded machine may need longer
        text = _text(_browser(url, tmp_path / "profile", size))
        if all(name in text for name in wanted):
            break
    assert "Model metrics (7)" in text  # the saved view's chart filter: validation protocol
    for metric in (
        "ssim_pgt",
        "psnr_pgt",
        "ssim_gt",
        "psnr_gt",
        "loss",
        "accuracy",
        "ssim_pgt_matlab",
    ):
        assert f"eval.val.protocol.model.{metric}" in text
    for name in ("deepflash-C on demo (exp-demo)", "identity-C on demo", "oracle-C on demo"):
        assert name in text  # the charts' legends: model and baselines on one plot
    assert "paper deepflash-C (Table 2)" in text
    shot = _shots_dir(tmp_path) / "mlflow_compare.png"
    _browser(url, tmp_path / "profile", size, shot)
    width, _ = _crop_side_panel(shot)
    assert 1600 < width < 2800


def test_registry_in_the_browser(moved: Copy, ui: str, tmp_path: Path) -> None:
    text = _text(_browser(f"{ui}/#/models/deepflash", tmp_path / "profile", "1600,1000"))
    assert "champion-demo" in text and "champion-yaleb" in text
    assert "Version 1" in text and "Version 2" in text


# --------------------------------------------------------------- the champion as an MLflow model

PREDICT = (
    "import sys, mlflow, numpy as np\n"
    "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
    "np.save(sys.argv[3], model.predict(np.load(sys.argv[2])[None])[0])\n"
)
CHAMPION = "models:/deepflash@champion-demo"


@pytest.fixture(scope="module")
def selfie(moved: Copy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A demo flash photo with one face (uint8 .npy and lossless .png), what `deepflash
    enhance --model <the champion's file>` writes for it, and where the face's mask reaches."""
    from pipeline.config import DemoParams
    from pipeline.datasets.demo import generate_demo
    from pipeline.enhance.apply import enhance_image, load_enhancer
    from pipeline.io import read_image

    folder = tmp_path_factory.mktemp("selfie")
    demo = generate_demo(
        folder / "raw", DemoParams(n_subjects=3, poses=1, width=192, height=256, seed=4)
    )
    image = read_image(demo.pairs[0].flash)
    photo = np.round(image * 255).astype(np.uint8)
    np.save(folder / "photo.npy", photo)
    write_image(folder / "photo.png", photo.astype(np.float32) / 255)
    client = _client(moved.root)
    version = client.get_model_version_by_alias("deepflash", "champion-demo")
    location = client.get_logged_model(version.source.removeprefix("models:/")).artifact_location
    model_file = Path(artifact_repository(location, moved.root).artifact_dir) / "artifacts"
    model_file = model_file / "model.pt"
    assert model_file.is_file(), sorted(p.name for p in model_file.parent.parent.iterdir())
    moved.run(
        str(BIN / "deepflash"), "enhance", str(folder / "photo.png"), "-o",
        str(folder / "file.png"), "--model", str(model_file),
    )  # fmt: skip
    model, meta, device = load_enhancer(model_file, "cpu")
    _, faces = enhance_image(photo.astype(np.float32) / 255, model, meta, device=device)
    assert len(faces) == 1, "the demo photo must show one face"
    far = np.ones(photo.shape[:2], bool)
    x0, y0, x1, y1 = faces[0].region
    far[y0:y1, x0:x1] = False
    enhanced = np.round(read_image(folder / "file.png") * 255).astype(np.uint8)
    return {"dir": folder, "photo": photo, "far": far, "enhanced": enhanced, "file": model_file}


def _predict(copy: Copy, selfie: dict[str, Any], name: str, **env: str) -> np.ndarray:
    out = selfie["dir"] / f"{name}.npy"
    copy.run(
        sys.executable, "-c", PREDICT, CHAMPION, str(selfie["dir"] / "photo.npy"), str(out), **env
    )
    return np.load(out)


def _check_enhanced(out: np.ndarray, selfie: dict[str, Any]) -> None:
    photo, far = selfie["photo"], selfie["far"]
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out[far], photo[far])  # far from the face: bit-identical
    # The face is relit (the tiny test model moves many of its pixels by a level or two).
    assert np.count_nonzero(out[~far] != photo[~far]) > 0.01 * photo[~far].size
    assert np.array_equal(out, selfie["enhanced"])  # what `deepflash enhance` writes


def test_champion_loads_with_pyfunc_from_the_sqlite_store_without_a_server(
    moved: Copy, selfie: dict[str, Any]
) -> None:
    """`mlflow.pyfunc.load_model("models:/deepflash@champion-demo")` in the moved copy with
    MLflow's default store (./mlflow.db) and no server: the relit photo of `deepflash enhance`."""
    _check_enhanced(_predict(moved, selfie, "sqlite"), selfie)


def test_enhance_takes_the_champion_by_its_registry_uri(
    moved: Copy, selfie: dict[str, Any]
) -> None:
    out = selfie["dir"] / "alias.png"
    moved.run(
        str(BIN / "deepflash"), "enhance", str(selfie["dir"] / "photo.png"), "-o", str(out),
        "--model", CHAMPION,
    )  # fmt: skip
    from pipeline.io import read_image

    assert np.array_equal(np.round(read_image(out) * 255).astype(np.uint8), selfie["enhanced"])
    done = subprocess.run(
        [str(BIN / "deepflash"), "enhance", str(selfie["dir"] / "photo.png"), "--model",
         "models:/deepflash@champion-nowhere"],
        cwd=moved.root, env=moved.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: model models:/deepflash@champion-nowhere:" in done.stderr


def test_champion_loads_through_the_mlflow_server(
    moved: Copy, ui: str, selfie: dict[str, Any]
) -> None:
    _check_enhanced(_predict(moved, selfie, "server", MLFLOW_TRACKING_URI=ui), selfie)


def test_mlflow_models_serve_returns_the_enhanced_photo(
    moved: Copy, selfie: dict[str, Any]
) -> None:
    """`mlflow models serve -m models:/deepflash@champion-demo --env-manager local`, and a
    photo posted in MLflow's scoring format (tensor input, a batch of one photo)."""
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=moved.root,
        env=moved.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(server, f"{base}/ping", b"")
        body = json.dumps({"inputs": selfie["photo"][None].tolist()}).encode()
        request = urllib.request.Request(
            f"{base}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=180) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    _check_enhanced(np.asarray(predictions, np.uint8)[0], selfie)


def test_damaged_champion_is_refused_not_run(
    moved: Copy, selfie: dict[str, Any], tmp_path: Path
) -> None:
    """A copy of the repository whose champion's model file lost bytes: loading it names the
    damaged file, and `deepflash enhance --model <alias>` exits 2 without writing."""
    damaged = Copy(tmp_path / "damaged")
    shutil.copytree(moved.root, damaged.root, ignore=shutil.ignore_patterns(".git", "data"))
    model_file = damaged.root / selfie["file"].relative_to(moved.root)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-c", PREDICT, CHAMPION, str(selfie["dir"] / "photo.npy"),
         str(tmp_path / "out.npy")],
        cwd=damaged.root, env=damaged.env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "model file damaged" in done.stderr
    assert not (tmp_path / "out.npy").exists()
    out = tmp_path / "out.png"
    done = subprocess.run(
        [str(BIN / "deepflash"), "enhance", str(selfie["dir"] / "photo.png"), "-o", str(out),
         "--model", CHAMPION],
        cwd=damaged.root, env=damaged.env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "model file damaged" in done.stderr
    assert not out.exists()


def test_model_version_page_shows_the_signature_in_the_browser(
    moved: Copy, ui: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _client(moved.root).get_model_version_by_alias("deepflash", "champion-demo")
    url = f"{ui}/#/models/deepflash/versions/{version.version}"
    for _ in range(3):  # the schema table renders after the version loads
        text = _text(_browser(url, tmp_path / "profile", "1600,1100"))
        if "Outputs (1)" in text:
            break
    assert "champion-demo" in text and "Source Model : deepflash-C" in text
    # The signature's one input and one output tensor (rows a click would expand; a model
    # without a signature shows no such rows).
    assert "Schema Name Type Inputs (1) Outputs (1)" in text
    from mlflow.models import get_model_info

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{moved.root / 'mlflow.db'}")
    info = get_model_info(CHAMPION)
    spec = info.signature.inputs.inputs[0]
    assert (spec.type, spec.shape) == (np.dtype(np.uint8), (-1, -1, -1, 3))
    shot = _shots_dir(tmp_path) / "mlflow_model_version.png"
    _browser(url, tmp_path / "profile", "1600,1100", shot)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_compare_view_charts_a_seed_groups_parent(moved: Copy, ui: str, tmp_path: Path) -> None:
    """Last (it nests a run): a seed group's parent run is a bar of the compare view's charts."""
    from pipeline.tracking.records import run_record
    from pipeline.tracking.seeds import log_seed_group
    from pipeline.tracking.tags import PARENT_RUN_TAG

    child = run_record(_runs(moved.root)["deepflash-C on demo (exp-demo)"])
    parent_id = log_seed_group(_experiment_id(moved), "exp-demo-seeds", [child], moved.root)
    client = _client(moved.root)
    assert client.get_run(child["run_id"]).data.tags[PARENT_RUN_TAG] == parent_id
    parent = client.get_run(parent_id).data.metrics
    assert (
        parent["eval.val.protocol.model.ssim_pgt"]
        == child["metrics"]["eval.val.protocol.model.ssim_pgt"]
    )  # one seed: its mean is the seed's value
    url = tracking_compare.charts_url(_experiment_id(moved), base=ui)
    for _ in range(3):  # charts render after the runs load
        text = _text(_browser(url, tmp_path / "profile", "2800,1100"))
        if "exp-demo-seeds" in text:
            break
    assert "exp-demo-seeds" in text  # the parent in the charts' legends
    assert "eval.val.protocol.model.ssim_pgt" in text
    assert "paper deepflash-C (Table 2)" in text  # beside the references
