"""The trained model as an MLflow pyfunc model: what ``mlflow.pyfunc.load_model`` and ``mlflow
models serve`` run is ``deepflash enhance`` (faces found, relit, blended back).

MLflow 3's conventions for a custom model:

- a :class:`mlflow.pyfunc.PythonModel` (:class:`EnhanceModel`) saved *from code* (MLflow's
  "models from code": a two-line script that calls ``mlflow.models.set_model``), so nothing
  is pickled; the ``pipeline`` package goes along as ``code_paths``;
- the project's model file as its one artifact (``artifacts/model.pt``), loaded in
  ``load_context`` by :func:`pipeline.enhance.apply.load_enhancer`: its checksum is verified,
  a damaged file raises the enhance command's "model file damaged" error and is never run;
- a signature: a batch of RGB uint8 photos ``(-1, -1, -1, 3)`` in, the relit photos (same
  shape, uint8) out; params ``feather`` (the blend mask's soft edge, as ``--feather``) and
  ``redeye`` (``auto`` or ``off``, as ``--redeye``); a small
  input example (one black 16x16 photo: no face, returned as is).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from pipeline.enhance import DEFAULT_FEATHER

#: The key of the model file among the pyfunc model's artifacts.
MODEL_ARTIFACT = "model_file"
_PACKAGE = Path(__file__).resolve().parents[1]  # pipeline/
_MODEL_CODE = (
    "import mlflow.models\n"
    "from pipeline.tracking.pyfunc import EnhanceModel\n"
    "mlflow.models.set_model(EnhanceModel())\n"
)


class EnhanceModel(mlflow.pyfunc.PythonModel):
    """Relight every face of a batch of RGB uint8 photos (N x H x W x 3), as ``deepflash
    enhance`` does; pixels away from faces come back bit-identical."""

    def load_context(self, context: Any) -> None:
        """Load the model file artifact (checksum verified) on the best device, and the face
        detector's models: a served model pays for both once, not per request."""
        from pipeline.enhance.apply import load_enhancer
        from pipeline.faces.detect import load_detector

        self.model, self.meta, self.device = load_enhancer(context.artifacts[MODEL_ARTIFACT])
        load_detector(cnn=False)  # the CNN only when a photo's HOG passes find no face

    # model_input has no type hint: MLflow would read one as a schema (it takes the signature).
    def predict(
        self, context: Any, model_input, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """The relit photos, same shape and dtype as ``model_input`` (one photo: HxWx3 works
        too when called directly; MLflow's schema asks for a batch)."""
        from pipeline.enhance.apply import enhance_image

        photos = np.asarray(model_input)
        single = photos.ndim == 3
        batch = photos[None] if single else photos
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(
                f"expected RGB uint8 photos N x H x W x 3, got {photos.dtype} {photos.shape}"
            )
        feather = float((params or {}).get("feather", DEFAULT_FEATHER))
        redeye = str((params or {}).get("redeye", "auto"))
        out = np.empty_like(batch)
        for i, photo in enumerate(batch):
            # The 8-bit path of `deepflash enhance`: floats only where a face needs them.
            out[i], _ = enhance_image(
                np.ascontiguousarray(photo), self.model, self.meta, feather=feather,
                device=self.device, redeye=redeye,
            )  # fmt: skip
        return out[0] if single else out


def signature() -> Any:
    """Photos in, relit photos out (uint8, any size, a batch), params ``feather`` and
    ``redeye``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    photos = Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))])
    return ModelSignature(
        inputs=photos,
        outputs=photos,
        params=ParamSchema(
            [ParamSpec("feather", "double", DEFAULT_FEATHER), ParamSpec("redeye", "string", "auto")]
        ),
    )


def input_example() -> np.ndarray:
    """One black 16x16 photo (no face: the model returns it unchanged)."""
    return np.zeros((1, 16, 16, 3), np.uint8)


def requirements() -> list[str]:
    """The project's own runtime requirements (no extras), so MLflow does not infer them by
    loading the model in a subprocess."""
    try:
        required = importlib.metadata.requires("deepflash-pipeline") or []
    except importlib.metadata.PackageNotFoundError:
        return [f"mlflow=={mlflow.__version__}"]
    return [r for r in required if "extra ==" not in r]


def save_pyfunc(model_file: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Save ``model_file`` as an MLflow pyfunc model folder ``path`` (MLmodel, the model file
    under ``artifacts/``, the ``pipeline`` package under ``code/``)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="deepflash-pyfunc-") as tmp:
        code = Path(tmp) / "pipeline"
        shutil.copytree(_PACKAGE, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        script = Path(tmp) / "deepflash_model.py"
        script.write_text(_MODEL_CODE)
        mlflow.pyfunc.save_model(
            path,
            python_model=str(script),
            artifacts={MODEL_ARTIFACT: str(model_file)},
            code_paths=[str(code)],
            signature=signature(),
            input_example=input_example(),
            pip_requirements=requirements(),
        )
    return path


__all__ = ["MODEL_ARTIFACT", "EnhanceModel", "input_example", "save_pyfunc", "signature"]
