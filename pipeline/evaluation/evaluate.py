"""Evaluation of a trained model: the paper's metrics per split, beside the identity baseline.

Per image of a split (all augmented variants: the "full" numbers) and on the paper's protocol
(a seeded random sample of ``protocol_images`` images per split, Tables 2 and 3):

- ``loss``: eq. 5 (or plain MSE, as the model was trained) between the output y and target t;
- ``accuracy``: eq. 7;
- ``ssim_pgt`` / ``psnr_pgt``: the reconstruction (eq. 2) against the preconditioned ground
  truth o_bar = x - 2t + 1 (eq. 8, what the paper reports; equal to o for encoding A);
- ``ssim_gt`` / ``psnr_gt``: the reconstruction against the raw ground truth o (the studio
  photo), the same reference for every encoding;
- ``ssim_pgt_matlab``: ``ssim_pgt`` in the paper's convention (MATLAB's ``ssim``,
  :func:`pipeline.core.metrics.ssim_matlab`), the SSIM its Tables 2 and 3 are compared on;

for three systems on the same images:

- ``model``: the trained network;
- ``identity``: the baseline of doing nothing (output = the flash image itself, i.e. the
  network output that makes the reconstruction equal to x: ``make_target(x, x)``, 0.5 for
  encodings B and C, x for A);
- ``oracle``: the encoding's ceiling, a perfect network (output = the true target t), whose
  reconstruction is the preconditioned ground truth of eq. 8. For encodings A and B that is
  the studio image itself (SSIM 1, PSNR capped); for C it keeps the flash image's detail
  layer x - BL(x), so even a perfect network stays below the studio image.

``gap_closed`` (per split and scope, for ``ssim_gt`` and ``psnr_gt``) is the share of the
identity-to-oracle gap the model closes, (model - identity) / (oracle - identity), on the
split means; null where it is undefined (the oracle does not beat the identity, or its PSNR
is the 100 dB cap, i.e. exact: encodings A and B). Images are clipped to [0, 1] before
SSIM/PSNR, as they would be shown; PSNR is capped at 100 dB (identical images) so that every
value is finite JSON. SSIM values are fractions (0..1), PSNR in dB, accuracy in percent.

The per-image scores (:func:`per_image_table`, one row per image and system with its person
and source photo) let two runs on the same data be paired person by person
(:mod:`pipeline.evaluation.stats`): the augmented variants of one photo and the photos of one
person are not independent samples, the people are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import EvaluateParams
from pipeline.evaluation.results import (
    GAP_METRICS,
    METRICS,
    PER_IMAGE_COLUMNS,
    PSNR_CAP,
    SYSTEMS,
    gap_closed,
)

log = logging.getLogger(__name__)

TILE_LABELS = ("input", "BL(input)", "output", "precond. gt", "gt")
_MIN_TILE = 128  # sample tiles are upscaled to at least this side so the labels fit


def identity_output(
    x: torch.Tensor, encoding: str, blur: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The network output y whose reconstruction is the flash image x itself (the baseline)."""
    from pipeline.core.encodings import make_target

    # "The studio photo equals the flash photo": the target that o = x would give.
    return make_target(x, x, encoding, blur)


