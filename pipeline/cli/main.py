"""The `deepflash` command. Each subcommand is a thin wrapper around library code."""

from __future__ import annotations

import contextlib
import shlex
import sys
from typing import get_args

import click

from pipeline.cli.grid import grid_group
from pipeline.config import CropParams, DataParams, DemoParams, Device
from pipeline.enhance import DEFAULT_FEATHER


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deepflash-pipeline")
def main() -> None:
    """DeepFlash: turn a flash selfie into a studio-lit portrait (Capece et al. 2019)."""


@main.command("params-overrides")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def params_overrides(path: str) -> None:
    """Print `-S key=value` arguments for `dvc exp run` from a partial params file PATH.

    Example: dvc exp run -n paper $(deepflash params-overrides params-paper.yaml)
    """
    from pipeline.config import ParamsError, override_args

    try:
        click.echo(shlex.join(override_args(path)))
    except ParamsError as error:
        click.echo(str(error), err=True)
        sys.exit(2)


# --- subcommands added by their modules' owners below (keep one section each) ---

DEVICES = get_args(Device)  # the choices of params' train.device and evaluate.device


# --- demo (owner: pipeline/datasets/demo/) ---
# The defaults are the demo params group's (one source); --help stays fast: config.py needs
# pydantic only, no torch.
_DEMO = DemoParams()


@main.command("demo")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--subjects",
    "n_subjects",
    default=_DEMO.n_subjects,
    show_default=True,
    help="Number of subjects.",
)
@click.option(
    "--poses", default=_DEMO.poses, show_default=True, help="Flash/studio pairs per subject."
)
@click.option("--width", default=_DEMO.width, show_default=True, help="Photo width, px.")
@click.option("--height", default=_DEMO.height, show_default=True, help="Photo height, px.")
@click.option("--seed", default=_DEMO.seed, show_default=True, help="Seed of every random choice.")
@click.option(
    "--portraits-dir",
    type=click.Path(exists=True, file_okay=False),
    default=_DEMO.portraits_dir,
    help="Folder of portraits, one subject per file (default: astronaut + grace_hopper).",
)
@click.option(
    "--noise-sigma", default=_DEMO.noise_sigma, show_default=True, help="Flash sensor noise std."
)
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it holds a previous demo.")
def demo(
    out_dir: str,
    n_subjects: int,
    poses: int,
    width: int,
    height: int,
    seed: int,
    portraits_dir: str | None,
    noise_sigma: float,
    force: bool,
) -> None:
    """Generate synthetic flash/studio portrait pairs with known misalignments into OUT_DIR."""
    from pipeline.datasets.demo import generate_demo

    # Not re-validated: the command may render fewer subjects or smaller photos than the
    # pipeline's split and crop need (the group's bounds are for the DVC stages).
    settings = _DEMO.model_copy(
        update={
            "n_subjects": n_subjects,
            "poses": poses,
            "width": width,
            "height": height,
            "seed": seed,
            "portraits_dir": portraits_dir,
            "noise_sigma": noise_sigma,
        }
    )
    try:
        summary = generate_demo(out_dir, settings, overwrite=force)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        click.echo(f"deepflash demo: {error}", err=True)
        sys.exit(2)
    click.echo(
        f"{len(summary.pairs)} pairs of {len(summary.subjects)} subjects -> {summary.out_dir} "
        "(truth.csv, contact_sheet.png)"
    )


# --- enhance (owner: pipeline/enhance/) ---


