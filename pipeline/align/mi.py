"""Mutual-information affine registration of a studio shot onto its flash shot (SimpleITK).

The studio photo (moving image M) is taken about 400 ms before the flash photo (fixed image R)
and the pose moves in between; the paper aligned them with MATLAB ``imregister`` in its
multimodal configuration (Sec. 3.1: Mattes mutual information, one-plus-one evolutionary
optimizer). We do the same with SimpleITK: affine transform (6 degrees of freedom), Mattes MI,
multi-resolution, seeded metric sampling, on shading-normalised copies downscaled to
``max_side`` (:mod:`pipeline.align.pyramid`), after a global capture search
(:mod:`pipeline.align.search`); the answer is a matrix in full-resolution pixel coordinates
(:mod:`pipeline.align.geometry` has the conventions).

A result carries no wall-clock figure in what it writes (:meth:`Registration.to_dict`): the
register stage's per-pair files must have the same bytes on every run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import SimpleITK as sitk

from pipeline.align.geometry import (
    decompose,
    identity_matrix,
    motion,
    to_grey,
    warp_image,
)
from pipeline.align.pyramid import build_pyramids, mutual_information, pixel_matrix
from pipeline.align.search import optimise
from pipeline.config import RegisterParams

STATUSES = ("ok", "identity_fallback", "rejected")

# Degenerate-result limits: two shots of one pose ~400 ms apart never differ by a scale or a
# shear like these; such an estimate is a failed optimisation, not a pose change.
SCALE_RANGE = (0.7, 1.4)
MAX_SHEAR = 0.3


@dataclass(frozen=True)
class Registration:
    """Result of :func:`register`.

    ``matrix`` is what to apply (2x3, full-resolution pixels, fixed -> moving): the estimate when
    ``status`` is "ok", the identity otherwise ("identity_fallback"; "rejected": callers skip
    the pair). ``estimated`` keeps the raw estimate (NaN when none) for diagnosis. ``mi_before``
    and ``mi_after`` are Mattes mutual information (nats, larger is better) of the downscaled,
    shading-normalised pair on one fixed set of pixels, at the identity and at the applied
    matrix. ``seconds`` (wall) and ``cpu_seconds`` (this process) are for metrics only.
    """

    matrix: np.ndarray
    estimated: np.ndarray
    status: str
    reason: str
    mi_before: float
    mi_after: float
    iterations: int
    fixed_size: tuple[int, int]
    moving_size: tuple[int, int]
    stop_condition: str = ""
    level_iterations: tuple[int, ...] = field(default_factory=tuple)
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")

    @property
    def ok(self) -> bool:
        """True when the estimate passed every check and is the applied matrix."""
        return self.status == "ok"

    def warp(self, image: np.ndarray, border_mode: int = cv2.BORDER_REPLICATE) -> np.ndarray:
        """Align the full-resolution moving image onto the fixed image's grid (one interpolation)."""
        return warp_image(image, self.matrix, self.fixed_size, border_mode=border_mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (the register stage's per-pair file, without ``pair_id``).

        Deterministic: the same pair and params give the same dict on every run (no timings).
        """
        return {
            "matrix": np.asarray(self.matrix, dtype=float).tolist(),
            "estimated": [[finite_or_none(v) for v in row] for row in self.estimated],
            "status": self.status,
            "reason": self.reason,
            "mi_before": finite_or_none(self.mi_before),
            "mi_after": finite_or_none(self.mi_after),
            "iterations": int(self.iterations),
            "level_iterations": [int(i) for i in self.level_iterations],
            "fixed_size": list(self.fixed_size),
            "moving_size": list(self.moving_size),
            "stop_condition": self.stop_condition,
            "motion": {
                k: finite_or_none(v)
                for k, v in motion(self.matrix, self.fixed_size, self.moving_size).items()
            },
        }


def register_params(params: RegisterParams | None = None, **overrides: Any) -> RegisterParams:
    """The register params group with ``overrides`` applied and validated (unknown: TypeError)."""
    base = params if params is not None else RegisterParams()
    unknown = sorted(set(overrides) - set(RegisterParams.model_fields))
    if unknown:
        raise TypeError(f"unknown registration option(s): {', '.join(unknown)}")
    if not overrides:
        return base
    return RegisterParams.model_validate({**base.model_dump(), **overrides})


def register(
    fixed: np.ndarray,
    moving: np.ndarray,
    params: RegisterParams | None = None,
    *,
    threads: int = 1,
    **overrides: Any,
) -> Registration:
    """Estimate the affine that aligns ``moving`` onto ``fixed`` by Mattes mutual information.

    ``fixed`` and ``moving``: HxW grey or HxWx3/4 colour arrays of any dtype (their sizes may
    differ: the same field of view at another resolution). ``params``: the validated
    ``register`` params group (defaults when None); ``overrides``: some of its fields
    (validated the same way). ``threads`` caps ITK's threads: 1 (the default) makes results
    independent of the machine's core count (ITK sums per-thread histograms in a
    thread-dependent order) and lets the stage run one pair per core.

    A failed optimisation does not raise: MI not improved, a degenerate matrix (scale outside
    SCALE_RANGE, shear above MAX_SHEAR, reflection), NaN, no convergence or an ITK error is
    recorded in ``reason`` and the identity is returned instead, with ``status``
    "identity_fallback" or "rejected" as ``on_failure`` says. An image with no contrast (a
    constant image) is always "rejected": the identity would not make it usable. Unusable
    arrays (wrong shape, NaN, tiny) raise ValueError.
    """
    opts = register_params(params, **overrides)
    start, cpu_start = time.perf_counter(), time.process_time()
    fixed_grey = to_grey(fixed, "fixed")
    moving_grey = to_grey(moving, "moving")
    fixed_size = (fixed_grey.shape[1], fixed_grey.shape[0])
    moving_size = (moving_grey.shape[1], moving_grey.shape[0])

    estimated = np.full((2, 3), np.nan)
    stop = ""
    level_iterations: list[int] = []
    mi_before = mi_after = float("nan")
    flat = _flat(fixed_grey, "fixed") or _flat(moving_grey, "moving")
    reason = flat
    # The per-method thread count does not reach every ITK filter and metric evaluation: cap
    # the process default too for this call (reruns are bit-identical only with 1 thread).
    default_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        if not reason:
            fixed_levels, moving_levels, unit = build_pyramids(
                fixed_grey, moving_grey, opts.max_side, opts.levels, opts.shading_sigma
            )
            bins, seed = opts.histogram_bins, opts.seed
            identity = sitk.AffineTransform(2)
            mi_before = mutual_information(
                fixed_levels[-1], moving_levels[-1], identity, bins, seed, threads
            )
            transform, stop, level_iterations = optimise(fixed_levels, moving_levels, opts, threads)
            estimated = pixel_matrix(transform, unit, fixed_size, moving_size)
            mi_after = mutual_information(
                fixed_levels[-1], moving_levels[-1], transform, bins, seed, threads
            )
            reason = _failure(transform, estimated, mi_before, mi_after, stop, opts.optimizer)
    except RuntimeError as error:  # ITK errors, e.g. "All samples map outside moving image"
        reason = "itk_error: " + first_line(str(error).split("ITK ERROR:")[-1])
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
        reject = flat or opts.on_failure == "reject"
        status = "rejected" if reject else "identity_fallback"
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
        fixed_size=fixed_size,
        moving_size=moving_size,
        stop_condition=first_line(stop),
        level_iterations=tuple(level_iterations),
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
    )


def _failure(
    transform: sitk.AffineTransform,
    estimated: np.ndarray,
    mi_before: float,
    mi_after: float,
    stop: str,
    optimizer: str,
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
    if optimizer == "regular_step" and "Maximum number of iterations" in stop:
        # The regular-step optimizer stops on a small step when it converged; running out of
        # iterations at the finest level means it was still moving. (One-plus-one, like MATLAB,
        # always spends its fixed budget, so its budget is not a failure.)
        return "no_convergence: " + first_line(stop)
    return ""


def _near(
    estimated: np.ndarray,
    fixed_size: tuple[int, int],
    moving_size: tuple[int, int],
    opts: RegisterParams,
) -> bool:
    """True when ``estimated`` moves no point by more than one pixel of the registered copy."""
    w, h = fixed_size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    moved = (estimated - identity_matrix(fixed_size, moving_size)) @ corners
    to_copy = min(1.0, opts.max_side / max(fixed_size))  # full-res px -> registered-copy px
    # An affine displaces points most at the image corners.
    return bool(np.isfinite(moved).all()) and float(np.hypot(*moved).max()) * to_copy < 1.0


def _flat(grey: np.ndarray, name: str) -> str:
    """A reason when an image has no contrast to register on (Mattes MI needs a range)."""
    low, high = float(grey.min()), float(grey.max())
    return f"flat_image: {name} image has no contrast" if high - low < 1e-6 else ""


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None (JSON null) when it is NaN or infinite."""
    return float(value) if math.isfinite(value) else None


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, at most 200 characters."""
    text = text.strip()
    return text.splitlines()[0].strip()[:200] if text else ""


__all__ = [
    "MAX_SHEAR",
    "SCALE_RANGE",
    "STATUSES",
    "Registration",
    "finite_or_none",
    "first_line",
    "register",
    "register_params",
]