def oracle_output(
    x: torch.Tensor, o: torch.Tensor, encoding: str, blur: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The output of a perfect network: the true target t, whose reconstruction (eq. 2) is the
    preconditioned ground truth (eq. 8): the encoding's ceiling. For A that is o itself."""
    from pipeline.core.encodings import make_target

    return make_target(x, o, encoding, blur)


@dataclass
class BatchOutput:
    """Per-image metrics of one batch (system -> metric -> (N,) array) and its images."""

    metrics: dict[str, dict[str, np.ndarray]]
    images: dict[str, torch.Tensor] = field(default_factory=dict)


def _per_image_loss(
    loss_fn: Callable, y: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    # Eq. 5 centres per image and channel, so the mean of per-image losses is the batch loss.
    return torch.stack(
        [
            (loss_fn(y[i : i + 1], t[i : i + 1]) if mask is None
             else loss_fn(y[i : i + 1], t[i : i + 1], mask=mask[i : i + 1])).reshape(())
            for i in range(len(y))
        ]
    )  # fmt: skip


@torch.no_grad()
def evaluate_batch(
    model: torch.nn.Module,
    flash: torch.Tensor,
    studio: torch.Tensor,
    encoding: str,
    blur: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    mask: torch.Tensor | None = None,
) -> BatchOutput:
    """All metrics of one batch (N,3,H,W in [0,1]) for the model, the identity baseline and
    the oracle (the encoding's ceiling); with ``mask`` (N,1,H,W validity, 1 = photo) over
    the valid pixels only: padding the face crop added is not scored."""
    from pipeline.core import metrics as M
    from pipeline.core.encodings import (
        make_target,
        network_input,
        preconditioned_ground_truth,
        reconstruct,
    )

    x, o = flash.float(), studio.float()
    bl_x = blur(x)
    t = make_target(x, o, encoding, blur)
    y = model(network_input(x, encoding, blur)).float()
    y_id = identity_output(x, encoding, blur)
    y_oracle = oracle_output(x, o, encoding, blur)
    pgt = preconditioned_ground_truth(x, t, encoding).clamp(0, 1)
    gt = o.clamp(0, 1)
    out: dict[str, dict[str, np.ndarray]] = {}
    recon = {}
    for system, output in (("model", y), ("identity", y_id), ("oracle", y_oracle)):
        pred = reconstruct(x, output, encoding).clamp(0, 1)
        recon[system] = pred
        values = {
            "loss": _per_image_loss(loss_fn, output, t, mask),
            "accuracy": M.accuracy(output, t, bl_x, mask),
            "ssim_pgt": M.ssim(pred, pgt, mask),
            "psnr_pgt": M.psnr(pred, pgt, mask),
            "ssim_gt": M.ssim(pred, gt, mask),
            "psnr_gt": M.psnr(pred, gt, mask),
            "ssim_pgt_matlab": M.ssim_matlab(pred, pgt, mask),
        }
        out[system] = {k: _finite(k, v) for k, v in values.items()}
    images = {
        "input": x,
        "bl_input": bl_x.clamp(0, 1),
        "output": recon["model"],
        "pgt": pgt,
        "gt": gt,
    }
    if mask is not None:
        images["valid"] = mask.float().reshape(len(x), 1, *x.shape[-2:])
    return BatchOutput(out, images)


def _finite(name: str, values: torch.Tensor) -> np.ndarray:
    array = values.detach().float().cpu().numpy().reshape(-1).astype(np.float64)
    if name.startswith("psnr"):
        array = np.minimum(np.nan_to_num(array, nan=0.0, posinf=PSNR_CAP), PSNR_CAP)
    return array


def protocol_indices(n: int, k: int, seed: int, split: str) -> np.ndarray:
    """The paper's protocol: ``k`` distinct random image indices out of ``n`` (all when n <= k),
    seeded by ``seed`` and the split name (each split gets its own, reproducible draw)."""
    if n <= k:
        return np.arange(n)
    rng = np.random.default_rng([seed, sum(split.encode())])
    return np.sort(rng.choice(n, size=k, replace=False))


def sample_grid(
    images: Mapping[str, np.ndarray], labels: Sequence[str] = TILE_LABELS
) -> np.ndarray:
    """One row like the paper's Fig. 5: input, BL(input), reconstruction, preconditioned gt,
    gt (HxWx3 float each), labelled above each tile; returns an HxWx3 uint8 image. With
    ``images["valid"]`` (HxW(x1), 1 = photo) the padded pixels show as a grey checkerboard,
    the usual sign for "no image here", in every tile."""
    from PIL import Image, ImageDraw

    tiles = [np.asarray(images[key]) for key in ("input", "bl_input", "output", "pgt", "gt")]
    side = max(_MIN_TILE, tiles[0].shape[0])
    padding = None
    if "valid" in images:
        valid = np.asarray(images["valid"]).reshape(tiles[0].shape[:2]) > 0.5
        shown = Image.fromarray(valid).resize((side, side), Image.Resampling.NEAREST)
        yy, xx = np.indices((side, side))
        checker = np.where((yy // 8 + xx // 8) % 2 == 0, 140, 191).astype(np.uint8)
        padding = (~np.asarray(shown), np.repeat(checker[..., None], 3, axis=2))
    band = 16
    canvas = Image.new("RGB", (side * len(tiles) + 2 * (len(tiles) - 1), side + band), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        if padding is not None and valid.any():
            # The padding's values must not ring into the tile's edge in the bicubic resize.
            tile = np.where(valid[..., None], tile, tile[valid].mean(axis=0))
        array = (np.clip(tile, 0, 1) * 255 + 0.5).astype(np.uint8)
        pil = Image.fromarray(array).resize((side, side), Image.Resampling.BICUBIC)
        if padding is not None:  # after the resize: crisp squares, no padding bled in
            pixels = np.asarray(pil).copy()
            pixels[padding[0]] = padding[1][padding[0]]
            pil = Image.fromarray(pixels)
        left = i * (side + 2)
        canvas.paste(pil, (left, band))
        draw.text((left + 3, 2), label, fill="black")
    return np.asarray(canvas)


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().cpu().permute(1, 2, 0).numpy()


def evaluate_split(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    encoding: str,
    blur: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable,
    device: torch.device,
    batch_size: int = 8,
    keep: Iterable[int] = (),
    desc: str = "evaluate",
) -> tuple[dict[str, dict[str, np.ndarray]], dict[int, dict[str, np.ndarray]]]:
    """Per-image metrics of every image of ``dataset`` (items: flash, studio CHW tensors and
    the validity mask), and the images of the indices in ``keep`` (for the sample grids)."""
    keep = set(keep)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    per_image: dict[str, dict[str, list[np.ndarray]]] = {
        s: {m: [] for m in METRICS} for s in SYSTEMS
    }
    kept: dict[int, dict[str, np.ndarray]] = {}
    start = 0
    for flash, studio, valid in tqdm(loader, desc=desc, unit="batch", leave=False):
        batch = evaluate_batch(
            model, flash.to(device), studio.to(device), encoding, blur, loss_fn, valid.to(device)
        )
        for system in SYSTEMS:
            for metric in METRICS:
                per_image[system][metric].append(batch.metrics[system][metric])
        for i in range(len(flash)):
            if start + i in keep:
                kept[start + i] = {k: _to_hwc(v[i]) for k, v in batch.images.items()}
        start += len(flash)
    stacked = {
        s: {m: np.concatenate(v) if v else np.zeros(0) for m, v in ms.items()}
        for s, ms in per_image.items()
    }
    return stacked, kept


def summarise(
    per_image: Mapping[str, Mapping[str, np.ndarray]], indices: np.ndarray | None = None
) -> dict[str, dict[str, float | None]]:
    """Mean of every metric per system, over ``indices`` (all images when None); with the
    model, identity and oracle systems also ``gap_closed`` (metric -> share or None) for
    :data:`GAP_METRICS`, computed on these means."""
    result: dict[str, dict[str, float | None]] = {}
    for system, metrics in per_image.items():
        result[system] = {}
        for metric, values in metrics.items():
            chosen = values if indices is None else values[indices]
            result[system][metric] = float(np.mean(chosen)) if len(chosen) else float("nan")
    if all(s in result for s in SYSTEMS):
        result["gap_closed"] = {
            m: gap_closed(result["model"][m], result["identity"][m], result["oracle"][m])
            for m in GAP_METRICS
            if all(m in result[s] for s in SYSTEMS)
        }
    return result


def per_image_table(
    split: str,
    records: Sequence[Mapping[str, str]],
    per_image: Mapping[str, Mapping[str, np.ndarray]],
) -> list[dict[str, Any]]:
    """Rows of :data:`PER_IMAGE_COLUMNS`: per image of ``split`` (``records``: its index rows,
    in the order of the scores) and system, the person, the source photo, the variant and every
    metric."""
    rows: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        for system in SYSTEMS:
            row: dict[str, Any] = {
                "split": split,
                "subject": record["subject"],
                "pair_id": record["pair_id"],
                "variant": record["variant"],
                "system": system,
            }
            row.update({m: float(per_image[system][m][i]) for m in METRICS})
            rows.append(row)
    return rows


def evaluate_model(
    model_path: str | os.PathLike,
    index_csv: str | os.PathLike,
    evaluate: EvaluateParams = EvaluateParams(),  # noqa: B008 (frozen, validated defaults)
    *,
    root: str | os.PathLike = ".",
    splits: Sequence[str] = ("train", "val", "test"),
    device: str | None = None,
    samples_dir: str | os.PathLike | None = None,
    per_image_csv: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate the model file on every split of a processed index.

    Returns ``{split: {"images": n, "full": {system: {metric: mean}}, "protocol": {"images": k,
    system: {...}}}}`` (a split without images: ``{"images": 0}``). Writes
    ``<samples_dir>/<split>_<k>.png`` grids for the first ``samples`` protocol images and
    ``per_image_csv`` (:func:`per_image_table` of every split; no timings, so the same model
    on the same data writes the same file).
    The model's own settings (encoding, bilateral filter, centred loss, size) come from its
    model file, so a model is always evaluated the way it was trained.
    """
    from pipeline.core.bilateral import make_blur
    from pipeline.core.losses import make_loss
    from pipeline.io import write_csv, write_image
    from pipeline.models import load_for_inference
    from pipeline.training.data import PairDataset

    # Verified (checksum, zip CRCs) and complete meta; raises on a damaged or foreign file.
    model, meta, dev = load_for_inference(model_path, device or evaluate.device)
    encoding = meta.encoding
    size = meta.size
    blur = make_blur(meta.bilateral, size)
    loss_fn = make_loss(meta.centred)
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    if samples_dir is not None:
        samples_dir = Path(samples_dir)
        samples_dir.mkdir(parents=True, exist_ok=True)
        for stale in samples_dir.glob("*.png"):
            stale.unlink()
    for split in splits:
        dataset = PairDataset(index_csv, split, root=root, size=size)
        n = len(dataset)
        if n == 0:
            log.warning("split %s has no images in %s: skipped", split, index_csv)
            results[split] = {"images": 0}
            continue
        chosen = protocol_indices(n, evaluate.protocol_images, evaluate.seed, split)
        shown = [int(i) for i in chosen[: evaluate.samples]]
        per_image, kept = evaluate_split(
            model,
            dataset,
            encoding,
            blur,
            loss_fn,
            dev,
            evaluate.batch_size,
            shown,
            desc=f"evaluate {split}",
        )
        results[split] = {
            "images": n,
            "full": summarise(per_image),
            "protocol": {"images": len(chosen), **summarise(per_image, chosen)},
        }
        rows += per_image_table(split, dataset.records, per_image)
        if samples_dir is not None:
            for k, index in enumerate(shown):
                write_image(samples_dir / f"{split}_{k}.png", sample_grid(kept[index]))
    if per_image_csv is not None:
        import pandas as pd

        # 8 significant digits: float32 scores written the same on every run (no float noise).
        table = pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))
        write_csv(per_image_csv, table, float_format="%.8g")
    return results


__all__ = [
    "GAP_METRICS",
    "METRICS",
    "PER_IMAGE_COLUMNS",
    "PSNR_CAP",
    "SYSTEMS",
    "BatchOutput",
    "evaluate_batch",
    "evaluate_model",
    "evaluate_split",
    "gap_closed",
    "identity_output",
    "oracle_output",
    "per_image_table",
    "protocol_indices",
    "sample_grid",
    "summarise",
]