@main.command("enhance")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (one input).")
@click.option(
    "--out-dir", type=click.Path(file_okay=False), help="Output folder (same file names)."
)
@click.option(
    "--model",
    "model_path",
    default="models/model.pt",
    show_default=True,
    type=click.Path(),
    help="Model file written by the train stage (it holds arch, encoding, size, filter), or "
    "an MLflow model URI: models:/deepflash@champion-demo (the store: $MLFLOW_TRACKING_URI, "
    "else ./mlflow.db).",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option(
    "--skip-no-face", is_flag=True, help="Skip photos without a face instead of copying them."
)
@click.option(
    "--feather",
    type=click.FloatRange(0.01, 1.0),
    default=DEFAULT_FEATHER,
    show_default=True,
    help="Soft edge of the blend mask, as a fraction of its radius.",
)
@click.option(
    "--detector",
    type=click.Choice(get_args(CropParams.model_fields["detector"].annotation)),
    default=None,
    help="Face detector (default: the model's; auto finds tilted faces too).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="Network precision; bf16 is ~1.7x faster on CPUs with native bf16 (AVX512-BF16/AMX).",
)
@click.option(
    "--redeye",
    type=click.Choice(["auto", "off"]),
    default="auto",
    show_default=True,
    help="Repair red-eye in each face after relighting (auto) or leave the eyes as they are.",
)
def enhance_command(
    inputs: tuple[str, ...],
    output: str | None,
    out_dir: str | None,
    model_path: str,
    device: str,
    skip_no_face: bool,
    feather: float,
    detector: str | None,
    precision: str,
    redeye: str,
) -> None:
    """Relight every face of flash photos INPUTS (files, folders, globs) with a trained model.

    Examples: deepflash enhance selfie.jpg -o studio.jpg;
    deepflash enhance 'photos/*.jpg' --out-dir relit/ --device cuda
    """
    import logging

    from pipeline.enhance.model_uri import is_model_uri

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    with contextlib.ExitStack() as stack:
        if is_model_uri(model_path):
            model_path = _model_file_of_uri(model_path, stack)
        options = (feather, skip_no_face, detector, precision, redeye)
        _enhance(inputs, output, out_dir, model_path, device, options)


def _model_file_of_uri(uri: str, stack: contextlib.ExitStack) -> str:
    """The model file of MLflow model ``uri``, downloaded into a folder removed on exit."""
    import tempfile

    from pipeline.enhance.model_uri import download_model_file

    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="deepflash-model-"))
    try:
        return str(download_model_file(uri, folder))
    except Exception as error:  # MLflow's errors: unknown model, alias, store
        click.echo(f"error: model {uri}: {error}", err=True)
        sys.exit(2)


