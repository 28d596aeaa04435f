"""`deepflash enhance` imports only what relighting a photo uses (a cold call stays short).

A fresh interpreter runs the command on a one-face photo, then lists which of
:data:`FORBIDDEN` it imported and whether the CNN face detector was loaded (HOG finds this
face, so the CNN must not be).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
import torch

from pipeline.io import write_image
from pipeline.models import build_model, save_model_file

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Modules the enhance path must not import: training, tracking and data tooling (MLflow,
#: DVC, pandas, the training loop), torch's compiler (torch._dynamo: seconds of imports),
#: face_recognition (its api loads every dlib model, the recognition ResNet included) and
#: pkg_resources (face_recognition_models imports it to name its files), and libraries only
#: other steps use.
FORBIDDEN = (
    "mlflow",
    "dvc",
    "pandas",
    "torch._dynamo",
    "torch._inductor",
    "pipeline.training",
    "pipeline.tracking",
    "pipeline.evaluation",
    "pipeline.datasets",
    "pipeline.align",
    "face_recognition",
    "face_recognition_models",
    "pkg_resources",
    "scipy",
    "skimage",
    "sklearn",
    "matplotlib",
    "albumentations",
    "SimpleITK",
    "onnx",
    "onnxruntime",
    "torchmetrics",
)

SCRIPT = """
import json, sys
from pipeline.cli.main import main
from pipeline.faces import detect
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as stop:
    assert not stop.code, stop.code
forbidden = {forbidden}
print(json.dumps({{
    "loaded": [name for name in forbidden if name in sys.modules],
    "cnn_loaded": detect._cnn_detector.cache_info().currsize > 0,
}}))
"""


@pytest.fixture(scope="module")
def photo_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The astronaut portrait (one upright face) and a random-init DeepFlash model file."""
    root = tmp_path_factory.mktemp("imports")
    photo = write_image(root / "astronaut.jpg", skimage.data.astronaut())
    torch.manual_seed(0)
    model = build_model("deepflash", width=0.0625)
    meta = {"arch": "deepflash", "width": 0.0625, "encoding": "C", "size": 64}
    save_model_file(root / "model.pt", model, meta)
    return photo, root / "model.pt"


def test_enhance_imports_no_training_tracking_or_compiler_code(photo_and_model, tmp_path):
    """The command relights the face and has imported none of FORBIDDEN, nor loaded the CNN."""
    photo, model = photo_and_model
    out = tmp_path / "relit.jpg"
    args = ["enhance", str(photo), "-o", str(out), "--model", str(model), "--device", "cpu"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # the HOG detector's saved copy goes here
    }
    script = SCRIPT.format(forbidden=repr(list(FORBIDDEN)))
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "1 photo(s): 1 enhanced;" in done.stderr  # HOG found its face(s)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"loaded": [], "cnn_loaded": False}
    assert out.is_file()
