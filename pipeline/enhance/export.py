"""Export a trained model to ONNX or TorchScript, for apps that do not run Python.

The exported graph is the network alone: ``y = model(input)`` for an input (N, 3, H, W) in
[0, 1] whose sides are multiples of the model's ``size_multiple``. Building the input and
reconstructing the photo stay outside it, as in :mod:`pipeline.enhance.apply`: for encoding C the
input is the bilateral-filtered crop, and for B and C the photo is ``x - 2y + 1`` (eq. 2). So
an app knows what to do, the model meta (:class:`pipeline.models.ModelMeta`: arch, width,
encoding, size, bilateral and crop settings) travels inside the file: ONNX ``metadata_props`` key ``deepflash.meta`` and TorchScript extra file
``meta.json``, both JSON.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
the ``onnxscript`` package, which this project does not otherwise depend on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

META_KEY = "deepflash.meta"
TORCHSCRIPT_META = "meta.json"
DEFAULT_OPSET = 17  # GridSample (hdrnet's slicing) needs >= 16


class ExportError(RuntimeError):
    """The model could not be exported or the exported file disagrees with PyTorch."""


def example_input(
    model: torch.nn.Module, meta: dict[str, Any], batch: int = 1, seed: int = 0
) -> torch.Tensor:
    """A random input (batch, 3, S, S) in [0, 1] at the model's training size ``meta['size']``."""
    size = int(meta["size"])
    multiple = int(getattr(model, "size_multiple", 1))
    if size % multiple:
        raise ExportError(f"model size {size} is not a multiple of {multiple}")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator)


def _meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, default=str)


def export_onnx(
    model: torch.nn.Module,
    meta: dict[str, Any],
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
) -> Path:
    """Write ``model`` (in eval mode, on CPU) as ONNX with the meta in ``metadata_props``.

    ``dynamic=True`` leaves batch, height and width free (any multiple of the model's
    ``size_multiple``); otherwise the graph is fixed at (1, 3, size, size).
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    example = example_input(model, meta)
    axes = {
        "input": {0: "batch", 2: "height", 3: "width"},
        "output": {0: "batch", 2: "height", 3: "width"},
    }
    try:
        # The exporter prints its whole graph to stdout when an operator is unsupported, and
        # announces its own deprecation on every call: keep both out of the user's terminal.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=axes if dynamic else None,
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as error:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{path}: ONNX export failed ({error.__class__.__name__}: {error}); "
            "TorchScript holds any PyTorch operator: try --torchscript"
        ) from error
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, _meta_json(meta)
    proto.producer_name = "deepflash-pipeline"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def export_torchscript(
    model: torch.nn.Module, meta: dict[str, Any], path: str | os.PathLike
) -> Path:
    """Write ``model`` as a traced TorchScript module with ``meta.json`` as an extra file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    example = example_input(model, meta)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: _meta_json(meta)})
    except Exception as error:
        raise ExportError(
            f"{path}: TorchScript export failed ({error.__class__.__name__}: {error})"
        ) from error
    return path


def read_onnx_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The model meta stored in an exported ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == META_KEY:
            return json.loads(entry.value)
    raise ExportError(f"{path}: no {META_KEY} metadata (not exported by deepflash export)")


def read_torchscript_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The model meta stored in an exported TorchScript file."""
    extra = {TORCHSCRIPT_META: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[TORCHSCRIPT_META]:
        raise ExportError(f"{path}: no {TORCHSCRIPT_META} (not exported by deepflash export)")
    return json.loads(extra[TORCHSCRIPT_META])


@torch.inference_mode()
def onnx_parity(model: torch.nn.Module, path: str | os.PathLike, inputs: torch.Tensor) -> float:
    """Max absolute difference between PyTorch and onnxruntime (CPU) outputs on ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = model.to("cpu").eval()(inputs).float().numpy()
    got = session.run(None, {"input": inputs.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f"{path}: ONNX output shape {got.shape} != PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())


@torch.inference_mode()
def torchscript_parity(
    model: torch.nn.Module, path: str | os.PathLike, inputs: torch.Tensor
) -> float:
    """Max absolute difference between the PyTorch model and the saved TorchScript module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    expected = model.to("cpu").eval()(inputs).float()
    got = loaded(inputs).float()
    if got.shape != expected.shape:
        raise ExportError(
            f"{path}: TorchScript output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}"
        )
    return float((got - expected).abs().max())


def export_model_file(
    model_path: str | os.PathLike,
    *,
    onnx_path: str | os.PathLike | None = None,
    torchscript_path: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = 1e-4,
) -> dict[str, dict[str, Any]]:
    """The ``deepflash export`` command: a model file -> ONNX and/or TorchScript.

    With ``check`` each export is run on two random inputs (the training size, batch 2) and
    compared with PyTorch; a max abs difference above ``tolerance`` raises
    :class:`ExportError`, as does a model file that is missing, damaged or not ours.
    Returns ``{format: {"path", "max_abs_diff"}}``.
    """
    from pipeline.models import load_for_inference

    if onnx_path is None and torchscript_path is None:
        raise ExportError("nothing to do: give --onnx OUT and/or --torchscript OUT")
    try:
        model, model_meta, _ = load_for_inference(model_path, "cpu")
    except FileNotFoundError:
        raise ExportError(f"{model_path}: model file not found") from None
    except ValueError as error:  # our message names the file and the reason
        raise ExportError(str(error)) from None
    meta = model_meta.to_dict()  # embedded in the export as JSON
    results: dict[str, dict[str, Any]] = {}
    inputs = example_input(model, meta, batch=2, seed=1)
    jobs = [
        ("onnx", onnx_path, lambda p: export_onnx(model, meta, p, opset=opset), onnx_parity),
        (
            "torchscript",
            torchscript_path,
            lambda p: export_torchscript(model, meta, p),
            torchscript_parity,
        ),
    ]
    for name, target, export, parity in jobs:
        if target is None:
            continue
        written = export(target)
        entry: dict[str, Any] = {"path": str(written), "max_abs_diff": None}
        if check:
            diff = parity(model, written, inputs)
            entry["max_abs_diff"] = diff
            if not diff <= tolerance:
                raise ExportError(
                    f"{written}: {name} output differs from PyTorch by {diff:.3g} (> {tolerance:g})"
                )
        results[name] = entry
    return results


__all__ = [
    "DEFAULT_OPSET",
    "META_KEY",
    "TORCHSCRIPT_META",
    "ExportError",
    "example_input",
    "export_model_file",
    "export_onnx",
    "export_torchscript",
    "onnx_parity",
    "read_onnx_meta",
    "read_torchscript_meta",
    "torchscript_parity",
]
