"""Mutual-information affine registration of a studio shot onto its flash shot (SimpleITK).

The studio photo (moving image M) is taken about 400 ms before the flash photo (fixed image R)
and the pose moves in between; the paper aligned them with MATLAB ``imregister`` in its
multimodal configuration (Mattes mutual information, one-plus-one evolutionary optimizer). We
do the same with SimpleITK: affine transform (6 degrees of freedom), Mattes MI, centred
initialisation, multi-resolution pyramid, seeded metric sampling; estimated on a copy
downscaled to ``max_side`` and returned as a matrix in full-resolution pixel coordinates.

Conventions (every stage and test relies on them):

* pixel coordinates: x to the right, y down, pixel centres on integers (OpenCV's convention).
* ``Registration.matrix`` is a 2x3 affine mapping a FIXED pixel (x, y) to the matching MOVING
  pixel, so ``cv2.warpAffine(moving, matrix, (w, h), flags=cv2.INTER_LINEAR |
  cv2.WARP_INVERSE_MAP)`` aligns moving onto fixed. ITK's transforms go the same way (they map
  fixed-image points to moving-image points).
* resizing by a factor s (``cv2.resize``, INTER_AREA) maps x to ``(x + 0.5) * s - 0.5``.

The default optimizer ("regular_step") runs, coarse to fine: a similarity stage (Powell) on a
~64 px copy, then the affine by regular-step gradient descent on each pyramid level. The
"one_plus_one" optimizer reproduces MATLAB's multimodal configuration, for comparison.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import SimpleITK as sitk

from pipeline.io import ImageReadError, read_image, write_image, write_json
from pipeline.parallel import parallel_map

OPTIMIZERS = ("regular_step", "one_plus_one")
STATUSES = ("ok", "identity_fallback", "rejected")

# Degenerate-result limits (the issue's): two shots of one pose ~400 ms apart never differ by a
# scale or a shear like these; such an estimate is a failed optimisation, not a pose change.
SCALE_RANGE = (0.7, 1.4)
MAX_SHEAR = 0.3

# Sampling: at least MIN_SAMPLES pixels per level (a coarse level sampled at the fine level's
# fraction gives noisy MI gradients); PRE_SAMPLES for the similarity stage on a PRE_SIDE copy;
# MI_SAMPLES (a fixed seeded set) for the reported MI before/after.
MIN_SAMPLES = 8192
PRE_SIDE = 64
PRE_SAMPLES = 4096
PRE_ITERATIONS = 10
PRE_LINE_ITERATIONS = 20
MI_SAMPLES = 32768
# Coarse levels stop at a 10x larger step than the finest: the next level refines anyway.
COARSE_MIN_STEP = 10.0

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class RegistrationOptions:
    """Settings of :func:`register` (keyword options; the stage fills them from params.yaml).

    ``seed`` drives the metric's random sampling and the one-plus-one optimizer's mutations;
    SimpleITK seeds from the wall clock when given 0, so ``seed + 1`` is what ITK sees.
    ``threads`` caps ITK's threads for this call: 1 (the default) makes results independent of
    the machine's core count (ITK sums per-thread histograms in a thread-dependent order) and
    lets the stage run one pair per core. ``sampling_fraction`` is the share of the finest
    level's pixels the metric samples (1.0: every pixel, MATLAB's ``UseAllPixels``).
    ``learning_rate`` and ``min_step`` are the regular-step optimizer's first and last step
    lengths, in pixels of the level being optimised. ``init`` is ITK's centred initialisation:
    ``geometry`` (image centres; the default, indifferent to the flash's lighting) or
    ``moments`` (intensity centres of mass). The one-plus-one settings default to MATLAB's
    ``imregconfig('multimodal')`` (with ``iterations=100``, ``sampling_fraction=1.0``).
    """

    max_side: int = 512
    optimizer: Literal["regular_step", "one_plus_one"] = "regular_step"
    iterations: int = 200
    levels: int = 3
    histogram_bins: int = 50
    sampling_fraction: float = 0.1
    seed: int = 0
    on_failure: Literal["identity", "reject"] = "identity"
    threads: int = 1
    init: Literal["geometry", "moments"] = "geometry"
    learning_rate: float = 2.0
    min_step: float = 0.005
    growth_factor: float = 1.05
    epsilon: float = 1.5e-6
    initial_radius: float = 6.25e-3

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.on_failure not in ("identity", "reject"):
            raise ValueError(f"on_failure must be 'identity' or 'reject', got {self.on_failure!r}")
        if self.init not in ("geometry", "moments"):
            raise ValueError(f"init must be 'geometry' or 'moments', got {self.init!r}")
        if not 0 < self.sampling_fraction <= 1:
            raise ValueError(f"sampling_fraction must be in (0, 1], got {self.sampling_fraction}")
        for name in ("iterations", "levels", "histogram_bins", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be >= 32, got {self.max_side}")
        for name in ("learning_rate", "min_step", "initial_radius", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {self.growth_factor}")


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`.

    ``matrix`` is what to apply (2x3, full-resolution pixels, fixed -> moving): the estimate when
    ``status`` is "ok", the identity otherwise ("identity_fallback"; "rejected": callers skip
    the pair). ``estimated`` keeps the raw estimate (NaN when none) for diagnosis. ``mi_before``
    and ``mi_after`` are Mattes mutual information (nats, larger is better) of the downscaled
    pair on one fixed set of pixels, at the identity and at the applied matrix. ``seconds`` is
    wall time, ``cpu_seconds`` this process's CPU time (equal on an idle core with threads=1;
    the honest figure on a busy machine).
    """

    matrix: np.ndarray
    estimated: np.ndarray
    status: str
    reason: str
    mi_before: float
    mi_after: float
    iterations: int
    seconds: float
    fixed_size: tuple[int, int]
    moving_size: tuple[int, int]
    stop_condition: str = ""
    level_iterations: tuple[int, ...] = field(default_factory=tuple)
    cpu_seconds: float = float("nan")

    @property
    def ok(self) -> bool:
        """True when the estimate passed every check and is the applied matrix."""
        return self.status == "ok"

    def warp(self, image: np.ndarray, border_mode: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """Align the full-resolution moving image onto the fixed image's grid (one interpolation)."""
        return warp_image(image, self.matrix, self.fixed_size, border_mode=border_mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record: the register stage's per-pair file, without ``pair_id``."""
        return {
            "matrix": np.asarray(self.matrix, dtype=float).tolist(),
            "estimated": [[_finite_or_none(v) for v in row] for row in self.estimated],
            "status": self.status,
            "reason": self.reason,
            "mi_before": _finite_or_none(self.mi_before),
            "mi_after": _finite_or_none(self.mi_after),
            "iterations": int(self.iterations),
            "level_iterations": [int(i) for i in self.level_iterations],
            "seconds": round(float(self.seconds), 4),
            "cpu_seconds": round(float(self.cpu_seconds), 4),
            "fixed_size": list(self.fixed_size),
            "moving_size": list(self.moving_size),
            "stop_condition": self.stop_condition,
        }


def register(fixed: np.ndarray, moving: np.ndarray, **options: Any) -> Registration:
    """Estimate the affine that aligns ``moving`` onto ``fixed`` by Mattes mutual information.

    ``fixed`` and ``moving``: HxW grey or HxWx3/4 colour arrays of any dtype (their sizes may
    differ: the same field of view at another resolution). ``options``: the fields of
    :class:`RegistrationOptions` (unknown names raise TypeError). A failed optimisation does not
    raise: MI not improved, a degenerate matrix (scale outside SCALE_RANGE, shear above
    MAX_SHEAR, reflection), NaN, no convergence or an ITK error is recorded in ``reason`` and
    the identity is returned instead, with ``status`` "identity_fallback" or "rejected" as
    ``on_failure`` says. Unusable arrays (wrong shape, NaN, tiny) raise ValueError.
    """
    opts = RegistrationOptions(**options)
    start, cpu_start = time.perf_counter(), time.process_time()
    fixed_grey = to_grey(fixed, "fixed")
    moving_grey = to_grey(moving, "moving")
    fixed_size = (fixed_grey.shape[1], fixed_grey.shape[0])
    moving_size = (moving_grey.shape[1], moving_grey.shape[0])
    fixed_levels, moving_levels, unit = _pyramid(
        fixed_grey, moving_grey, opts.max_side, opts.levels
    )

    estimated = np.full((2, 3), np.nan)
    stop = ""
    level_iterations: list[int] = []
    mi_before = mi_after = float("nan")
    # The per-method thread count does not reach every ITK filter and metric evaluation: cap
    # the process default too for this call (reruns are bit-identical only with 1 thread).
    default_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(opts.threads)
    try:
        reason = _flat(fixed_grey, "fixed") or _flat(moving_grey, "moving")
        if not reason:
            identity = sitk.AffineTransform(2)
            mi_before = _mutual_information(fixed_levels[-1], moving_levels[-1], identity, opts)
            transform, stop, level_iterations = _optimise(fixed_levels, moving_levels, opts)
            estimated = _pixel_matrix(transform, unit, fixed_size, moving_size)
            mi_after = _mutual_information(fixed_levels[-1], moving_levels[-1], transform, opts)
            reason = _failure(transform, estimated, mi_before, mi_after, stop, opts)
    except RuntimeError as error:  # ITK errors, e.g. "All samples map outside moving image"
        reason = "itk_error: " + _first_line(str(error).split("ITK ERROR:")[-1])
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(default_threads)

    if not reason:
        status, matrix = "ok", estimated
    elif reason.startswith("mi_not_improved") and _near(estimated, fixed_size, moving_size, opts):
        # Already aligned: the estimate is a sub-pixel wobble around the identity that the
        # metric does not prefer. The identity is the right answer, not a failure to reject.
        status, matrix = "ok", identity_matrix(fixed_size, moving_size)
        reason = "aligned: " + reason
        mi_after = mi_before
    else:
        status = "identity_fallback" if opts.on_failure == "identity" else "rejected"
        matrix = identity_matrix(fixed_size, moving_size)
        # What is applied is the identity: its MI is the "before" value.
        mi_after = mi_before
    return Registration(
        matrix=matrix,
        estimated=estimated,
        status=status,
        reason=reason,
        mi_before=float(mi_before),
        mi_after=float(mi_after),
        iterations=int(sum(level_iterations)),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        fixed_size=fixed_size,
        moving_size=moving_size,
        stop_condition=_first_line(stop),
        level_iterations=tuple(level_iterations),
    )


# --- geometry helpers (public: the stage, the crop stage, the benchmark and the tests) -------


def to_grey(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Float32 luminance of a grey or colour array of any dtype (integers scaled to [0, 1])."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"{name}: expected an HxW or HxWx3/4 image, got shape {array.shape}")
    if min(array.shape[:2]) < 16:
        raise ValueError(f"{name}: image too small to register ({array.shape[1]}x{array.shape[0]})")
    if array.dtype == bool:
        array = array.astype(np.float32)
    elif array.dtype.kind in "ui":
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif array.dtype.kind == "f":
        array = array.astype(np.float32)
    else:
        raise ValueError(f"{name}: unsupported dtype {array.dtype}")
    if array.ndim == 3:
        # Rec. 601 luma (alpha ignored): MI needs one channel, and the flash changes mostly
        # brightness and colour balance, which luma and MI both tolerate.
        array = array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def scale_matrix(sx: float, sy: float | None = None) -> np.ndarray:
    """3x3 map from pixels of an image to pixels of its copy resized by (sx, sy).

    Pixel-centre convention of ``cv2.resize``: ``x_small = (x + 0.5) * s - 0.5``.
    """
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def rescale_matrix(
    matrix: np.ndarray,
    fixed_scale: tuple[float, float] | float,
    moving_scale: tuple[float, float] | float,
) -> np.ndarray:
    """The fixed -> moving matrix between resized copies of both images.

    ``fixed_scale``/``moving_scale``: resize factors (new size / old size; one number or per
    axis) of the fixed and moving images. Takes an estimate on small copies to full resolution
    (factors > 1) or a full-resolution matrix to a preview (factors < 1), with no resampling.
    """
    fx, fy = (fixed_scale, fixed_scale) if np.isscalar(fixed_scale) else fixed_scale
    mx, my = (moving_scale, moving_scale) if np.isscalar(moving_scale) else moving_scale
    full = np.vstack([np.asarray(matrix, dtype=float), [0.0, 0.0, 1.0]])
    return (scale_matrix(mx, my) @ full @ np.linalg.inv(scale_matrix(fx, fy)))[:2]


def identity_matrix(fixed_size: tuple[int, int], moving_size: tuple[int, int]) -> np.ndarray:
    """The "no motion" matrix between (w, h) images showing the same field of view."""
    scale = (moving_size[0] / fixed_size[0], moving_size[1] / fixed_size[1])
    return rescale_matrix(IDENTITY, 1.0, scale)


def warp_image(
    moving: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    border_mode: int = cv2.BORDER_REPLICATE,
) -> np.ndarray:
    """Resample ``moving`` onto a (w, h) fixed grid with a fixed -> moving pixel matrix."""
    return cv2.warpAffine(
        np.asarray(moving),
        np.asarray(matrix, dtype=np.float64),
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=border_mode,
    )


def grid_error(
    estimated: np.ndarray, truth: np.ndarray, size: tuple[int, int], steps: int = 16
) -> float:
    """Mean displacement (px) between two fixed -> moving matrices on a grid over a (w, h) image.

    ``steps`` x ``steps`` points spanning the image corner to corner; this is the "residual
    error" of metrics/register.json and the accuracy measure of the tests and the benchmark.
    """
    w, h = size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, steps), np.linspace(0, h - 1, steps))
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    diff = (np.asarray(estimated, dtype=float) - np.asarray(truth, dtype=float)) @ points
    return float(np.hypot(diff[0], diff[1]).mean())


def decompose(matrix: np.ndarray) -> dict[str, float]:
    """Rotation (degrees), scales and shear of A = R(angle) @ [[sx, sx * shear], [0, sy]].

    This is the demo's convention (M = R . scale . Shear). For a fixed -> moving matrix,
    ``angle`` turns fixed points into moving points (y down, so positive is clockwise on
    screen). ``det`` < 0 means a reflection.
    """
    a = np.asarray(matrix, dtype=float)[:2, :2]
    q, r = np.linalg.qr(a)
    # Make the triangular factor's diagonal positive so that q is a rotation (or a reflection).
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    q, r = q * signs, (r.T * signs).T
    det_q = float(np.sign(np.linalg.det(q))) or 1.0
    return {
        "angle": math.degrees(math.atan2(q[1, 0], q[0, 0])),
        "sx": float(r[0, 0]),
        "sy": float(r[1, 1]) * det_q,
        "shear": float(r[0, 1] / r[0, 0]) if r[0, 0] else float("inf"),
        "det": float(np.linalg.det(a)),
    }


# --- files: the register stage's per-pair work (one process per pair) ----------------------


def cap_itk_threads(threads: int = 1) -> None:
    """Cap ITK's default thread count in this process (a pool initializer for the stage).

    ITK uses every core per call by default; with one pair per process that oversubscribes
    the machine. :func:`register` also passes ``threads`` to each registration it builds.
    """
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    cv2.setNumThreads(1)


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
    small_fixed = _rgb(_resize(np.asarray(fixed, dtype=np.float32), pw, ph))
    mpw, mph = max(1, round(mw * s)), max(1, round(mh * s))
    small_moving = _rgb(_resize(np.asarray(moving, dtype=np.float32), mpw, mph))
    small_matrix = rescale_matrix(matrix, (pw / fw, ph / fh), (mpw / mw, mph / mh))
    aligned = warp_image(small_moving, small_matrix, (pw, ph))
    tile = max(4, max(pw, ph) // 8)
    yy, xx = np.mgrid[0:ph, 0:pw]
    board = ((yy // tile + xx // tile) % 2 == 0)[..., None]
    checker = np.where(board, small_fixed, aligned)
    gap = np.ones((ph, 4, 3), dtype=np.float32)
    strip = np.concatenate([small_fixed, gap, aligned, gap, checker], axis=1)
    return (np.clip(strip, 0, 1) * 255 + 0.5).astype(np.uint8)


def register_files(
    pair_id: str,
    fixed_path: str | Path,
    moving_path: str | Path,
    out_dir: str | Path,
    preview_side: int = 256,
    **options: Any,
) -> dict[str, Any]:
    """Register one pair of image files; write ``<pair_id>.json`` and ``previews/<pair_id>.jpg``.

    Returns the JSON record ({pair_id, matrix, status, reason, mi_before, mi_after, iterations,
    seconds, ...}). An unreadable image gives status "rejected" with the file and the reason
    (and no preview). The preview always shows the applied matrix, never a rejected estimate.
    """
    out_dir = Path(out_dir)
    try:
        fixed = read_image(fixed_path)
        moving = read_image(moving_path)
        result = register(fixed, moving, **options)
    except ImageReadError as error:
        return _rejected_record(out_dir, pair_id, f"unreadable image {error.path}: {error.reason}")
    except ValueError as error:  # e.g. an image too small to register
        return _rejected_record(out_dir, pair_id, f"unusable pair {fixed_path}: {error}")
    record = {"pair_id": pair_id, **result.to_dict()}
    write_json(out_dir / f"{pair_id}.json", record)
    write_image(
        out_dir / "previews" / f"{pair_id}.jpg", preview(fixed, moving, result.matrix, preview_side)
    )
    return record


def registration_options(group: Any) -> dict[str, Any]:
    """:func:`register` keyword arguments from the ``register`` params group (one mapping for
    the stage and ``deepflash evaluate``)."""
    return {
        "max_side": group.max_side,
        "optimizer": group.optimizer,
        "iterations": group.iterations,
        "levels": group.levels,
        "histogram_bins": group.histogram_bins,
        "sampling_fraction": group.sampling_fraction,
        "seed": group.seed,
        "on_failure": group.on_failure,
    }


def _register_job(job: tuple[str, str, str, str, int, dict[str, Any]]) -> dict[str, Any]:
    pair_id, flash, studio, out_dir, preview_side, options = job
    return register_files(pair_id, flash, studio, out_dir, preview_side, **options)


def register_dataset(
    manifest: Any,
    out_dir: str | Path,
    *,
    workers: int = 1,
    preview_side: int = 256,
    progress: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Register every manifest pair (columns pair_id, flash_path, studio_path) into ``out_dir``.

    Pairs run over ``workers`` processes; each registration caps ITK at ``threads`` (default
    1) so the workers do not oversubscribe the cores. Returns the per-pair records in
    manifest order; an unusable pair is a "rejected" record, never an exception.
    """
    from tqdm import tqdm

    options = {"threads": 1, **options}
    jobs = [
        (row.pair_id, row.flash_path, row.studio_path, str(out_dir), preview_side, options)
        for row in manifest.itertuples()
    ]
    results = parallel_map(_register_job, jobs, workers)
    return list(tqdm(results, total=len(jobs), desc="register", unit="pair", disable=not progress))


def read_truth_matrices(raw_dir: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """(subject, pose) -> true 2x3 matrix from ``raw_dir/truth.csv`` (the demo's); {} if absent."""
    path = Path(raw_dir) / "truth.csv"
    if not path.is_file():
        return {}
    from pipeline.datasets.truth import read_truth  # only demo data has a truth file

    truth = read_truth(path)
    return {(str(r.subject), str(r.pose)): r.matrix for r in truth.itertuples()}


def registration_metrics(
    records: list[dict[str, Any]], manifest: Any, truth: dict[tuple[str, str], np.ndarray]
) -> dict[str, Any]:
    """metrics/register.json: counts, failures, medians and (with truth) residual errors in px."""
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
    metrics: dict[str, Any] = {
        "pairs": len(records),
        "ok": statuses.count("ok"),
        "identity_fallback": statuses.count("identity_fallback"),
        "rejected": statuses.count("rejected"),
        "failures": len(failures),
        "failure_reasons": reasons,
        "median_seconds": float(np.median([r["seconds"] for r in timed])) if timed else None,
        "median_cpu_seconds": (
            float(np.median([r["cpu_seconds"] for r in timed])) if timed else None
        ),
        "median_mi_gain": float(np.median(gains)) if gains else None,
    }
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


# --- internals ---------------------------------------------------------------------------


def _pyramid(
    fixed: np.ndarray, moving: np.ndarray, max_side: int, levels: int
) -> tuple[list[sitk.Image], list[sitk.Image], float]:
    """Coarse-to-fine SimpleITK copies of both images in a normalised physical frame.

    Physical coordinate = full-resolution FIXED pixel coordinate / ``unit``, with ``unit`` half
    the fixed image's diagonal, so image points lie within about 1 of the centre. In that frame
    a unit change of a matrix term and of a translation move points by similar amounts; the
    regular-step optimizer takes steps of a fixed length in raw parameter units (its scales only
    steer the direction), so without this normalisation a step sized for translations in pixels
    would wreck the matrix terms, and one sized for the matrix would barely move translations.

    The moving copies get the same physical extent as the fixed ones (a studio shot at another
    resolution shows the same field of view), so the physical transform stays near the identity
    and its scale/shear checks are meaningful whatever the two resolutions are.

    Level l (0 = coarsest) is an INTER_AREA copy at 1 / 2^(levels-1-l) of the ``max_side``
    copy: building the pyramid here (box filter, one pass) is cheaper than ITK's per-level
    Gaussian smoothing of the full copy, and ITK then works on small images only.
    """
    fh, fw = fixed.shape
    unit = 0.5 * math.hypot(fw, fh)
    pyramids: list[list[sitk.Image]] = []
    for grey in (fixed, moving):
        h, w = grey.shape
        s = min(1.0, max_side / max(h, w))
        base = _resize(grey, max(8, round(w * s)), max(8, round(h * s)))
        pyramid = []
        for level in range(levels):
            f = 2 ** (levels - 1 - level)
            small_w, small_h = max(8, round(base.shape[1] / f)), max(8, round(base.shape[0] / f))
            small = _resize(base, small_w, small_h)
            image = sitk.GetImageFromArray(small)
            # Pixel centre i of the copy lies at full-res fixed coordinate (i + 0.5) * step - 0.5.
            step = (fw / small_w, fh / small_h)
            image.SetSpacing((step[0] / unit, step[1] / unit))
            image.SetOrigin(((0.5 * step[0] - 0.5) / unit, (0.5 * step[1] - 0.5) / unit))
            pyramid.append(image)
        pyramids.append(pyramid)
    return pyramids[0], pyramids[1], unit


def _shrink_to(image: sitk.Image, side: int) -> sitk.Image:
    """A copy of a pyramid level with its longer side at most ``side`` (same physical frame)."""
    w, h = image.GetSize()
    s = side / max(w, h)
    if s >= 1:
        return image
    small_w, small_h = max(8, round(w * s)), max(8, round(h * s))
    array = _resize(sitk.GetArrayViewFromImage(image), small_w, small_h)
    out = sitk.GetImageFromArray(array)
    spacing = image.GetSpacing()
    origin = image.GetOrigin()
    # Same pixel-centre rule as _pyramid: extent kept, spacing scaled, origin at the new centre.
    new_spacing = (spacing[0] * w / small_w, spacing[1] * h / small_h)
    out.SetSpacing(new_spacing)
    out.SetOrigin(
        (
            origin[0] - 0.5 * spacing[0] + 0.5 * new_spacing[0],
            origin[1] - 0.5 * spacing[1] + 0.5 * new_spacing[1],
        )
    )
    return out


def _resize(grey: np.ndarray, w: int, h: int) -> np.ndarray:
    if (w, h) == (grey.shape[1], grey.shape[0]):
        return grey
    interpolation = cv2.INTER_AREA if w < grey.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(grey, (w, h), interpolation=interpolation)


def _method(opts: RegistrationOptions, sampling: float) -> sitk.ImageRegistrationMethod:
    """A Mattes-MI registration method with this call's bins, threads and seeded sampling."""
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(opts.threads)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=opts.histogram_bins)
    if sampling >= 1:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        # seed + 1: SimpleITK treats seed 0 as "seed from the wall clock".
        method.SetMetricSamplingPercentage(sampling, opts.seed + 1)
    # Central differences at the sampled points only: more exact than ITK's smoothed gradient
    # image (about half the final error on flash-like pairs) and no whole-image filter per call.
    method.MetricUseMovingImageGradientFilterOff()
    method.MetricUseFixedImageGradientFilterOff()
    method.SetInterpolator(sitk.sitkLinear)
    return method


def _fraction(
    image: sitk.Image, fraction: float, minimum: int, maximum: int | None = None
) -> float:
    """Sampling fraction giving at least ``minimum`` (at most ``maximum``) pixels of ``image``."""
    pixels = float(np.prod(image.GetSize()))
    count = max(fraction * pixels, minimum)
    if maximum is not None:
        count = min(count, maximum)
    return min(1.0, count / pixels)


def _mutual_information(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, opts: RegistrationOptions
) -> float:
    """Mattes MI (positive, nats) of the downscaled pair on a fixed, seeded set of pixels.

    Before and after are evaluated on the same pixels (same seed and grid), so they compare.
    """
    method = _method(opts, _fraction(fixed, 1.0, 0, MI_SAMPLES))
    method.SetInitialTransform(transform, inPlace=False)
    return -float(method.MetricEvaluate(fixed, moving))


def _execute(
    method: sitk.ImageRegistrationMethod,
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform,
) -> tuple[int, str]:
    """Run one single-level optimisation in place; (iterations, stop condition)."""
    method.SetInitialTransform(transform, inPlace=True)
    count = {"n": 0}

    def on_iteration() -> None:
        count["n"] += 1

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.Execute(fixed, moving)
    return count["n"], method.GetOptimizerStopConditionDescription()


def _optimise(
    fixed: list[sitk.Image], moving: list[sitk.Image], opts: RegistrationOptions
) -> tuple[sitk.AffineTransform, str, list[int]]:
    """Coarse-to-fine optimisation; returns the transform, the last stop condition, iterations."""
    init = (
        sitk.CenteredTransformInitializerFilter.GEOMETRY
        if opts.init == "geometry"
        else sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    transform = sitk.AffineTransform(
        sitk.CenteredTransformInitializer(fixed[-1], moving[-1], sitk.AffineTransform(2), init)
    )
    n_params = transform.GetNumberOfParameters()
    level_iterations: list[int] = []
    stop = ""
    if opts.optimizer == "regular_step":
        # Stage 1, on the coarsest level: similarity (scale, rotation, shift) by Powell's
        # method. Gradient descent on the full affine crawls along the valley that couples
        # rotation and translation and can settle in a shear that mimics a rotation (ITK's
        # 10-degree T1/PD case ends near 0-4 degrees); Powell's line searches follow the valley
        # and 4 parameters cannot shear. The affine stages then start near the answer.
        pre_fixed, pre_moving = (_shrink_to(image, PRE_SIDE) for image in (fixed[0], moving[0]))
        similarity = sitk.Similarity2DTransform()
        similarity.SetCenter(transform.GetCenter())
        similarity.SetTranslation(transform.GetTranslation())
        method = _method(opts, _fraction(pre_fixed, 1.0, 0, PRE_SAMPLES))
        pixel = max(pre_fixed.GetSpacing())
        method.SetOptimizerAsPowell(
            numberOfIterations=PRE_ITERATIONS,
            maximumLineIterations=PRE_LINE_ITERATIONS,
            stepLength=opts.learning_rate * pixel,
            stepTolerance=COARSE_MIN_STEP * opts.min_step * pixel,
            valueTolerance=1e-6,
        )
        method.SetOptimizerScales([1.0] * similarity.GetNumberOfParameters())
        count, _ = _execute(method, pre_fixed, pre_moving, similarity)
        level_iterations.append(count)
        transform.SetMatrix(similarity.GetMatrix())
        transform.SetTranslation(similarity.GetTranslation())
    # One Execute per pyramid level (rather than ITK's built-in level loop) so that the steps
    # follow each level's pixel size, and on pyramid copies made once by _pyramid.
    for level, (fixed_level, moving_level) in enumerate(zip(fixed, moving, strict=True)):
        finest = level == len(fixed) - 1
        method = _method(opts, _fraction(fixed_level, opts.sampling_fraction, MIN_SAMPLES))
        pixel = max(fixed_level.GetSpacing())
        if opts.optimizer == "regular_step":
            method.SetOptimizerAsRegularStepGradientDescent(
                learningRate=opts.learning_rate * pixel,
                # Coarse levels stop earlier: the next level refines anyway.
                minStep=opts.min_step * pixel * (1.0 if finest else COARSE_MIN_STEP),
                numberOfIterations=opts.iterations,
                relaxationFactor=0.5,
                gradientMagnitudeTolerance=1e-8,
            )
        else:
            method.SetOptimizerAsOnePlusOneEvolutionary(
                numberOfIterations=opts.iterations,
                epsilon=opts.epsilon,
                initialRadius=opts.initial_radius,
                growthFactor=opts.growth_factor,
                seed=opts.seed + 1,
            )
        # Every parameter moves image points by similar amounts in the normalised frame (see
        # _pyramid), so unit scales balance both optimizers. (The 1+1 search radius of
        # parameter i is radius / scale_i: physical-shift scales in a pixel frame, ~r^2 for
        # matrix terms, would freeze the matrix; MATLAB's radius 6.25e-3 is a matrix step.)
        method.SetOptimizerScales([1.0] * n_params)
        count, stop = _execute(method, fixed_level, moving_level, transform)
        level_iterations.append(count)
    return transform, stop, level_iterations


def _pixel_matrix(
    transform: sitk.AffineTransform,
    unit: float,
    fixed_size: tuple[int, int],
    moving_size: tuple[int, int],
) -> np.ndarray:
    """2x3 full-resolution pixel matrix (fixed -> moving) of ITK's physical affine.

    ITK: q = A (p - c) + c + t with p = (fixed full-res pixel) / unit and q in the moving
    image's physical frame (its field of view stretched to the fixed image's size, same unit);
    q * unit is then taken to the moving full-res pixel with the size ratio (pixel centres).
    """
    a = np.array(transform.GetMatrix(), dtype=float).reshape(2, 2)
    c = np.array(transform.GetCenter(), dtype=float)
    t = np.array(transform.GetTranslation(), dtype=float)
    physical = np.eye(3)
    physical[:2, :2] = a
    physical[:2, 2] = c + t - a @ c
    to_unit = np.diag([unit, unit, 1.0])
    to_moving = scale_matrix(moving_size[0] / fixed_size[0], moving_size[1] / fixed_size[1])
    return (to_moving @ to_unit @ physical @ np.linalg.inv(to_unit))[:2]


def _failure(
    transform: sitk.AffineTransform,
    estimated: np.ndarray,
    mi_before: float,
    mi_after: float,
    stop: str,
    opts: RegistrationOptions,
) -> str:
    """Why an estimate must not be applied ("" when it may)."""
    params = np.array(transform.GetParameters(), dtype=float)
    if not (np.isfinite(params).all() and np.isfinite(estimated).all()):
        return "nan_matrix"
    if not (math.isfinite(mi_before) and math.isfinite(mi_after)):
        return "nan_metric"
    parts = decompose(np.array(transform.GetMatrix()).reshape(2, 2))
    if parts["det"] <= 0:
        return "degenerate: reflection or singular matrix"
    for name in ("sx", "sy"):
        if not SCALE_RANGE[0] <= parts[name] <= SCALE_RANGE[1]:
            return f"degenerate: scale {parts[name]:.3f} outside {list(SCALE_RANGE)}"
    if abs(parts["shear"]) > MAX_SHEAR:
        return f"degenerate: shear {parts['shear']:.3f} above {MAX_SHEAR}"
    if mi_after < mi_before:
        return f"mi_not_improved: {mi_before:.4f} -> {mi_after:.4f}"
    if opts.optimizer == "regular_step" and "Maximum number of iterations" in stop:
        # The regular-step optimizer stops on a small step when it converged; running out of
        # iterations at the finest level means it was still moving. (One-plus-one, like MATLAB,
        # always spends its fixed budget, so its budget is not a failure.)
        return "no_convergence: " + _first_line(stop)
    return ""


def _rejected_record(out_dir: Path, pair_id: str, reason: str) -> dict[str, Any]:
    record = {
        "pair_id": pair_id,
        "matrix": IDENTITY.tolist(),
        "status": "rejected",
        "reason": reason,
        "mi_before": None,
        "mi_after": None,
        "iterations": 0,
        "seconds": 0.0,
        "cpu_seconds": 0.0,
    }
    write_json(out_dir / f"{pair_id}.json", record)
    return record


def _near(
    estimated: np.ndarray,
    fixed_size: tuple[int, int],
    moving_size: tuple[int, int],
    opts: RegistrationOptions,
) -> bool:
    """True when ``estimated`` moves no point by more than one pixel of the registered copy."""
    w, h = fixed_size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    moved = (estimated - identity_matrix(fixed_size, moving_size)) @ corners
    to_copy = min(1.0, opts.max_side / max(fixed_size))  # full-res px -> registered-copy px
    # An affine displaces points most at the image corners.
    return bool(np.isfinite(moved).all()) and float(np.hypot(*moved).max()) * to_copy < 1.0


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _flat(grey: np.ndarray, name: str) -> str:
    """A reason when an image has no contrast to register on (Mattes MI needs a range)."""
    low, high = float(grey.min()), float(grey.max())
    return f"flat_image: {name} image has no contrast" if high - low < 1e-6 else ""


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip()[:200] if text else ""


__all__ = [
    "IDENTITY",
    "MAX_SHEAR",
    "OPTIMIZERS",
    "SCALE_RANGE",
    "STATUSES",
    "Registration",
    "RegistrationOptions",
    "cap_itk_threads",
    "decompose",
    "grid_error",
    "identity_matrix",
    "preview",
    "read_truth_matrices",
    "register",
    "register_dataset",
    "register_files",
    "registration_metrics",
    "registration_options",
    "rescale_matrix",
    "scale_matrix",
    "to_grey",
    "warp_image",
]