def _enhance(
    inputs: tuple[str, ...],
    output: str | None,
    out_dir: str | None,
    model_path: str,
    device: str,
    options: tuple[float, bool, str | None, str, str],
) -> None:
    """``options``: EnhanceOptions' fields (feather, skip_no_face, detector, precision,
    redeye), built here: apply (and torch) is imported only once the model is known."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from pipeline.enhance.apply import EnhanceError, EnhanceOptions, enhance_paths

    try:
        with logging_redirect_tqdm():
            results = enhance_paths(
                inputs,
                model_path=model_path,
                output=output,
                out_dir=out_dir,
                device=device,
                options=EnhanceOptions(*options),
            )
    except EnhanceError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    faces = sum(len(result.faces) for result in results)
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    eyes: dict[str, int] = {}
    for face in (face for result in results for face in result.faces if face.redeye):
        eyes[face.redeye.status] = eyes.get(face.redeye.status, 0) + 1
    red = "".join(f", red-eye {s} {eyes[s]}" for s in ("corrected", "found", "none") if s in eyes)
    # Per photo: read to write, the model and the detector loaded once for all of them.
    seconds = sum(sum(result.timings.values()) for result in results) / max(1, len(results))
    click.echo(
        f"{len(results)} photo(s): {summary}; {faces} face(s) relit{red}; "
        f"{seconds:.2f} s per photo",
        err=True,
    )
    if counts.get("failed"):
        sys.exit(1)


# --- export (owner: pipeline/enhance/export.py) ---


@main.command("export")
@click.option(
    "--model", "model_path", default="models/model.pt", show_default=True, type=click.Path()
)
@click.option(
    "--onnx", "onnx_path", type=click.Path(dir_okay=False), help="Write an ONNX file here."
)
@click.option(
    "--torchscript",
    "torchscript_path",
    type=click.Path(dir_okay=False),
    help="Write a TorchScript file here.",
)
@click.option("--opset", default=17, show_default=True, help="ONNX opset version.")
@click.option(
    "--check/--no-check", default=True, show_default=True, help="Compare the export with PyTorch."
)
def export_command(
    model_path: str, onnx_path: str | None, torchscript_path: str | None, opset: int, check: bool
) -> None:
    """Export a trained model to ONNX and/or TorchScript (network only; meta embedded)."""
    from pipeline.enhance.export import ExportError, export_model_file

    try:
        results = export_model_file(
            model_path,
            onnx_path=onnx_path,
            torchscript_path=torchscript_path,
            opset=opset,
            check=check,
        )
    except ExportError as error:  # also a missing, damaged or foreign model file
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    for name, entry in results.items():
        diff = entry["max_abs_diff"]
        parity = "not checked" if diff is None else f"max abs diff vs PyTorch {diff:.2e}"
        click.echo(f"{name}: {entry['path']} ({parity})")


# --- evaluate and grid (owner: pipeline/evaluation/, pipeline/cli/grid.py) ---


@main.command("evaluate")
@click.option(
    "--model",
    "model_path",
    default="models/model.pt",
    show_default=True,
    type=click.Path(dir_okay=False),
)
@click.option(
    "--raw-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Raw flash/studio pairs.",
)
@click.option(
    "--layout",
    type=click.Choice(get_args(DataParams.model_fields["layout"].annotation)),
    default=DataParams().layout,
    show_default=True,
)
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Metrics JSON to write.",
)
@click.option(
    "--samples-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write Fig. 5 sample grids here.",
)
@click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    help="register/crop/evaluate settings (defaults when absent).",
)
@click.option(
    "--keep",
    "keep_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Keep the crops in this folder (default: a temporary one).",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=None,
    help="Default: evaluate.device.",
)
def evaluate_command(
    model_path: str,
    raw_dir: str,
    layout: str,
    out_path: str | None,
    samples_dir: str | None,
    params_path: str,
    keep_dir: str | None,
    device: str | None,
) -> None:
    """Evaluate a trained model on any raw dataset RAW_DIR, beside the identity baseline
    (the flash image) and the oracle (the encoding's ceiling: the reconstruction with the
    true target).

    Ingests, registers and crops the pairs into a temporary folder (no augmentation: one
    image per pair), then prints the metrics table (full set and the paper's protocol
    sample; on the model row the share of the identity-to-oracle gap it closes in SSIM and
    PSNR against the studio image) and writes them as JSON. Example:
    deepflash evaluate --model models/model.pt --raw-dir ../shared/data/flash_pairs --layout faid
    """
    import logging
    import tempfile
    from pathlib import Path

    from pipeline.config import Params, ParamsError, load_params
    from pipeline.evaluation.any_folder import EvaluateError, evaluate_raw
    from pipeline.evaluation.results import format_table
    from pipeline.io import write_json

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        params = load_params(params_path) if Path(params_path).is_file() else Params()
    except ParamsError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="deepflash-eval-") as tmp:
        try:
            results = evaluate_raw(
                model_path,
                raw_dir,
                layout,
                Path(keep_dir or tmp),
                params,
                device=device or params.evaluate.device,
                samples_dir=samples_dir,
            )
        except EvaluateError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
    for scope in ("full", "protocol"):
        click.echo(f"{scope}:")
        click.echo(format_table(results["metrics"], scope))
    for item in results["rejected"]:
        click.echo(f"skipped {item['file']}: {item['reason']}", err=True)
    if out_path:
        write_json(out_path, results)
        click.echo(f"metrics written to {out_path}", err=True)


main.add_command(grid_group)
