"""The register stage over a dataset: every manifest pair in worker processes, then the folder.

Per pair (in a worker): read both photos, :func:`pipeline.align.mi.register`, compare the
faces after warping (:func:`pipeline.align.facecheck.check_faces`), write a preview. Then, in
this process, once every pair is known: judge each pair against the folder
(:mod:`pipeline.align.plausibility`), reject the suspect ones (``register.on_suspect``), and
write each pair's JSON record. Records hold no timings (they go to the metrics only), so a
rerun writes the same bytes and DVC re-runs nothing downstream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.align.facecheck import check_faces
from pipeline.align.geometry import grid_error, identity_matrix, rescale_matrix, resize, warp_image
from pipeline.align.mi import Registration, register
from pipeline.align.plausibility import apply_verdicts, judge_folder, mi_limit
from pipeline.config import RegisterParams
from pipeline.io import ImageReadError, read_image, write_image, write_json
from pipeline.parallel import parallel_map

TIMING_KEYS = ("seconds", "cpu_seconds", "face_seconds")
"""In-memory record keys for the metrics; never written to a pair's JSON file."""


def preview(
    fixed: np.ndarray, moving: np.ndarray, matrix: np.ndarray, side: int = 256
) -> np.ndarray:
    """uint8 RGB strip for people: fixed | moving aligned by ``matrix`` | checkerboard of both.

    Each panel has its longer side ``side``. The moving image is shrunk first and then warped
    with the matrix rescaled to the preview (one interpolation, no aliasing).
    """
    fh, fw = fixed.shape[:2]
    mh, mw = moving.shape[:2]
    s = min(1.0, side / max(fw, fh))
    pw, ph = max(1, round(fw * s)), max(1, round(fh * s))
    small_fixed = _rgb(resize(np.asarray(fixed, dtype=np.float32), pw, ph))
    mpw, mph = max(1, round(mw * s)), max(1, round(mh * s))
    small_moving = _rgb(resize(np.asarray(moving, dtype=np.float32), mpw, mph))
    small_matrix = rescale_matrix(matrix, (pw / fw, ph / fh), (mpw / mw, mph / mh))
    aligned = warp_image(small_moving, small_matrix, (pw, ph))
    tile = max(4, max(pw, ph) // 8)
    yy, xx = np.mgrid[0:ph, 0:pw]
    board = ((yy // tile + xx // tile) % 2 == 0)[..., None]
    checker = np.where(board, small_fixed, aligned)
    gap = np.ones((ph, 4, 3), dtype=np.float32)
    strip = np.concatenate([small_fixed, gap, aligned, gap, checker], axis=1)
    return (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _unusable(pair_id: str, reason: str) -> dict[str, Any]:
    return {
        "pair_id": pair_id,
        "matrix": np.eye(2, 3).tolist(),
        "status": "rejected",
        "reason": reason,
        "mi_before": None,
        "mi_after": None,
        "iterations": 0,
        "seconds": 0.0,
        "cpu_seconds": 0.0,
        "face_seconds": 0.0,
    }


def register_pair(
    pair_id: str,
    fixed_path: str | Path,
    moving_path: str | Path,
    out_dir: str | Path | None,
    params: RegisterParams | None = None,
) -> dict[str, Any]:
    """Register one pair of image files and compare its faces; write its preview.

    Returns the record ({pair_id, matrix, status, reason, mi_before, mi_after, motion, faces,
    ..., and the timing keys}); writes ``out_dir/previews/<pair_id>.jpg`` (the applied matrix)
    unless ``out_dir`` is None. An unreadable or unusable image gives status "rejected" with
    the file and the reason. The pair's JSON is written by :func:`write_records`, once the
    folder has judged the pair.
    """
    params = params if params is not None else RegisterParams()
    try:
        fixed = read_image(fixed_path)
        moving = read_image(moving_path)
    except ImageReadError as error:
        return _unusable(pair_id, f"unreadable image {error.path}: {error.reason}")
    try:
        result = register(fixed, moving, params, threads=1)
    except ValueError as error:  # e.g. an image too small to register
        return _unusable(pair_id, f"unusable pair {fixed_path}: {error}")
    record = pair_record(pair_id, fixed, moving, result, params.face_check)
    if out_dir is not None:
        write_image(
            Path(out_dir) / "previews" / f"{pair_id}.jpg",
            preview(fixed, moving, result.matrix, params.preview_side),
        )
    return record


def pair_record(
    pair_id: str, fixed: np.ndarray, moving: np.ndarray, result: Registration, face_check: bool
) -> dict[str, Any]:
    """The record of one registered pair: the result, the face agreement, the timings."""
    record: dict[str, Any] = {"pair_id": pair_id, **result.to_dict()}
    record["seconds"], record["cpu_seconds"] = result.seconds, result.cpu_seconds
    start = time.process_time()
    if face_check and result.status != "rejected":
        record["faces"] = check_faces(fixed, moving, result.matrix).to_dict()
    record["face_seconds"] = time.process_time() - start
    return record


def _register_job(job: tuple[str, str, str, str | None, RegisterParams]) -> dict[str, Any]:
    return register_pair(*job)


def register_dataset(
    manifest: Any,
    out_dir: str | Path | None,
    params: RegisterParams | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Register every manifest pair (columns pair_id, flash_path, studio_path), then judge them.

    Pairs run over ``workers`` processes (default ``params.workers``), ITK capped at one
    thread each. Suspect pairs are marked (``suspect``: the reasons) and, with
    ``params.on_suspect`` "reject", rejected. Writes ``<pair_id>.json`` and the previews into
    ``out_dir`` (nothing when None). Returns the records in manifest order, with timings.
    """
    from tqdm import tqdm

    params = params if params is not None else RegisterParams()
    target = None if out_dir is None else str(out_dir)
    jobs = [
        (str(row.pair_id), str(row.flash_path), str(row.studio_path), target, params)
        for row in manifest.itertuples()
    ]
    # Fresh worker processes (forkserver), not forks of this one: a caller that already ran
    # OpenCV (ingest in `deepflash evaluate`, a test) would hand forked workers a dead
    # OpenCV thread pool, and they hang. The fork server loads face_recognition's models
    # (a few seconds) once for all workers.
    count = params.workers if workers is None else workers
    preload = (__name__, "face_recognition.api") if params.face_check else (__name__,)
    results = parallel_map(_register_job, jobs, count, start_method="forkserver", preload=preload)
    records = list(
        tqdm(results, total=len(jobs), desc="register", unit="pair", disable=not progress)
    )
    verdicts = judge_folder(records, params.min_folder_pairs, params.outlier_z)
    apply_verdicts(records, verdicts, params.on_suspect)
    if out_dir is not None:
        write_records(records, out_dir)
    return records


def write_records(records: list[dict[str, Any]], out_dir: str | Path) -> None:
    """Write each record as ``out_dir/<pair_id>.json`` without its timings (same bytes per run)."""
    for record in records:
        saved = {k: v for k, v in record.items() if k not in TIMING_KEYS}
        write_json(Path(out_dir) / f"{record['pair_id']}.json", saved)


def rejected_rows(records: list[dict[str, Any]], manifest: Any) -> list[tuple[str, str]]:
    """(file, reason) rows of the rejected pairs: the studio file and why, pair id first."""
    studio = {str(row.pair_id): str(row.studio_path) for row in manifest.itertuples()}
    return [
        (studio.get(r["pair_id"], r["pair_id"]), f"pair {r['pair_id']}: {r['reason']}")
        for r in records
        if r["status"] == "rejected"
    ]


def read_truth_matrices(raw_dir: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """(subject, pose) -> true 2x3 matrix from ``raw_dir/truth.csv`` (the demo's); {} if absent."""
    path = Path(raw_dir) / "truth.csv"
    if not path.is_file():
        return {}
    from pipeline.datasets.truth import read_truth  # only demo data has a truth file

    truth = read_truth(path)
    return {(str(r.subject), str(r.pose)): r.matrix for r in truth.itertuples()}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def registration_metrics(
    records: list[dict[str, Any]],
    manifest: Any,
    truth: dict[tuple[str, str], np.ndarray],
    params: RegisterParams | None = None,
) -> dict[str, Any]:
    """metrics/register.json: counts, failures, suspects with reasons, timings, residual errors."""
    params = params if params is not None else RegisterParams()
    statuses = [r["status"] for r in records]
    failures = [r for r in records if r["status"] != "ok"]
    reasons: dict[str, int] = {}
    for r in failures:
        kind = (r["reason"] or "unknown").split(":")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    gains = [
        r["mi_after"] - r["mi_before"]
        for r in records
        if r["status"] == "ok" and r["mi_after"] is not None and r["mi_before"] is not None
    ]
    timed = [r for r in records if r.get("iterations")]
    live_mi = [r["mi_after"] for r in records if r["status"] != "rejected" and r["mi_after"]]
    metrics: dict[str, Any] = {
        "pairs": len(records),
        "ok": statuses.count("ok"),
        "identity_fallback": statuses.count("identity_fallback"),
        "rejected": statuses.count("rejected"),
        "failures": len(failures),
        "failure_reasons": reasons,
        "suspect": sum(1 for r in records if r.get("suspect")),
        "suspect_pairs": {
            r["pair_id"]: "; ".join(r["suspect"]) for r in records if r.get("suspect")
        },
        "on_suspect": params.on_suspect,
        "median_seconds": _median([r["seconds"] for r in timed]),
        "median_cpu_seconds": _median([r["cpu_seconds"] for r in timed]),
        "max_cpu_seconds": max((r["cpu_seconds"] for r in timed), default=None),
        "median_face_seconds": _median([r.get("face_seconds", 0.0) for r in timed]),
        "median_mi_gain": _median(gains),
    }
    if len(live_mi) >= params.min_folder_pairs:
        median, low = mi_limit(live_mi, params.outlier_z)
        metrics["mi_after_median"], metrics["mi_after_limit"] = median, low
    residual, before = [], []
    rows = manifest.set_index("pair_id") if truth else None
    for r in records if truth else []:
        row = rows.loc[r["pair_id"]]
        true = truth.get((str(row.subject), str(row.pose)))
        if true is None or r["status"] == "rejected":
            continue
        size = (int(row.width), int(row.height))
        studio = (int(row.studio_width), int(row.studio_height))
        residual.append(grid_error(np.asarray(r["matrix"]), true, size))
        before.append(grid_error(identity_matrix(size, studio), true, size))
    if residual:
        metrics["residual_error_px"] = {
            "mean": float(np.mean(residual)),
            "median": float(np.median(residual)),
            "max": float(np.max(residual)),
            "pairs": len(residual),
        }
        # The same measure with no registration at all, for scale.
        metrics["unregistered_error_px"] = {
            "mean": float(np.mean(before)),
            "median": float(np.median(before)),
        }
    return metrics


__all__ = [
    "TIMING_KEYS",
    "pair_record",
    "preview",
    "read_truth_matrices",
    "register_dataset",
    "register_pair",
    "registration_metrics",
    "rejected_rows",
    "write_records",
]
